"""Synthetic cracks: a wall photo darkened along the shape of a real crack mask.

A crack in a photo is, to first order, a thin line darker than the surface around it,
drawn in the wall's own colours. :func:`paint_crack` renders exactly that from a binary
mask (the Dais masonry masks are traced from real cracks), so a crack-free wall of any
dataset can carry a crack of real geometry. It is used to ask a model a question the
datasets cannot: does it flag a crack on a clean modern wall, or does the wall's style
("healthy" SaltSpot plaster, new brick) override the crack? (``research/probes/crack_probe.py``)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

#: default brightness kept on the crack's core pixels (0 = black, 1 = unchanged)
DEFAULT_DARKNESS = 0.35
#: default Gaussian sigma (px) that softens the crack's edges
DEFAULT_SOFTNESS = 0.8


def _soft_mask(mask: np.ndarray, sigma: float) -> np.ndarray:
    """The bool mask blurred with a Gaussian of ``sigma`` px (PIL), scaled so its core is 1."""
    from PIL import Image, ImageFilter

    im = Image.fromarray(mask.astype(np.uint8) * 255)
    if sigma > 0:
        im = im.filter(ImageFilter.GaussianBlur(radius=sigma))
    w = np.asarray(im, dtype=np.float64) / 255.0
    return np.clip(w / max(float(w[mask].max()), 1e-9), 0.0, 1.0)


def fit_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A bool mask brought to ``shape`` (H, W) by nearest-neighbour sampling."""
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"a crack mask must be 2-D, got shape {mask.shape}")
    if mask.shape == tuple(shape):
        return mask
    rows = (np.arange(shape[0]) * mask.shape[0] / shape[0]).astype(int)
    cols = (np.arange(shape[1]) * mask.shape[1] / shape[1]).astype(int)
    return mask[np.ix_(rows, cols)]


def paint_crack(
    rgb: np.ndarray,
    mask: np.ndarray,
    darkness: float = DEFAULT_DARKNESS,
    softness: float = DEFAULT_SOFTNESS,
) -> np.ndarray:
    """``rgb`` (uint8 H×W×3) darkened along ``mask``; a new uint8 array.

    Every pixel is multiplied by ``1 - (1 - darkness) * w``, ``w`` being the mask blurred
    with a Gaussian of ``softness`` px and rescaled so the crack's core reaches 1. A mask
    of another size is resampled to the image's (nearest neighbour). An empty mask
    returns an unchanged copy.
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected a uint8 H×W×3 image, got {rgb.dtype} {rgb.shape}")
    if not 0.0 <= darkness <= 1.0:
        raise ValueError(f"darkness must be between 0 and 1, got {darkness}")
    m = fit_mask(mask, rgb.shape[:2])
    if not m.any():
        return rgb.copy()
    w = _soft_mask(m, softness)
    factor = 1.0 - (1.0 - darkness) * w
    return np.clip(rgb * factor[..., None] + 0.5, 0, 255).astype(np.uint8)


def mask_variant(mask: np.ndarray, k: int) -> np.ndarray:
    """The ``k``-th of a mask's 8 rotations/reflections (k mod 8), so few masks go further."""
    mask = np.rot90(np.asarray(mask), k % 4)
    return np.fliplr(mask) if (k // 4) % 2 else mask


def training_masks(
    mask_dir: Path, names: Iterable[str], size: int | None = None
) -> list[np.ndarray]:
    """The bool crack masks in ``mask_dir`` whose file names are among ``names``.

    Only masks of training images are to be painted, so a validation or test crack
    never reaches training: pass the file names of the training split. ``size`` resizes
    (nearest neighbour) to size×size. Empty masks are skipped. Raises ValueError when
    none is found.
    """
    from PIL import Image

    wanted = set(names)
    out = []
    for path in sorted(Path(mask_dir).iterdir()):
        if path.name not in wanted:
            continue
        with Image.open(path) as im:
            mask = np.asarray(im.convert("L")) > 127
        if size is not None:
            mask = fit_mask(mask, (size, size))
        if mask.any():
            out.append(mask)
    if not out:
        raise ValueError(
            f"no crack mask in {mask_dir} belongs to a training image; give the folder of "
            "masks named like the training images (e.g. dais-masonry/masks)"
        )
    return out


class CrackPaintingDataset:
    """A training dataset in which crack-free images sometimes get a real crack painted on.

    Wraps a :class:`heritage.training.data.ImageDataset`: an image whose label is in
    ``negative_labels`` is, with probability ``p``, painted with a random mask of
    ``masks`` (random rotation/reflection, darkness and softness) and labelled
    ``crack_label``, before the base transform. Random draws use torch's generator, so
    they follow the seeding of the loader and its workers like every other augmentation.
    It teaches stage 1 that a crack on a wall of any look is a crack, against the
    shortcut that a clean modern wall is "healthy" (``research/probes/crack_probe.py``).
    """

    def __init__(
        self,
        base: Any,
        masks: Sequence[np.ndarray],
        negative_labels: Iterable[int],
        crack_label: int,
        p: float,
        darkness: tuple[float, float] = (0.25, 0.6),
        softness: tuple[float, float] = (0.5, 1.2),
    ) -> None:
        if not 0.0 < p <= 1.0:
            raise ValueError(f"the painting probability must be in (0, 1], got {p}")
        if not masks:
            raise ValueError("no crack masks to paint with")
        self.base = base
        self.masks = list(masks)
        self.negative = frozenset(negative_labels)
        self.crack_label = crack_label
        self.p = p
        self.darkness = darkness
        self.softness = softness
        self.labels = base.labels  # the labels before painting (what oversampling reads)

    def __len__(self) -> int:
        return len(self.base)

    def _uniform(self, lo_hi: tuple[float, float]) -> float:
        import torch

        lo, hi = lo_hi
        return lo + (hi - lo) * float(torch.rand(()))

    def __getitem__(self, i: int) -> tuple[Any, int]:
        import torch
        from PIL import Image

        label = self.base.labels[i]
        image = self.base.image(i)
        if label in self.negative and float(torch.rand(())) < self.p:
            j = int(torch.randint(len(self.masks), ()))
            k = int(torch.randint(8, ()))
            painted = paint_crack(
                np.asarray(image, dtype=np.uint8),
                mask_variant(self.masks[j], k),
                darkness=self._uniform(self.darkness),
                softness=self._uniform(self.softness),
            )
            image, label = Image.fromarray(painted), self.crack_label
        return self.base.transform(image), label
