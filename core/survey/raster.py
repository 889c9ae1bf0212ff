"""Classify a georeferenced raster (an orthophoto of façades or roofs) tile by tile.

:func:`classify_raster` reads the input in windows, classifies each window with the
two-stage model and writes a georeferenced GeoTIFF of two float32 bands:

1. ``defect_probability``: the tile's ``p_final`` spread over the tile's pixels;
   overlapping tiles are combined by **max** (default) or, with ``combine="mean"``, by
   a weighted mean whose weight is ``0.05 + sin(pi*u)*sin(pi*v)`` (``u, v`` the pixel's
   position across the tile in [0, 1]): a tile counts most at its centre, so the seams
   between tiles fade instead of stepping;
2. ``gradcam``: each tile's Grad-CAM resized to the tile's footprint, multiplied by its
   ``p_final``, overlapping tiles combined by max.

Pixels that are nodata in the input (nodata value, alpha band or mask, and NaN/inf in
float rasters) and pixels covered by no classified tile are :data:`NODATA` (-1). Tiles
with less than ``min_valid`` (default half) valid pixels are skipped; inside a
classified tile the invalid pixels are filled with the median of its valid ones before
the tile goes to the model. Each window is resized straight to the model's input size
(bilinear, antialiased): the images handed to ``TwoStageClassifier.classify`` are
already square at that size, so its resize + centre crop changes nothing. With
``scale`` > 1 a tile's footprint is rounded outwards to whole output pixels.

Memory stays bounded whatever the raster's size:

* **reading**: only windows of ``tile_size`` pixels are read (with their dataset mask),
  plus, for rasters that are not 8-bit, one decimated read of at most
  ``stats_max_pixels`` pixels per band for the percentile stretch (GDAL answers it from
  the input's overviews when there are some; ``gdaladdo`` on a huge input makes it fast);
* **stitching**: tiles are visited row by row; the combination is accumulated in a strip
  buffer ``tile + 256`` output rows high, and output rows that no later tile can touch
  are written once, in whole 256-row blocks. When a strip of the full width would not fit
  in half of ``memory_mb``, the output is done in vertical panels (multiples of 256
  columns) one after the other; tiles that straddle two panels are then classified once
  per panel (same values, some extra compute). GDAL's block cache is limited to a quarter
  of ``memory_mb``. The model and one batch of tiles come on top.
* **writing**: every output block is written exactly once (no read-modify-write, so the
  DEFLATE-compressed file does not grow with rewrites); overviews are built at the end.

Pixel values of 8-bit rasters are used as they are. Other types (16-bit, float) are
stretched per band linearly from the ``percentiles`` (default 2nd and 98th) of the valid
pixels of the decimated read to 0..255, clipped. A raster with fewer than 3 bands (and
no ``bands`` given) is read as greyscale: band 1 replicated to R, G and B.

Cancellation and errors: the output is written under a temporary name
(``.<name>.partial-<pid>-<random>.tif`` in the output folder, see
:func:`heritage.io.fileio.atomic_path`) and renamed over ``output`` only
when complete, overviews included; a cancelled or failed run removes the temporary
file and leaves any earlier ``output`` untouched.

rasterio, torch and shapely are imported inside the functions.
"""

from __future__ import annotations

import logging
import math
import os
import time
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from heritage.io.fileio import atomic_path
from heritage.kernel.errors import DataError, InputNotFoundError, OutputNotWritableError
from heritage.kernel.progress import NullProgress, Progress
from heritage.model.tiling import axis_offsets, resize_map, tile_stride

if TYPE_CHECKING:
    from PIL import Image

    from heritage.model.card import LoadedModel
    from heritage.model.predict import Result, TwoStageClassifier

log = logging.getLogger(__name__)

#: output nodata value (both bands)
NODATA = -1.0
BAND_DESCRIPTIONS = ("defect_probability", "gradcam")
COMBINE_METHODS = ("max", "mean")
#: output GeoTIFF block edge (pixels); panels and flushed strips are multiples of it
BLOCK = 256
VECTOR_LAYER = "raster_defects"


@dataclass(frozen=True)
class RasterConfig:
    """Settings of :func:`classify_raster` (see the module docstring for the meaning).

    ``tile_size`` is in input pixels (``None``: the model's input size); ``overlap`` is
    the fraction of a tile shared with its neighbour (0 <= overlap < 1); ``bands`` are
    1-based band numbers read as R, G, B (``None``: 1,2,3, or band 1 replicated for a
    raster with fewer than 3 bands; one band given is replicated too); tiles with less
    than ``min_valid`` valid pixels are skipped; ``scale`` > 1 writes an output that
    many times coarser (transform scaled); ``threshold`` (``None``: the model card's)
    selects the tiles written to the vector layer.
    """

    tile_size: int | None = None
    overlap: float = 0.25
    bands: tuple[int, ...] | None = None
    batch_size: int = 16
    min_valid: float = 0.5
    combine: str = "max"
    scale: int = 1
    percentiles: tuple[float, float] = (2.0, 98.0)
    stats_max_pixels: int = 1_000_000
    memory_mb: float = 512.0
    device: str = "auto"
    cam_method: str | None = None
    threshold: float | None = None

    def validate(self) -> None:
        """Raise ValueError for settings out of range."""
        if self.tile_size is not None and self.tile_size < 8:
            raise ValueError(f"tile_size must be at least 8 pixels (got {self.tile_size})")
        if not 0.0 <= self.overlap < 1.0:
            raise ValueError(f"overlap must lie in [0, 1) (got {self.overlap})")
        if self.batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if not 0.0 <= self.min_valid <= 1.0:
            raise ValueError(f"min_valid must lie in [0, 1] (got {self.min_valid})")
        if self.combine not in COMBINE_METHODS:
            raise ValueError(f"combine must be one of {COMBINE_METHODS} (got {self.combine!r})")
        if self.scale < 1:
            raise ValueError(f"scale must be an integer >= 1 (got {self.scale})")
        lo, hi = self.percentiles
        if not 0.0 <= lo < hi <= 100.0:
            raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100 (got {lo}, {hi})")
        if self.stats_max_pixels < 16:
            raise ValueError("stats_max_pixels must be at least 16")
        if self.memory_mb <= 0:
            raise ValueError("memory_mb must be positive")
        if self.bands is not None and (not self.bands or min(self.bands) < 1):
            raise ValueError(f"bands are 1-based band numbers (got {self.bands})")
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must lie in [0, 1] (got {self.threshold})")


@dataclass(frozen=True)
class BandScaling:
    """Per-band linear stretch to 0..255: ``(x - low) / (high - low) * 255``, clipped."""

    low: tuple[float, ...]
    high: tuple[float, ...]

    def apply(self, data: np.ndarray) -> np.ndarray:
        """bands×H×W numbers -> uint8 bands×H×W (non-finite values become 0)."""
        lo = np.asarray(self.low, dtype=np.float64).reshape(-1, 1, 1)
        hi = np.asarray(self.high, dtype=np.float64).reshape(-1, 1, 1)
        x = (data.astype(np.float64) - lo) * (255.0 / (hi - lo))
        x = np.nan_to_num(x, nan=0.0, posinf=255.0, neginf=0.0)
        return np.clip(np.rint(x), 0, 255).astype(np.uint8)


@dataclass
class RasterSummary:
    """What :func:`classify_raster` did."""

    output: Path
    width: int
    height: int
    crs: str | None
    tile_size: int
    stride: int
    tiles: int = 0
    classified: int = 0
    skipped: int = 0
    positive: int = 0
    panels: int = 1
    scaling: BandScaling | None = None
    vector: Path | None = None
    polygons: int = 0
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        d = {k: v for k, v in self.__dict__.items() if k != "scaling"}
        d["output"] = str(self.output)
        d["vector"] = str(self.vector) if self.vector else None
        d["scaling"] = (
            {"low": list(self.scaling.low), "high": list(self.scaling.high)}
            if self.scaling
            else None
        )
        return d

    def lines(self) -> list[str]:
        """A short human summary."""
        out = [
            f"{self.output}: {self.width}x{self.height} px, CRS {self.crs or '(none)'}",
            f"tiles: {self.tiles} ({self.tile_size} px, stride {self.stride}), "
            f"{self.classified} classified, {self.skipped} skipped (mostly nodata), "
            f"{self.positive} at or above the threshold",
        ]
        if self.panels > 1:
            out.append(f"written in {self.panels} panels to stay within the memory budget")
        if self.vector:
            out.append(f"{self.polygons} defect tile polygon(s) written to {self.vector}")
        out.append(f"done in {self.seconds:.1f} s")
        return out


# ---------------------------------------------------------------------------- grid


def tile_grid(width: int, height: int, tile: int, overlap: float) -> list[Any]:
    """The windows (``rasterio.windows.Window``) covering the raster, row-major."""
    from rasterio.windows import Window

    stride = tile_stride(tile, overlap)
    tw, th = min(tile, width), min(tile, height)
    return [
        Window(x, y, tw, th)
        for y in axis_offsets(height, tile, stride)
        for x in axis_offsets(width, tile, stride)
    ]


def out_span(start: int, size: int, scale: int, limit: int) -> tuple[int, int]:
    """Output-pixel range ``[a, b)`` covered by input pixels ``[start, start+size)``."""
    a = start // scale
    b = min(limit, -(-(start + size) // scale))
    return a, max(b, a + 1)


def overview_factors(width: int, height: int, smallest: int = 64) -> list[int]:
    """Overview decimation factors 2, 4, 8... while the overview keeps ``smallest`` px."""
    factors, f = [], 2
    while max(width, height) / f >= smallest:
        factors.append(f)
        f *= 2
    return factors


# ------------------------------------------------------------------------- reading


def open_raster(path: str | Path):
    """Open ``path`` with rasterio; InputNotFoundError / DataError with what to do."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

    path = Path(path)
    if not path.exists():
        raise InputNotFoundError(f"input raster {path} does not exist; check the path")
    if path.is_dir():
        raise DataError(f"{path} is a folder; give a raster file (GeoTIFF, JPEG2000, VRT...)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return rasterio.open(path)
    except RasterioIOError as exc:
        raise DataError(
            f"{path} is not a raster GDAL can read ({exc}); give a GeoTIFF or another "
            "GDAL raster format"
        ) from exc


def resolve_bands(count: int, bands: Sequence[int] | None) -> tuple[int, ...]:
    """The 1-based bands read as R, G, B (3 numbers; a single band is replicated).

    ``None``: (1, 2, 3) with 3 or more bands, else band 1 as greyscale. DataError when a
    band does not exist or not 1 or 3 bands are given.
    """
    if bands is None:
        return (1, 2, 3) if count >= 3 else (1, 1, 1)
    bands = tuple(int(b) for b in bands)
    if len(bands) not in (1, 3):
        raise DataError(f"give 1 band (greyscale) or 3 bands (R,G,B), got {list(bands)}")
    bad = [b for b in bands if not 1 <= b <= count]
    if bad:
        raise DataError(f"the raster has {count} band(s); band(s) {bad} do not exist: fix --bands")
    return bands * 3 if len(bands) == 1 else bands


def band_scaling(
    src: Any,
    bands: Sequence[int],
    percentiles: tuple[float, float] = (2.0, 98.0),
    max_pixels: int = 1_000_000,
) -> BandScaling | None:
    """Per-band percentile stretch for a raster that is not 8-bit (``None`` for uint8).

    Reads each band once, decimated so that at most ``max_pixels`` pixels come back
    (GDAL uses the input's overviews when it has some), and takes the percentiles of
    its valid pixels (nodata, masked and non-finite values excluded).
    """
    if all(src.dtypes[b - 1] == "uint8" for b in set(bands)):
        return None
    from rasterio.enums import Resampling

    unique = sorted(set(bands))
    f = max(1, math.ceil(math.sqrt(src.width * src.height / max_pixels)))
    shape = (len(unique), max(1, src.height // f), max(1, src.width // f))
    data = src.read(unique, out_shape=shape, masked=True, resampling=Resampling.nearest)
    lows: dict[int, float] = {}
    highs: dict[int, float] = {}
    for i, b in enumerate(unique):
        band = data[i]
        vals = np.asarray(band.compressed(), dtype=np.float64)
        vals = vals[np.isfinite(vals)]
        if vals.size == 0:
            log.warning("band %d has no valid pixel in the decimated read; using 0..1", b)
            lo, hi = 0.0, 1.0
        else:
            lo, hi = (float(v) for v in np.percentile(vals, percentiles))
            if hi <= lo:
                hi = lo + 1.0
        lows[b], highs[b] = lo, hi
    return BandScaling(tuple(lows[b] for b in bands), tuple(highs[b] for b in bands))


@dataclass
class _Tile:
    row: int
    col: int
    window: Any
    ox: tuple[int, int]
    oy: tuple[int, int]
    image: Image.Image | None = None
    valid: np.ndarray | None = None  # bool, output resolution, whole tile footprint


def _read_tile(
    src: Any,
    tile: _Tile,
    bands: tuple[int, ...],
    scaling: BandScaling | None,
    size: int,
    scale: int,
    min_valid: float,
) -> bool:
    """Read ``tile``'s window; fill ``tile.image`` and ``tile.valid``. False: skipped."""
    from PIL import Image

    w = tile.window
    unique = sorted(set(bands))
    data = src.read(unique, window=w)
    valid = src.dataset_mask(window=w) > 0
    if data.dtype.kind == "f":
        valid &= np.isfinite(data).all(axis=0)
    frac = float(valid.mean()) if valid.size else 0.0
    if frac < min_valid or not valid.any():
        return False
    idx = [unique.index(b) for b in bands]
    data = data[idx]
    rgb = data if scaling is None else scaling.apply(data)
    rgb = rgb.astype(np.uint8, copy=False)
    if not valid.all():  # neutral fill: the median of the tile's valid pixels
        rgb = rgb.copy()
        for c in range(3):
            rgb[c][~valid] = np.uint8(np.median(rgb[c][valid]))
    im = Image.fromarray(np.ascontiguousarray(rgb.transpose(1, 2, 0)))
    if im.size != (size, size):
        im = im.resize((size, size), Image.Resampling.BILINEAR)
    tile.image = im
    oh, ow = tile.oy[1] - tile.oy[0], tile.ox[1] - tile.ox[0]
    if scale == 1 and valid.shape == (oh, ow):
        tile.valid = valid
    else:
        m = Image.fromarray(valid.astype(np.float32))
        tile.valid = np.asarray(m.resize((ow, oh), Image.Resampling.BOX)) >= 0.5
    return True


def _classified(
    tiles: Iterable[_Tile],
    read: Any,
    clf: TwoStageClassifier,
    batch_size: int,
    progress: Progress,
) -> Iterator[tuple[_Tile, Result | None]]:
    """Yield ``(tile, Result or None when skipped)`` in input order, classifying in batches."""
    pending: list[_Tile] = []
    ready = 0

    def run() -> Iterator[tuple[_Tile, Result | None]]:
        todo = [t for t in pending if t.image is not None]
        results = iter(clf.classify([t.image for t in todo]))
        for t in pending:
            res = next(results) if t.image is not None else None
            t.image = None
            yield t, res
        progress.step(len(pending), classified=len(todo))

    for tile in tiles:
        progress.check_cancelled()
        if read(tile):
            ready += 1
        pending.append(tile)
        if ready >= batch_size:
            yield from run()
            pending, ready = [], 0
    if pending:
        yield from run()


# ------------------------------------------------------------------------ stitching


class _Strip:
    """Bounded accumulation buffer for one panel: output rows ``[y0, y0 + rows)``."""

    def __init__(self, dst: Any, x0: int, x1: int, rows: int, height: int, combine: str) -> None:
        self.dst, self.x0, self.x1 = dst, x0, x1
        self.rows, self.height, self.combine = rows, height, combine
        self.y0 = 0
        shape = (rows, x1 - x0)
        self.p = np.zeros(shape, np.float32)
        self.cam = np.zeros(shape, np.float32)
        self.weight = np.zeros(shape, np.float32)
        self.valid = np.zeros(shape, bool)
        self._weights: dict[tuple[int, int], np.ndarray] = {}

    @property
    def nbytes(self) -> int:
        return self.p.nbytes + self.cam.nbytes + self.weight.nbytes + self.valid.nbytes

    def _tile_weight(self, h: int, w: int) -> np.ndarray:
        key = (h, w)
        if key not in self._weights:
            v = np.sin(np.pi * (np.arange(h) + 0.5) / h)
            u = np.sin(np.pi * (np.arange(w) + 0.5) / w)
            self._weights[key] = (0.05 + np.outer(v, u)).astype(np.float32)
        return self._weights[key]

    def add(self, tile: _Tile, p: float, cam: np.ndarray) -> None:
        """Combine one classified tile (``cam`` at the tile's output size) into the buffer."""
        (ox0, ox1), (oy0, oy1) = tile.ox, tile.oy
        a, b = max(ox0, self.x0), min(ox1, self.x1)
        if a >= b:
            return
        r0, r1 = oy0 - self.y0, oy1 - self.y0
        if r0 < 0 or r1 > self.rows:  # cannot happen with row-major tiles; guard anyway
            raise RuntimeError(f"tile rows {oy0}..{oy1} outside the strip at {self.y0}")
        cs = slice(a - ox0, b - ox0)
        sl = (slice(r0, r1), slice(a - self.x0, b - self.x0))
        np.maximum(self.cam[sl], cam[:, cs] * np.float32(p), out=self.cam[sl])
        self.valid[sl] |= tile.valid[:, cs]
        if self.combine == "max":
            np.maximum(self.p[sl], np.float32(p), out=self.p[sl])
            self.weight[sl] += 1.0
        else:
            w = self._tile_weight(oy1 - oy0, ox1 - ox0)[:, cs]
            self.p[sl] += w * np.float32(p)
            self.weight[sl] += w

    def flush(self, to_row: int) -> None:
        """Write rows ``[y0, to_row)`` (final: no later tile touches them) and shift."""
        from rasterio.windows import Window

        to_row = min(to_row, self.height)
        while self.y0 < to_row:
            n = min(to_row - self.y0, self.rows)
            ok = self.valid[:n] & (self.weight[:n] > 0)
            if self.combine == "max":
                p = self.p[:n].copy()
            else:
                p = self.p[:n] / np.maximum(self.weight[:n], 1e-12)
            p = np.where(ok, np.clip(p, 0.0, 1.0), NODATA).astype(np.float32)
            cam = np.where(ok, np.clip(self.cam[:n], 0.0, 1.0), NODATA).astype(np.float32)
            win = Window(self.x0, self.y0, self.x1 - self.x0, n)
            self.dst.write(np.stack([p, cam]), window=win)
            for buf in (self.p, self.cam, self.weight, self.valid):
                if n < self.rows:
                    buf[: self.rows - n] = buf[n:].copy()
                buf[self.rows - n :] = 0
            self.y0 += n


def _panels(out_w: int, strip_rows: int, memory_mb: float) -> list[tuple[int, int]]:
    """Column ranges ``[x0, x1)`` whose strip buffers fit in half of ``memory_mb``."""
    bytes_per_col = strip_rows * 13  # 3 float32 buffers + 1 bool
    budget = memory_mb * 2**20 / 2
    width = int(budget // bytes_per_col) // BLOCK * BLOCK
    width = max(BLOCK, width)
    if width >= out_w:
        return [(0, out_w)]
    return [(x, min(out_w, x + width)) for x in range(0, out_w, width)]


# -------------------------------------------------------------------------- driver


def _check_output(output: Path, inputs: Sequence[Path]) -> Path:
    output = Path(output).expanduser().absolute()
    for p in inputs:
        if p.exists() and output.exists() and output.samefile(p):
            raise OutputNotWritableError(f"{output} is the input; choose another output file")
    if output.is_dir():
        raise OutputNotWritableError(f"{output} is a folder; give an output file name")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputNotWritableError(
            f"cannot create the folder {output.parent} ({exc.strerror}); choose another output"
        ) from exc
    if not os.access(output.parent, os.W_OK | os.X_OK):
        raise OutputNotWritableError(
            f"cannot write in {output.parent} (permission denied); choose another output folder"
        )
    return output


@dataclass(frozen=True)
class _Grid:
    """Where the tiles lie: their input offsets, and the output spans they cover."""

    tile: int
    stride: int
    scale: int
    out_w: int
    out_h: int
    xs: list[int]
    ys: list[int]
    tw: int  # tile width/height in input pixels (smaller than ``tile`` on a small raster)
    th: int
    xspans: list[tuple[int, int]]
    yspans: list[tuple[int, int]]

    @classmethod
    def of(cls, width: int, height: int, tile: int, overlap: float, scale: int) -> _Grid:
        """The grid of a ``width`` × ``height`` raster (see :func:`axis_offsets`)."""
        stride = tile_stride(tile, overlap)
        out_w, out_h = -(-width // scale), -(-height // scale)
        xs, ys = axis_offsets(width, tile, stride), axis_offsets(height, tile, stride)
        tw, th = min(tile, width), min(tile, height)
        return cls(
            tile=tile,
            stride=stride,
            scale=scale,
            out_w=out_w,
            out_h=out_h,
            xs=xs,
            ys=ys,
            tw=tw,
            th=th,
            xspans=[out_span(x, tw, scale, out_w) for x in xs],
            yspans=[out_span(y, th, scale, out_h) for y in ys],
        )

    @property
    def strip_rows(self) -> int:
        """Output rows a panel's strip buffer holds (a block plus the tallest tile)."""
        return BLOCK + max(b - a for a, b in self.yspans) + 1

    def panel_columns(self, panels: Sequence[tuple[int, int]]) -> list[list[int]]:
        """For each panel ``[x0, x1)``, the tile columns whose output overlaps it."""
        return [
            [c for c, (a, b) in enumerate(self.xspans) if a < x1 and b > x0] for x0, x1 in panels
        ]

    def tiles(self, columns: Sequence[int]) -> Iterator[_Tile]:
        """The tiles of ``columns``, row-major."""
        from rasterio.windows import Window

        for r, y in enumerate(self.ys):
            for c in columns:
                window = Window(self.xs[c], y, self.tw, self.th)
                yield _Tile(r, c, window, self.xspans[c], self.yspans[r])


def _check_georeferencing(
    src: Any, input_path: Path, summary: RasterSummary, progress: Progress
) -> None:
    """Record the raster's CRS in ``summary`` (none: a warning); DataError for a CRS
    without georeferencing."""
    gcps, gcp_crs = src.gcps
    crs = src.crs or (gcp_crs if gcps else None)
    name = summary.crs = crs.to_string() if crs else None
    if crs is None:
        msg = (
            f"{input_path} has no CRS: the output is written without one "
            "(assign one in QGIS or with gdal_edit.py -a_srs)"
        )
        log.warning(msg)
        progress.message(msg)
        summary.warnings.append(msg)
    elif src.transform.is_identity and not gcps and not src.rpcs:
        raise DataError(
            f"{input_path} has a CRS ({name}) but no georeferencing (no geotransform, "
            "GCPs or RPCs): its pixels have no position on the map; georeference it (QGIS "
            "Georeferencer, or gdal_translate -a_ullr) and run again"
        )


def _read_scaling(
    src: Any, input_path: Path, bands: tuple[int, ...], config: RasterConfig
) -> BandScaling | None:
    """The stretch of the raster's values to 8 bits (``None`` for 8-bit rasters), logged."""
    import rasterio.errors

    if src.count < 3 and config.bands is None:
        log.info("%s has %d band(s): band 1 is read as greyscale", input_path, src.count)
    try:
        scaling = band_scaling(src, bands, config.percentiles, config.stats_max_pixels)
    except rasterio.errors.RasterioIOError as exc:
        raise _unreadable(input_path, exc) from exc
    if scaling is not None:
        log.info(
            "stretching %s to 8 bits: low %s, high %s",
            src.dtypes[0],
            [round(v, 3) for v in scaling.low],
            [round(v, 3) for v in scaling.high],
        )
    return scaling


def _output_profile(src: Any, grid: _Grid) -> dict[str, Any]:
    """The rasterio profile of the two-band float32 output GeoTIFF."""
    from affine import Affine

    profile: dict[str, Any] = {
        "driver": "GTiff",
        "width": grid.out_w,
        "height": grid.out_h,
        "count": 2,
        "dtype": "float32",
        "nodata": NODATA,
        "tiled": True,
        "blockxsize": BLOCK,
        "blockysize": BLOCK,
        "compress": "deflate",
        "predictor": 3,
        "BIGTIFF": "IF_SAFER",
    }
    if src.crs is not None:
        profile["crs"] = src.crs
    if not src.transform.is_identity:
        profile["transform"] = src.transform @ Affine.scale(grid.scale)
    return profile


def _open_output(path: Path, src: Any, grid: _Grid, tags: dict[str, str]) -> Any:
    """The output GeoTIFF opened for writing, with band names, GCPs and ``tags``."""
    import rasterio
    import rasterio.errors

    try:
        with warnings.catch_warnings():  # no CRS/transform: warned already
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            dst = rasterio.open(path, "w", **_output_profile(src, grid))
    except rasterio.errors.RasterioIOError as exc:
        raise OutputNotWritableError(
            f"cannot create {path} ({exc}); choose another output folder"
        ) from exc
    gcps, gcp_crs = src.gcps
    if gcps and src.transform.is_identity:  # GCP-georeferenced input
        dst.gcps = (_scaled_gcps(gcps, grid.scale), gcp_crs)
    for i, name in enumerate(BAND_DESCRIPTIONS, start=1):
        dst.set_band_description(i, name)
    dst.update_tags(**tags)
    return dst


def _add_overviews(dst: Any, grid: _Grid, progress: Progress) -> None:
    """Average overviews of the output (for fast display in QGIS)."""
    from rasterio.enums import Resampling

    progress.start("overviews", 1)
    factors = overview_factors(grid.out_w, grid.out_h)
    if factors:
        dst.build_overviews(factors, Resampling.average)
        dst.update_tags(ns="rio_overview", resampling="average")
    progress.step(1)


@dataclass
class _Run:
    """One :func:`classify_raster` run: its input, model, output and what it counted."""

    src: Any
    input_path: Path
    config: RasterConfig
    bands: tuple[int, ...]
    scaling: BandScaling | None
    grid: _Grid
    size: int  # the model's input size
    threshold: float
    summary: RasterSummary
    progress: Progress
    keep_polygons: bool
    polygons: dict[tuple[int, int], _VectorRow] = field(default_factory=dict)

    def read(self, t: _Tile) -> bool:
        """Read one tile (see :func:`_read_tile`); a damaged file is a DataError."""
        import rasterio.errors

        try:
            return _read_tile(
                self.src, t, self.bands, self.scaling, self.size, self.grid.scale,
                self.config.min_valid,
            )  # fmt: skip
        except rasterio.errors.RasterioIOError as exc:
            raise _unreadable(self.input_path, exc) from exc

    def classify_panels(self, dst: Any, clf: TwoStageClassifier) -> None:
        """Classify every tile, panel by panel, writing each strip of rows once final."""
        grid, config, summary = self.grid, self.config, self.summary
        panels = _panels(grid.out_w, grid.strip_rows, config.memory_mb)
        summary.panels = len(panels)
        panel_cols = grid.panel_columns(panels)
        self.progress.start("classify tiles", sum(len(cols) for cols in panel_cols) * len(grid.ys))
        seen: set[tuple[int, int]] = set()
        for (x0, x1), cols in zip(panels, panel_cols, strict=True):
            strip = _Strip(dst, x0, x1, grid.strip_rows, grid.out_h, config.combine)
            row = -1
            tiles = grid.tiles(cols)
            for t, res in _classified(tiles, self.read, clf, config.batch_size, self.progress):
                if t.row != row:
                    row = t.row
                    strip.flush(t.oy[0] // BLOCK * BLOCK)
                key = (t.row, t.col)
                first = key not in seen
                seen.add(key)
                if res is None:
                    summary.skipped += first
                    continue
                summary.classified += first
                oh, ow = t.oy[1] - t.oy[0], t.ox[1] - t.ox[0]
                strip.add(t, res.p_final, resize_map(res.cam, ow, oh))
                if first and res.p_final >= self.threshold:
                    summary.positive += 1
                    if self.keep_polygons:
                        self.polygons[key] = _VectorRow.of(t, res)
                t.valid = None
            strip.flush(grid.out_h)


def classify_raster(
    input_path: str | Path,
    output: str | Path,
    model_dir: str | Path | None = None,
    config: RasterConfig | None = None,
    progress: Progress | None = None,
    vector: str | Path | None = None,
    loaded: LoadedModel | None = None,
) -> RasterSummary:
    """Classify ``input_path`` tile by tile and write the two-band defect GeoTIFF ``output``.

    Steps: check the inputs and load the model; lay out the tile grid (:class:`_Grid`);
    check the georeferencing and choose the 8-bit stretch; classify the tiles panel by
    panel into the output (:meth:`_Run.classify_panels`); add overviews; write the
    polygons of the positive tiles; rename the output into place.

    Args:
        input_path: a GDAL raster (GeoTIFF orthophoto...), 8-bit or not, any band count.
        output: the GeoTIFF to write (replaced when complete; see the module docstring).
        model_dir: model folder (``None``: the shipped one); ignored when ``loaded``.
        config: tiling, scaling, combination and memory settings.
        progress: progress/cancel hooks (``None``: silent).
        vector: optional GeoPackage: polygons of the tiles with ``p_final >= threshold``
            (layer ``raster_defects``, EPSG:4326 when the raster has a CRS, else pixel
            coordinates without CRS), replaced when complete.
        loaded: an already loaded model (skips ``model_dir``).

    Raises:
        InputNotFoundError: no input file. DataError: not a raster, bad bands.
        ModelError: missing or corrupt model (raised before any tile is read).
        OutputNotWritableError: the output cannot be written. CancelledError.
    """
    import rasterio

    from heritage.model.card import load_model
    from heritage.model.predict import TwoStageClassifier

    config = config or RasterConfig()
    config.validate()
    progress = progress or NullProgress()
    t_start = time.perf_counter()
    input_path = Path(input_path)
    src = open_raster(input_path)
    with src:
        bands = resolve_bands(src.count, config.bands)
        out_path = _check_output(Path(output), [input_path])
        vec_path = None
        if vector is not None:
            from heritage.io.gpkg import ensure_writable

            vec_path = ensure_writable(vector)
        if loaded is None:
            loaded = load_model(model_dir)  # ModelError before any work
        card = loaded.card
        tile = int(config.tile_size or card.input_size)
        grid = _Grid.of(src.width, src.height, tile, config.overlap, config.scale)
        threshold = card.threshold if config.threshold is None else config.threshold
        summary = RasterSummary(
            output=out_path,
            width=grid.out_w,
            height=grid.out_h,
            crs=None,
            tile_size=grid.tile,
            stride=grid.stride,
        )
        _check_georeferencing(src, input_path, summary, progress)
        summary.scaling = _read_scaling(src, input_path, bands, config)
        summary.tiles = len(grid.xs) * len(grid.ys)
        run = _Run(
            src=src,
            input_path=input_path,
            config=config,
            bands=bands,
            scaling=summary.scaling,
            grid=grid,
            size=card.input_size,
            threshold=threshold,
            summary=summary,
            progress=progress,
            keep_polygons=vec_path is not None,
        )
        tags = {
            "heritage_model": f"{card.model_id} {card.version}",
            "tile_size": str(grid.tile),
            "overlap": str(config.overlap),
            "combine": config.combine,
            "scale": str(grid.scale),
            "bands": ",".join(map(str, bands)),
            "threshold": str(threshold),
            "source": input_path.name,
        }
        cache_mb = max(16, int(config.memory_mb / 4))
        with atomic_path(out_path, suffix=out_path.suffix or ".tif") as tmp:
            with (
                rasterio.Env(
                    GDAL_CACHEMAX=cache_mb, COMPRESS_OVERVIEW="DEFLATE", PREDICTOR_OVERVIEW=3
                ),
                TwoStageClassifier(
                    loaded, device=config.device, cam_method=config.cam_method
                ) as clf,
                _open_output(tmp, src, grid, tags) as dst,
            ):
                run.classify_panels(dst, clf)
                _add_overviews(dst, grid, progress)
            if vec_path is not None:
                summary.polygons = _write_vector(vec_path, src, run.polygons)
                summary.vector = vec_path
    summary.seconds = time.perf_counter() - t_start
    log.info("wrote %s (%d tiles classified)", out_path, summary.classified)
    return summary


def _unreadable(path: Path, exc: Exception) -> DataError:
    """The one-line error for a raster whose pixels cannot be read (truncated, damaged)."""
    return DataError(
        f"{path} cannot be read ({exc}): the file is truncated or damaged; copy it again "
        "from its source (check it with gdalinfo -checksum) and run again"
    )


def _scaled_gcps(gcps: Sequence[Any], scale: int) -> list[Any]:
    """Ground control points moved to the pixel grid of an output ``scale`` times coarser."""
    from rasterio.control import GroundControlPoint

    if scale == 1:
        return list(gcps)
    return [
        GroundControlPoint(row=g.row / scale, col=g.col / scale, x=g.x, y=g.y, z=g.z, id=g.id)
        for g in gcps
    ]


@dataclass(frozen=True)
class _VectorRow:
    """What the vector layer keeps of a positive tile (no CAM: memory stays small)."""

    window: Any
    row: dict[str, Any]

    @classmethod
    def of(cls, tile: _Tile, res: Result) -> _VectorRow:
        return cls(
            tile.window,
            {
                "tile_row": tile.row,
                "tile_col": tile.col,
                "p_final": res.p_final,
                "p_stage1": res.p_stage1,
                "p_stage2": res.p_stage2,
                "decision": res.decision,
                "label": res.stage1.label,
                "cam_method": res.cam_method,
            },
        )


def _write_vector(path: Path, src: Any, tiles: dict[tuple[int, int], _VectorRow]) -> int:
    """Footprints of the positive tiles as polygons (EPSG:4326 when possible)."""
    import shapely
    from rasterio.windows import bounds

    from heritage.io.gpkg import Field, LayerSchema, append_batch

    keys = sorted(tiles)
    geoms = [shapely.box(*bounds(tiles[k].window, src.transform)) for k in keys]
    crs: str | None = None
    if src.crs is not None:
        try:
            from pyproj import CRS, Transformer

            tr = Transformer.from_crs(CRS.from_user_input(src.crs.to_wkt()), 4326, always_xy=True)
            geoms = [
                shapely.transform(
                    shapely.segmentize(g, g.length / 16),
                    lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])),
                )
                for g in geoms
            ]
            crs = "EPSG:4326"
        except Exception as exc:  # pyproj errors: keep the raster's CRS
            log.warning("cannot reproject the tile polygons to EPSG:4326 (%s)", exc)
            crs = src.crs.to_wkt()
    schema = LayerSchema(
        VECTOR_LAYER,
        (
            Field("tile_row", "int"),
            Field("tile_col", "int"),
            Field("p_final", "float"),
            Field("p_stage1", "float"),
            Field("p_stage2", "float"),
            Field("decision", "bool"),
            Field("label", "str"),
            Field("cam_method", "str"),
        ),
        geometry_type="Polygon",
        crs=crs,
    )
    rows = [tiles[k].row for k in keys]
    with atomic_path(path, suffix=".gpkg") as tmp:
        append_batch(tmp, schema, rows, geoms)
    return len(rows)
