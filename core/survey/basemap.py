"""A local basemap under a map: a georeferenced raster or a folder of XYZ tiles.

Nothing is downloaded. Two sources are understood:

* a raster file GDAL reads (GeoTIFF, JPEG2000, VRT, MBTiles...) with a CRS;
* a folder of web-map tiles laid out ``{z}/{x}/{y}.png`` (or ``.jpg``/``.jpeg``/
  ``.webp``), EPSG:3857, the XYZ scheme of OpenStreetMap-style tile servers and of
  QGIS' "Generate XYZ tiles (Directory)". The deepest zoom level whose tiles cover
  the view with at most :data:`MAX_TILES` tiles is used.

Either is reprojected (rasterio's warp) onto the map's grid: an RGB(A) array for
``imshow`` over the view's extent. rasterio and Pillow are imported inside functions.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from heritage.kernel.errors import DataError, InputNotFoundError

logger = logging.getLogger(__name__)

TILE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
MAX_TILES = 64
#: half the side of the EPSG:3857 square (metres)
WEB_MERCATOR_HALF = 20037508.342789244


def _tile_bounds(z: int, x: int, y: int) -> tuple[float, float, float, float]:
    """(left, bottom, right, top) of XYZ tile ``z/x/y`` in EPSG:3857 metres."""
    size = 2 * WEB_MERCATOR_HALF / 2**z
    left = -WEB_MERCATOR_HALF + x * size
    top = WEB_MERCATOR_HALF - y * size
    return left, top - size, left + size, top


def _tile_range(
    z: int, bounds_3857: tuple[float, float, float, float]
) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of the tiles of zoom ``z`` that cover ``bounds_3857``, inclusive."""
    size = 2 * WEB_MERCATOR_HALF / 2**z
    n = 2**z - 1
    left, bottom, right, top = bounds_3857
    x0 = min(n, max(0, math.floor((left + WEB_MERCATOR_HALF) / size)))
    x1 = min(n, max(0, math.floor((right + WEB_MERCATOR_HALF) / size)))
    y0 = min(n, max(0, math.floor((WEB_MERCATOR_HALF - top) / size)))
    y1 = min(n, max(0, math.floor((WEB_MERCATOR_HALF - bottom) / size)))
    return x0, y0, x1, y1


def _tile_file(folder: Path, z: int, x: int, y: int) -> Path | None:
    for suffix in TILE_SUFFIXES:
        path = folder / str(z) / str(x) / f"{y}{suffix}"
        if path.is_file():
            return path
    return None


def _tile_mosaic(
    folder: Path, bounds_3857: tuple[float, float, float, float]
) -> tuple[Any, Any] | None:
    """(RGBA array, affine transform in EPSG:3857) of the tiles covering the view."""
    import numpy as np
    from affine import Affine
    from PIL import Image

    zooms = sorted((int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit()),
                   reverse=True)  # fmt: skip
    for z in zooms:
        x0, y0, x1, y1 = _tile_range(z, bounds_3857)
        if (x1 - x0 + 1) * (y1 - y0 + 1) > MAX_TILES:
            continue
        files = {
            (x, y): _tile_file(folder, z, x, y)
            for x in range(x0, x1 + 1)
            for y in range(y0, y1 + 1)
        }
        if not any(files.values()):
            continue
        first = next(f for f in files.values() if f is not None)
        with Image.open(first) as im:
            ts = im.size[0]
        mosaic = np.zeros(((y1 - y0 + 1) * ts, (x1 - x0 + 1) * ts, 4), dtype=np.uint8)
        for (x, y), f in files.items():
            if f is None:
                continue
            with Image.open(f) as im:
                tile = np.asarray(im.convert("RGBA").resize((ts, ts)))
            mosaic[(y - y0) * ts : (y - y0 + 1) * ts, (x - x0) * ts : (x - x0 + 1) * ts] = tile
        left, _, _, top = _tile_bounds(z, x0, y0)
        res = 2 * WEB_MERCATOR_HALF / 2**z / ts
        return mosaic, Affine(res, 0.0, left, 0.0, -res, top)
    return None


def _warp(
    bands: Any, src_transform: Any, src_crs: Any, dst_crs: Any, extent: tuple, shape: tuple
) -> Any:
    """Reproject ``bands`` (band, row, col) onto the view; returns (row, col, band) uint8."""
    import numpy as np
    from rasterio.transform import from_bounds
    from rasterio.warp import Resampling, reproject

    x0, x1, y0, y1 = extent
    h, w = shape
    dst = np.zeros((bands.shape[0], h, w), dtype=bands.dtype)
    reproject(
        source=bands,
        destination=dst,
        src_transform=src_transform,
        src_crs=src_crs,
        dst_transform=from_bounds(x0, y0, x1, y1, w, h),
        dst_crs=dst_crs,
        resampling=Resampling.bilinear,
        src_nodata=None,
        dst_nodata=0,
    )
    return np.moveaxis(dst, 0, -1)


def _to_uint8(arr: Any) -> Any:
    import numpy as np

    if arr.dtype == np.uint8:
        return arr
    a = arr.astype("float64")
    lo, hi = np.nanpercentile(a, 2), np.nanpercentile(a, 98)
    return (np.clip((a - lo) / max(hi - lo, 1e-9), 0, 1) * 255).astype(np.uint8)


def _colormap(ds: Any) -> dict | None:
    try:
        return ds.colormap(1)
    except ValueError:  # no palette
        return None


def basemap_image(
    source: str | Path, crs: Any, extent: tuple[float, float, float, float], width_px: int = 1200
) -> Any:
    """The basemap over ``extent`` = (xmin, xmax, ymin, ymax) in ``crs``, as an
    (H, W, 3|4) uint8 array, ``width_px`` wide. ``None`` when the source does not
    cover the view. Raises InputNotFoundError / DataError for an unusable source.
    """
    import numpy as np
    import rasterio
    from rasterio.errors import RasterioIOError
    from rasterio.warp import transform_bounds

    source = Path(source)
    if not source.exists():
        raise InputNotFoundError(f"basemap not found: {source}")
    x0, x1, y0, y1 = extent
    h = max(1, round(width_px * (y1 - y0) / (x1 - x0)))
    if source.is_dir():
        b3857 = transform_bounds(crs, "EPSG:3857", x0, y0, x1, y1)
        got = _tile_mosaic(source, b3857)
        if got is None:
            raise DataError(
                f"basemap folder {source} holds no {{z}}/{{x}}/{{y}} tiles over the survey area"
            )
        mosaic, transform = got
        out = _warp(np.moveaxis(mosaic, -1, 0), transform, "EPSG:3857", crs, extent, (h, width_px))
    else:
        try:
            ds = rasterio.open(source)
        except RasterioIOError as exc:
            raise DataError(f"basemap {source} is not a raster GDAL can read ({exc})") from exc
        with ds:
            if ds.crs is None:
                raise DataError(f"basemap {source} has no CRS; georeference it first")
            bands = ds.read(list(range(1, min(ds.count, 4) + 1)))
            src_transform, src_crs = ds.transform, ds.crs
            cmap = _colormap(ds) if ds.count == 1 else None
        if cmap is not None:  # a paletted raster: its colours
            lut = np.array([cmap.get(i, (0, 0, 0, 0)) for i in range(256)], np.uint8)
            bands = np.moveaxis(lut[bands[0].astype(np.uint8)], -1, 0)
        bands = _to_uint8(bands)
        if bands.shape[0] == 1:
            bands = np.repeat(bands, 3, axis=0)
        elif bands.shape[0] == 2:
            bands = np.concatenate([np.repeat(bands[:1], 3, axis=0), bands[1:]])
        out = _warp(bands, src_transform, src_crs, crs, extent, (h, width_px))
    if not out.any():
        logger.warning("the basemap %s does not cover the survey area", source)
        return None
    if out.shape[-1] == 3:  # transparent where nothing was warped
        alpha = np.where(out.any(axis=-1), 255, 0).astype(np.uint8)[..., None]
        out = np.concatenate([out, alpha], axis=-1)
    return out
