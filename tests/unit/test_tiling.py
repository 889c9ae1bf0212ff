"""Tiled inference: window layout, the stitching rule, and a tiled survey of a large photo."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyogrio
import pytest
from factories import geotagged, tiny_model_dir
from PIL import Image

from heritage.model.tiling import TileConfig, classify_tiled, stitch, tile_windows
from heritage.survey.pipeline import ClassifyConfig, run_survey


@pytest.mark.parametrize(
    ("w", "h", "tile", "overlap"),
    [(1000, 700, 224, 0.25), (224, 224, 224, 0.5), (500, 100, 128, 0.0), (97, 301, 64, 0.9)],
)
def test_windows_cover_the_image_from_inside(w: int, h: int, tile: int, overlap: float) -> None:
    windows = tile_windows(w, h, tile, overlap)
    covered = np.zeros((h, w), dtype=int)
    for left, top, right, bottom in windows:
        assert 0 <= left < right <= w and 0 <= top < bottom <= h
        assert right - left == min(tile, w) and bottom - top == min(tile, h)
        covered[top:bottom, left:right] += 1
    assert covered.min() >= 1
    assert len(set(windows)) == len(windows)


def test_window_layout_with_shifted_edge_tiles() -> None:
    windows = tile_windows(500, 224, 224, 0.25)  # stride 168: 0, 168, then 276 shifted inside
    assert [w[0] for w in windows] == [0, 168, 276]
    assert {w[1] for w in windows} == {0}
    assert tile_windows(100, 80, 224) == [(0, 0, 100, 80)]  # smaller than a tile


def test_bad_tile_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="overlap"):
        TileConfig(overlap=1.0)
    with pytest.raises(ValueError, match="tile_size"):
        TileConfig(tile_size=2)


def test_stitch_takes_the_max_of_cam_times_confidence() -> None:
    windows = [(0, 0, 4, 4), (2, 0, 6, 4)]
    a = np.full((4, 4), 0.8, dtype=np.float32)
    b = np.full((2, 2), 1.0, dtype=np.float32)  # resized to its 4x4 window
    heat = stitch(6, 4, windows, [a, b], [0.5, 0.3])
    assert heat.shape == (4, 6) and heat.dtype == np.float32
    assert np.allclose(heat[:, :2], 0.4)  # only window a
    assert np.allclose(heat[:, 2:4], 0.4)  # max(0.8*0.5, 1.0*0.3)
    assert np.allclose(heat[:, 4:], 0.3)  # only window b


@dataclass
class _Card:
    threshold: float = 0.5


@dataclass
class _Res:
    p_final: float
    cam: np.ndarray
    p_stage1: float = 0.0
    p_stage2: float | None = None
    cam_empty: bool = False


class _BrightnessClassifier:
    """Fake classifier: p_final = mean brightness of the window; cam = 1 everywhere."""

    card = _Card()

    def __init__(self) -> None:
        self.batches: list[int] = []

    def classify(self, images):
        self.batches.append(len(images))
        return [
            _Res(float(np.asarray(im).mean() / 255), np.ones((8, 8), np.float32)) for im in images
        ]


def test_classify_tiled_decides_on_the_most_confident_tile() -> None:
    arr = np.zeros((100, 300, 3), dtype=np.uint8)
    arr[:, 250:] = 255  # one bright (= "damaged") corner
    fake = _BrightnessClassifier()
    res = classify_tiled(fake, Image.fromarray(arr), TileConfig(100, 0.0, batch_size=2))
    assert res.n_tiles == 3 and fake.batches == [2, 1]
    assert res.best_index == 2 and res.p_final == pytest.approx(0.5)
    assert res.decision  # 0.5 >= threshold 0.5
    assert res.heatmap.shape == (100, 300)
    assert res.heatmap[:, :200].max() == 0 and res.heatmap[:, 200:].min() == pytest.approx(0.5)


def test_tiled_survey_of_a_large_photo(tmp_path: Path, one_torch_thread) -> None:
    model = tiny_model_dir(tmp_path / "model")
    photos = tmp_path / "photos"
    photos.mkdir()
    geotagged(photos / "big.jpg", 43.4630, 11.8800, size=(640, 480))
    out = tmp_path / "tiles.gpkg"
    cfg = ClassifyConfig(
        (photos,), out, model_dir=model, device="cpu", mode="tiles", tile_size=160,
        tile_overlap=0.25, batch_size=8,
    )  # fmt: skip
    summary = run_survey(cfg)
    assert summary.classified == 1 and summary.inference_mode == "tiles"
    obs = pyogrio.read_dataframe(out, layer="observations")
    row = obs.iloc[0]
    assert row["inference_mode"] == "tiles"
    assert row["n_tiles"] == len(tile_windows(640, 480, 160, 0.25)) > 1
    for col in ("heatmap_path", "overlay_path"):
        with Image.open(out.parent / row[col]) as im:
            assert im.size == (640, 480)  # full size, not the model's 64 px
    assert 0 <= row["defect_area_fraction"] <= 1
    assert row["flagged"] == (row["p_final"] >= 0.5)


def test_tiled_overlay_png_is_capped_but_area_uses_full_map(
    tmp_path: Path, one_torch_thread
) -> None:
    model = tiny_model_dir(tmp_path / "model")
    photos = tmp_path / "photos"
    photos.mkdir()
    geotagged(photos / "p.jpg", 43.4631, 11.8801, size=(640, 480))
    out = tmp_path / "capped.gpkg"
    cfg = ClassifyConfig(
        (photos,), out, model_dir=model, device="cpu", mode="tiles", tile_size=320,
        tile_overlap=0.0, overlay_max_px=200,
    )  # fmt: skip
    run_survey(cfg)
    row = pyogrio.read_dataframe(out, layer="observations").iloc[0]
    assert row["n_tiles"] == 4
    for col in ("heatmap_path", "overlay_path"):
        with Image.open(out.parent / row[col]) as im:
            assert im.size == (200, 150)
