"""Coordinate systems and vector input: metric CRS for an area, reading and cleaning layers.

Distances in heritage are always computed in metres in a projected CRS chosen for
the survey area (:func:`metric_crs_for`): the UTM zone of the area, or a local
azimuthal equidistant projection where UTM does not fit (polar areas, surveys
spread over more than one zone). Vector files are read with pyogrio, checked for
a CRS, reprojected, and their geometries repaired (``shapely.make_valid``) or
dropped when empty; every change is reported as a problem string.

geopandas, shapely and pyproj are imported inside the functions (light commands
must not load them).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from heritage.kernel.errors import DataError, InputNotFoundError

if TYPE_CHECKING:
    import geopandas as gpd
    import pyproj

log = logging.getLogger(__name__)

WGS84 = "EPSG:4326"
VECTOR_SUFFIXES = (".gpkg", ".geojson", ".json", ".shp")
#: UTM is defined between 80°S and 84°N; outside it we use a local projection.
UTM_LAT_RANGE = (-80.0, 84.0)
#: How far (degrees of longitude) points may lie outside the chosen UTM zone.
UTM_ZONE_TOLERANCE_DEG = 1.0


def _lon_lat_arrays(obj: Any) -> tuple[list[float], list[float]]:
    """Longitudes and latitudes (WGS84) of a GeoDataFrame/GeoSeries or (lon, lat) pairs."""
    import geopandas as gpd

    if isinstance(obj, gpd.GeoDataFrame | gpd.GeoSeries):
        geoms = obj.geometry if isinstance(obj, gpd.GeoDataFrame) else obj
        if geoms.crs is None:
            raise DataError("the layer has no CRS; set one (e.g. EPSG:4326) before measuring it")
        geoms = geoms[~(geoms.isna() | geoms.is_empty)]
        g = geoms if geoms.crs.equals(WGS84) else geoms.to_crs(WGS84)
        coords = g.get_coordinates()
        return coords["x"].tolist(), coords["y"].tolist()
    pts = [tuple(p) for p in obj] if isinstance(obj, Iterable) else []
    return [float(p[0]) for p in pts], [float(p[1]) for p in pts]


def _circular_mean_lon(lons: list[float]) -> float:
    s = sum(math.sin(math.radians(x)) for x in lons)
    c = sum(math.cos(math.radians(x)) for x in lons)
    return math.degrees(math.atan2(s, c))


def _lon_offset(lon: float, centre: float) -> float:
    """Signed difference lon - centre wrapped into [-180, 180)."""
    return (lon - centre + 180.0) % 360.0 - 180.0


def local_aeqd_crs(lon: float, lat: float) -> pyproj.CRS:
    """Azimuthal equidistant CRS (metres) centred on ``(lon, lat)``."""
    from pyproj import CRS

    return CRS.from_proj4(
        f"+proj=aeqd +lat_0={lat:.8f} +lon_0={lon:.8f} +x_0=0 +y_0=0 +datum=WGS84 +units=m +no_defs"
    )


def metric_crs_for(obj: Any) -> pyproj.CRS:
    """A projected CRS in metres suited to the area covered by ``obj``.

    ``obj`` is a GeoDataFrame/GeoSeries (any CRS, must have one) or an iterable of
    ``(lon, lat)`` pairs in WGS84. Returns the WGS84 UTM zone of the area's centre
    (geopandas ``estimate_utm_crs``), e.g. EPSG:32632 for Arezzo, EPSG:327xx south
    of the equator. Falls back to a local azimuthal equidistant projection centred
    on the area when the area reaches beyond the UTM latitudes (80°S-84°N) or
    spreads more than ``UTM_ZONE_TOLERANCE_DEG`` outside the chosen zone.
    """
    import geopandas as gpd
    from shapely.geometry import Point

    lons, lats = _lon_lat_arrays(obj)
    if not lons:
        raise DataError("cannot choose a metric CRS for an empty set of locations")
    if any(
        not (-180.0 <= x <= 180.0 and -90.0 <= y <= 90.0) for x, y in zip(lons, lats, strict=True)
    ):
        raise DataError("coordinates are not longitude/latitude in degrees (WGS84)")
    c_lon = _circular_mean_lon(lons)
    c_lat = (min(lats) + max(lats)) / 2.0
    if min(lats) < UTM_LAT_RANGE[0] or max(lats) > UTM_LAT_RANGE[1]:
        log.info("area reaches polar latitudes: using a local azimuthal equidistant CRS")
        return local_aeqd_crs(c_lon, c_lat)
    try:
        utm = gpd.GeoSeries([Point(c_lon, c_lat)], crs=WGS84).estimate_utm_crs()
    except RuntimeError:
        return local_aeqd_crs(c_lon, c_lat)
    zone = int(utm.utm_zone[:-1]) if utm.utm_zone else None
    if zone is not None:
        central = -183.0 + 6.0 * zone
        spill = max(abs(_lon_offset(x, central)) for x in lons) - 3.0
        if spill > UTM_ZONE_TOLERANCE_DEG:
            log.info("area spreads %.1f° beyond UTM zone %s: using a local CRS", spill, zone)
            return local_aeqd_crs(c_lon, c_lat)
    return utm


def to_metric(gdf: gpd.GeoDataFrame, crs: Any = None) -> gpd.GeoDataFrame:
    """``gdf`` reprojected to ``crs`` or, when None, to :func:`metric_crs_for` of itself."""
    if gdf.crs is None:
        raise DataError("the layer has no CRS; set one (e.g. EPSG:4326) before measuring it")
    return gdf.to_crs(metric_crs_for(gdf) if crs is None else crs)


def repair_geometries(
    gdf: gpd.GeoDataFrame, what: str = "feature"
) -> tuple[gpd.GeoDataFrame, list[str]]:
    """Drop missing/empty geometries and repair invalid ones; report what was done.

    Invalid geometries are repaired with ``shapely.make_valid(method="structure")``
    so that polygons stay polygons (a self-intersecting "bow tie" becomes a
    MultiPolygon). A geometry that is empty after repair is dropped. Returns the
    cleaned copy (same index labels, minus dropped rows) and one message per change.
    """
    import shapely

    problems: list[str] = []
    geoms = gdf.geometry
    missing = geoms.isna() | geoms.is_empty
    for label in gdf.index[missing]:
        problems.append(f"{what} {label}: empty or missing geometry, dropped")
    out = gdf.loc[~missing].copy()
    invalid = ~out.geometry.is_valid
    if invalid.any():
        reasons = shapely.is_valid_reason(out.geometry[invalid].values)
        fixed = shapely.make_valid(
            out.geometry[invalid].values, method="structure", keep_collapsed=False
        )
        out.loc[invalid, out.geometry.name] = fixed
        for label, reason in zip(out.index[invalid], reasons, strict=True):
            problems.append(f"{what} {label}: invalid geometry ({reason}), repaired")
        collapsed = out.geometry.isna() | out.geometry.is_empty
        for label in out.index[collapsed]:
            problems.append(f"{what} {label}: geometry empty after repair, dropped")
        out = out.loc[~collapsed]
    for p in problems:
        log.warning(p)
    return out, problems


def _pick_layer(path: Path, layer: str | int | None) -> str | int | None:
    import pyogrio

    if layer is not None:
        return layer
    layers = pyogrio.list_layers(path)
    spatial = [str(name) for name, gtype in layers if gtype is not None]
    if len(spatial) == 1:
        return spatial[0]
    if not spatial:
        raise DataError(f"{path} has no layer with geometries")
    raise DataError(f"{path} has several layers {spatial}; choose one with layer=")


def read_vector(
    path: str | Path, layer: str | int | None = None, *, to_crs: Any = WGS84
) -> gpd.GeoDataFrame:
    """Read a .gpkg/.geojson/.shp layer with pyogrio, checked and cleaned.

    * missing file -> :class:`InputNotFoundError`; unknown suffix, no CRS, several
      spatial layers without ``layer`` -> :class:`DataError` saying what to do;
    * reprojected to ``to_crs`` (default EPSG:4326; ``"metric"`` = the metric CRS
      of the area, :func:`metric_crs_for`; None = keep the file's CRS);
    * empty geometries dropped and invalid ones repaired (:func:`repair_geometries`).

    The problems found are logged as warnings and listed in
    ``gdf.attrs["problems"]`` (list of str).
    """
    import geopandas as gpd

    path = Path(path)
    if not path.exists():
        raise InputNotFoundError(f"vector file not found: {path}")
    if path.suffix.lower() not in VECTOR_SUFFIXES:
        raise DataError(f"{path.name}: unsupported vector format; use one of {VECTOR_SUFFIXES}")
    chosen = _pick_layer(path, layer)
    try:
        gdf = gpd.read_file(path, layer=chosen, engine="pyogrio")
    except Exception as exc:  # pyogrio raises DataSourceError/DataLayerError etc.
        raise DataError(f"cannot read {path} (layer {chosen!r}): {exc}") from exc
    if gdf.crs is None:
        raise DataError(
            f"{path.name} has no coordinate reference system; assign one in QGIS "
            "(Layer > Set CRS) or add a .prj file, then try again"
        )
    gdf, problems = repair_geometries(gdf, what=f"{path.name} feature")
    if isinstance(to_crs, str) and to_crs == "metric":
        gdf = to_metric(gdf) if len(gdf) else gdf
    elif to_crs is not None and not gdf.crs.equals(to_crs):
        gdf = gdf.to_crs(to_crs)
    gdf.attrs["problems"] = problems
    return gdf


#: a route start farther than this from every building is checked for swapped axes
FAR_START_M = 100_000.0


def haversine_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Great-circle distance in metres between two WGS84 points (mean Earth radius)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6_371_008.8 * math.asin(min(1.0, math.sqrt(a)))


def check_start(start: tuple[float, float], places: Iterable[tuple[float, float]]) -> None:
    """Raise :class:`DataError` when a route start ``(lon, lat)`` is far from every place
    (``(lon, lat)`` pairs) but near one with latitude and longitude swapped; log a
    warning when it is far either way."""
    places = list(places)
    if not places:
        return
    lon, lat = start
    near = min(haversine_m(lon, lat, x, y) for x, y in places)
    if near <= FAR_START_M:
        return
    if -90.0 <= lon <= 90.0:
        swapped = min(haversine_m(lat, lon, x, y) for x, y in places)
        if swapped <= FAR_START_M:
            raise DataError(
                f"the start {lon:g},{lat:g} is {near / 1000:,.0f} km from the nearest building "
                f"but {swapped / 1000:,.1f} km with latitude and longitude swapped: give "
                f"LON,LAT (longitude first), e.g. --start {lat:g},{lon:g}"
            )
    log.warning("the route start is %.0f km from the nearest building", near / 1000)
