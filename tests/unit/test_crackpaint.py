"""heritage.training.crackpaint: cracks painted along real masks, and training with them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from heritage.training.crackpaint import (
    CrackPaintingDataset,
    fit_mask,
    mask_variant,
    paint_crack,
    training_masks,
)


def _line_mask(size: int = 32, row: int = 10) -> np.ndarray:
    m = np.zeros((size, size), bool)
    m[row, 4:20] = True
    return m


def test_paint_crack_darkens_the_crack_in_the_walls_own_colour_and_nothing_far_from_it():
    wall = np.zeros((32, 32, 3), np.uint8)
    wall[...] = (200, 100, 50)
    out = paint_crack(wall, _line_mask(), darkness=0.3, softness=0.8)
    assert out.dtype == np.uint8 and out.shape == wall.shape
    assert tuple(out[10, 10]) == (60, 30, 15)  # the core: 0.3 x the wall, same hue
    assert (out[20:, :] == wall[20:, :]).all()  # far from the crack: untouched
    assert 60 < out[11, 10, 0] < 200  # the soft edge lies between
    assert (wall == 200)[..., 0].all()  # the input is not modified


def test_paint_crack_resamples_the_mask_and_leaves_an_empty_mask_alone():
    wall = np.full((64, 64, 3), 180, np.uint8)
    out = paint_crack(wall, _line_mask(32, row=10), softness=0)
    assert out[20, 20, 0] < 180 and out[21, 20, 0] < 180  # row 10 of 32 -> rows 20-21 of 64
    assert (paint_crack(wall, np.zeros((32, 32), bool)) == wall).all()
    assert fit_mask(_line_mask(32), (16, 16)).sum() == 8


@pytest.mark.parametrize(
    "rgb, mask, darkness",
    [
        (np.zeros((8, 8), np.uint8), np.ones((8, 8), bool), 0.3),
        (np.zeros((8, 8, 3), np.float32), np.ones((8, 8), bool), 0.3),
        (np.zeros((8, 8, 3), np.uint8), np.ones((8, 8, 3), bool), 0.3),
        (np.zeros((8, 8, 3), np.uint8), np.ones((8, 8), bool), 1.5),
    ],
)
def test_paint_crack_refuses_what_it_cannot_paint(rgb, mask, darkness):
    with pytest.raises(ValueError):
        paint_crack(rgb, mask, darkness=darkness)


def test_mask_variant_gives_eight_distinct_orientations():
    m = np.zeros((6, 6), bool)
    m[0, :3] = True
    m[1, 0] = True  # no symmetry
    variants = {mask_variant(m, k).tobytes() for k in range(8)}
    assert len(variants) == 8
    assert (mask_variant(m, 8) == m).all()


def _save_mask(path: Path, mask: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask.astype(np.uint8) * 255).save(path)


def test_training_masks_takes_only_the_named_non_empty_masks(tmp_path):
    _save_mask(tmp_path / "a.png", _line_mask())
    _save_mask(tmp_path / "b.png", _line_mask(row=3))
    _save_mask(tmp_path / "empty.png", np.zeros((32, 32), bool))
    masks = training_masks(tmp_path, {"a.png", "empty.png", "missing.png"}, size=16)
    assert len(masks) == 1 and masks[0].shape == (16, 16) and masks[0][5].any()
    with pytest.raises(ValueError, match="no crack mask"):
        training_masks(tmp_path, {"other.png"})


class _Base:
    """The part of heritage.training.data.ImageDataset that the painting dataset uses."""

    def __init__(self, labels):
        self.labels = labels
        self.transform = np.asarray

    def __len__(self):
        return len(self.labels)

    def image(self, i):
        return Image.fromarray(np.full((32, 32, 3), 200, np.uint8))


def test_painting_dataset_relabels_only_painted_crack_free_images():
    base = _Base([0, 1, 2, 1])  # 0 = crack (positive), 1 and 2 crack-free
    ds = CrackPaintingDataset(base, [_line_mask()], negative_labels=[1, 2], crack_label=0, p=1.0)
    items = [ds[i] for i in range(len(ds))]
    assert [lab for _, lab in items] == [0, 0, 0, 0]
    assert (items[0][0] == 200).all()  # a positive is never painted
    assert all(img.min() < 200 for img, _ in items[1:])
    assert ds.labels == [0, 1, 2, 1]  # what the sampler reads stays the true label
    with pytest.raises(ValueError):
        CrackPaintingDataset(base, [_line_mask()], [1], 0, p=0.0)
    with pytest.raises(ValueError):
        CrackPaintingDataset(base, [], [1], 0, p=0.5)


def test_painting_probability_is_respected_and_follows_torchs_seed():
    import torch

    base = _Base([1] * 400)
    ds = CrackPaintingDataset(base, [_line_mask()], [1], crack_label=0, p=0.25)
    torch.manual_seed(0)
    first = [ds[i][1] for i in range(400)]
    torch.manual_seed(0)
    assert [ds[i][1] for i in range(400)] == first
    assert 0.18 < first.count(0) / 400 < 0.32
