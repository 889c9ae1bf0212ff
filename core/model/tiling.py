"""Tiled inference: classify a large photo at full resolution, window by window.

Whole-image mode (the default of ``heritage classify``) shows the model the photo
resized so that its shorter side is the model's input size and centre-cropped: a
crack a few pixels wide in a 20-megapixel photo vanishes, and the edges outside the
square crop are never seen. Tiled mode instead cuts the full-resolution photo into
overlapping square windows:

* **Windows** (:func:`tile_windows`): ``tile_size`` px squares with a stride of
  ``round(tile_size * (1 - overlap))``; the last window of each row/column is shifted
  back inside the image so that every pixel is covered and no window is padded. An
  image smaller than a tile along one axis gets one window of the image's size along
  that axis (the model then resizes it like any photo).
* **Classification**: windows go through
  :meth:`heritage.model.predict.TwoStageClassifier.classify` in batches (a window is square,
  so the model's resize + centre crop is a plain resize to the input size).
* **Stitching** (:func:`stitch`): the full-size heat map is, at each pixel, the
  maximum over the windows covering it of ``tile cam × tile p_final``. Weighting by
  the window's confidence keeps the (min-max normalised) CAM of a window the model
  thinks is healthy from lighting up the map; the maximum keeps a defect seen by one
  window visible even where the overlapping window missed it.
* **Decision**: ``p_final`` of the photo is the maximum ``p_final`` over its windows
  and the decision is ``p_final >= threshold`` (one damaged window is enough);
  ``p_stage1``/``p_stage2``, the stage-1 label and the CAM method are those of that
  most confident window.

torch is not imported here; PIL and numpy are.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from PIL import Image

    from heritage.model.predict import Result, TwoStageClassifier

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TileConfig:
    """Window size (pixels of the full-resolution photo), overlap fraction in [0, 1)
    and how many windows go through the model at once."""

    tile_size: int = 224
    overlap: float = 0.25
    batch_size: int = 16

    def __post_init__(self) -> None:
        if self.tile_size < 8:
            raise ValueError(f"tile_size must be at least 8 px, got {self.tile_size}")
        if not 0.0 <= self.overlap < 1.0:
            raise ValueError(f"tile overlap must lie in [0, 1), got {self.overlap}")
        if self.batch_size < 1:
            raise ValueError("batch_size must be at least 1")

    @property
    def stride(self) -> int:
        """Step between window origins (at least 1 px)."""
        return tile_stride(self.tile_size, self.overlap)


@dataclass(frozen=True, eq=False)
class TiledResult:
    """The answer for one photo classified window by window.

    ``heatmap`` is float32 H×W at the photo's full (oriented) size, values in [0, 1];
    ``best`` is the Result of the most confident window (``windows[best_index]``).
    """

    p_stage1: float
    p_stage2: float | None
    p_final: float
    decision: bool
    heatmap: np.ndarray
    n_tiles: int
    windows: list[tuple[int, int, int, int]]
    tile_p_final: list[float]
    best_index: int
    best: Result
    cam_empty: bool


def tile_stride(tile: int, overlap: float) -> int:
    """Pixels between consecutive window origins for ``overlap`` (at least 1)."""
    return max(1, round(tile * (1.0 - overlap)))


def axis_offsets(length: int, tile: int, stride: int) -> list[int]:
    """Start offsets of windows along one axis: every ``stride`` pixels, the last one
    moved back so it ends at the edge (every window is whole when ``length >= tile``).
    An axis shorter than a window gives one offset, 0 (the window is then the whole axis)."""
    if length <= tile:
        return [0]
    offs = list(range(0, length - tile, stride))
    offs.append(length - tile)
    return offs


def tile_windows(
    width: int, height: int, tile_size: int = 224, overlap: float = 0.25
) -> list[tuple[int, int, int, int]]:
    """``(left, top, right, bottom)`` windows covering a ``width`` × ``height`` image.

    Row-major order. Every window lies inside the image; every pixel is covered.
    """
    if width < 1 or height < 1:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    cfg = TileConfig(tile_size=tile_size, overlap=overlap)
    tw, th = min(tile_size, width), min(tile_size, height)
    xs = axis_offsets(width, tw, cfg.stride)
    ys = axis_offsets(height, th, cfg.stride)
    return [(x, y, x + tw, y + th) for y in ys for x in xs]


def resize_map(cam: np.ndarray, width: int, height: int) -> np.ndarray:
    """A float heat map resized (bilinear) to ``width`` × ``height``, float32."""
    from PIL import Image

    cam = np.asarray(cam, dtype=np.float32)
    if cam.shape == (height, width):
        return cam
    im = Image.fromarray(cam, mode="F").resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(im, dtype=np.float32)


def stitch(
    width: int,
    height: int,
    windows: Sequence[tuple[int, int, int, int]],
    cams: Sequence[np.ndarray],
    weights: Sequence[float],
) -> np.ndarray:
    """Full-size heat map: per pixel the max over covering windows of ``cam × weight``.

    Each window's CAM (any size) is resized to the window; pixels no window covers
    stay 0. Returns float32 ``height`` × ``width`` clipped to [0, 1].
    """
    out = np.zeros((height, width), dtype=np.float32)
    for (left, top, right, bottom), cam, w in zip(windows, cams, weights, strict=True):
        tile = resize_map(cam, right - left, bottom - top) * np.float32(w)
        region = out[top:bottom, left:right]
        np.maximum(region, tile, out=region)
    return np.clip(out, 0.0, 1.0, out=out)


def classify_tiled(
    classifier: TwoStageClassifier,
    image: Image.Image,
    config: TileConfig = TileConfig(),
) -> TiledResult:
    """Classify ``image`` (full resolution, orientation applied) window by window.

    See the module docstring for the stitching and decision rules.
    """
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    width, height = rgb.size
    windows = tile_windows(width, height, config.tile_size, config.overlap)
    results: list[Result] = []
    for i in range(0, len(windows), config.batch_size):
        chunk = windows[i : i + config.batch_size]
        results += classifier.classify([rgb.crop(w) for w in chunk])
    p = [r.p_final for r in results]
    best_index = int(np.argmax(p))
    best = results[best_index]
    heatmap = stitch(width, height, windows, [r.cam for r in results], p)
    threshold = float(classifier.card.threshold)
    log.debug("%d tiles over %dx%d, max p_final %.3f", len(windows), width, height, p[best_index])
    return TiledResult(
        p_stage1=best.p_stage1,
        p_stage2=best.p_stage2,
        p_final=best.p_final,
        decision=bool(best.p_final >= threshold),
        heatmap=heatmap,
        n_tiles=len(windows),
        windows=windows,
        tile_p_final=[float(v) for v in p],
        best_index=best_index,
        best=best,
        cam_empty=all(r.cam_empty for r in results),
    )
