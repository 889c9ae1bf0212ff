"""Group survey photos by building and summarise the buildings that need conservation.

Two ways to know "the building" of a photo:

* with building footprints (polygons from OSM, a cadastre ...): the nearest footprint
  within ``max_distance_m`` (:func:`assign_to_footprints`, distance 0 inside);
* without footprints: flagged photos clustered with DBSCAN in metres
  (:func:`cluster_points`); a building is then the buffered convex hull of its photos.

Order of work (the priority counts the flagged photos on the same building):
group (:func:`group_observations`) -> score (:func:`apply_priority`) -> summarise
(:func:`summarise_buildings`). :func:`flagged_buildings` does all three.

Observations are a GeoDataFrame with columns ``obs_id``, ``file_name``, ``flagged``
(bool), ``priority_score`` (float), ``priority_category`` (str) and Point geometry
(EPSG:4326); for :func:`apply_priority` also ``p_final`` and ``defect_area_fraction``.
Photos without geometry are ignored by the grouping (their building_id is NA).
geopandas/sklearn are imported inside functions.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from heritage.kernel.errors import DataError
from heritage.survey.priority import (
    CATEGORIES,
    DEFAULT_CONFIG,
    PriorityConfig,
    category_rank,
    priority_category,
    priority_scores,
)

if TYPE_CHECKING:
    import geopandas as gpd
    import pandas as pd

log = logging.getLogger(__name__)

WGS84 = "EPSG:4326"
#: Prefix given to the footprint attributes copied onto the buildings layer.
FOOTPRINT_PREFIX = "fp_"
#: Columns of the buildings layer, in order (footprint attributes follow).
BUILDING_COLUMNS = (
    "building_id",
    "source",
    "footprint_index",
    "n_photos",
    "n_flagged",
    "priority_score",
    "priority_category",
    "mean_priority_score",
    "obs_ids",
    "file_names",
    "flagged_file_names",
)
LIST_SEPARATOR = ";"


@dataclass(frozen=True)
class BuildingGrouping:
    """Result of grouping observations by building.

    ``buildings``: one polygon per building holding >= 1 flagged photo (EPSG:4326),
    columns :data:`BUILDING_COLUMNS` + footprint attributes prefixed ``fp_``.
    ``building_of_observation``: nullable Int64 Series indexed like the observations:
    the building_id of each photo, NA when it has no geometry or is on no flagged
    building. ``observations``: the (scored) observations with a ``building_id``
    column, when produced by :func:`flagged_buildings`. ``problems``: messages about
    input geometries that were repaired or dropped.
    """

    buildings: gpd.GeoDataFrame
    building_of_observation: pd.Series
    observations: gpd.GeoDataFrame | None = None
    problems: list[str] = field(default_factory=list)


def _located(gdf: gpd.GeoDataFrame) -> pd.Series:
    g = gdf.geometry
    return ~(g.isna() | g.is_empty)


def _require_crs(gdf: gpd.GeoDataFrame, what: str) -> None:
    if gdf.crs is None:
        raise DataError(f"the {what} layer has no CRS; set one (photos are EPSG:4326)")


def _prepare_footprints(footprints_gdf: gpd.GeoDataFrame) -> tuple[gpd.GeoDataFrame, list[str]]:
    """Footprints indexed by position, invalid ones repaired, empty ones dropped."""
    _require_crs(footprints_gdf, "footprint")
    fp = footprints_gdf.reset_index(drop=True)
    fp.index.name = None
    return _repair(fp)


def _repair(fp: gpd.GeoDataFrame) -> tuple[gpd.GeoDataFrame, list[str]]:
    from heritage.io.geo import repair_geometries

    return repair_geometries(fp, what="footprint")


def _polygons_only(fp: gpd.GeoDataFrame) -> tuple[gpd.GeoDataFrame, list[str]]:
    """Footprints must be polygons: DataError when none is, the others dropped with a
    problem each."""
    kinds = fp.geom_type
    polygonal = kinds.isin(["Polygon", "MultiPolygon"]).to_numpy()
    if len(fp) and not polygonal.any():
        raise DataError(
            f"the footprints are {', '.join(sorted(set(kinds)))} geometries, not building "
            "polygons; give footprint polygons (e.g. buildings from OpenStreetMap or a cadastre)"
        )
    problems = [
        f"footprint {label}: a {kind}, not a polygon, dropped"
        for label, kind in zip(fp.index[~polygonal], kinds[~polygonal], strict=True)
    ]
    for p in problems:
        log.warning(p)
    return fp[polygonal], problems


def _no_photo_near(points: gpd.GeoDataFrame, fp: gpd.GeoDataFrame, max_distance_m: float) -> str:
    """Raise DataError when the footprints look like latitude and longitude are swapped
    (their x/y box, swapped, covers the photos); else the warning that no photo lies
    near a footprint."""
    pts = points.geometry.to_crs(WGS84) if not points.crs.equals(WGS84) else points.geometry
    fpw = fp.geometry.to_crs(WGS84) if not fp.crs.equals(WGS84) else fp.geometry
    px0, py0, px1, py1 = pts.total_bounds
    fx0, fy0, fx1, fy1 = fpw.total_bounds
    margin = 0.01  # degrees, about a kilometre

    def overlaps(ax0: float, ay0: float, ax1: float, ay1: float) -> bool:
        return (
            ax0 <= px1 + margin
            and px0 - margin <= ax1
            and ay0 <= py1 + margin
            and (py0 - margin <= ay1)
        )

    if overlaps(fy0, fx0, fy1, fx1) and not overlaps(fx0, fy0, fx1, fy1):
        raise DataError(
            "the footprints lie where the photos would be with latitude and longitude "
            f"swapped (footprints x {fx0:.4f}..{fx1:.4f}, y {fy0:.4f}..{fy1:.4f}; photos lon "
            f"{px0:.4f}..{px1:.4f}, lat {py0:.4f}..{py1:.4f}): fix the axis order of the "
            "footprints (x must be the longitude), then run again"
        )
    msg = (
        f"none of the {len(pts)} located photo(s) lies within {max_distance_m:g} m of a "
        f"footprint (footprints lon {fx0:.4f}..{fx1:.4f}, lat {fy0:.4f}..{fy1:.4f}; photos "
        f"lon {px0:.4f}..{px1:.4f}, lat {py0:.4f}..{py1:.4f}): check the footprints' area "
        "and CRS, or raise --max-distance"
    )
    log.warning(msg)
    return msg


def _nearest_footprint(
    points_gdf: gpd.GeoDataFrame, fp: gpd.GeoDataFrame, max_distance_m: float
) -> np.ndarray:
    """Footprint position (index of the prepared ``fp``) of each point, or -1."""
    import geopandas as gpd

    from heritage.io.geo import metric_crs_for

    result = np.full(len(points_gdf), -1, dtype=np.int64)
    located = _located(points_gdf).to_numpy()
    if not located.any() or len(fp) == 0:
        return result
    crs = metric_crs_for(points_gdf[located])
    pts = gpd.GeoDataFrame(
        {"_row": np.flatnonzero(located)},
        geometry=points_gdf.geometry[located].to_crs(crs).values,
        crs=crs,
    )
    fpm = gpd.GeoDataFrame({"_pos": fp.index.to_numpy()}, geometry=fp.geometry.values, crs=fp.crs)
    joined = gpd.sjoin_nearest(
        pts, fpm.to_crs(crs), how="inner", max_distance=max_distance_m, distance_col="_dist"
    )
    if len(joined):
        best = joined.sort_values(["_row", "_dist", "_pos"]).drop_duplicates("_row")
        result[best["_row"].to_numpy()] = best["_pos"].to_numpy()
    return result


def assign_to_footprints(
    points_gdf: gpd.GeoDataFrame,
    footprints_gdf: gpd.GeoDataFrame,
    max_distance_m: float = 25.0,
) -> pd.Series:
    """Position (0-based, as ``footprints_gdf.iloc``) of each point's footprint, or -1.

    Each point goes to the nearest footprint within ``max_distance_m`` metres,
    measured in the metric CRS of the points' area (footprints in another CRS are
    reprojected; a point inside a polygon is at distance 0). Ties (equal distance,
    e.g. a point inside overlapping footprints) go to the lowest position. Points
    without geometry, or farther than the limit, get -1. Invalid footprints are
    repaired and empty ones skipped (logged as warnings). Returns an int64 Series
    indexed like ``points_gdf``.
    """
    import pandas as pd

    result = pd.Series(-1, index=points_gdf.index, dtype="int64", name="footprint_index")
    if len(points_gdf) == 0 or len(footprints_gdf) == 0:
        return result
    _require_crs(points_gdf, "photo")
    fp, _ = _prepare_footprints(footprints_gdf)
    result[:] = _nearest_footprint(points_gdf, fp, max_distance_m)
    return result


def cluster_points(
    points_gdf: gpd.GeoDataFrame, eps_m: float = 30.0, min_samples: int = 1
) -> np.ndarray:
    """DBSCAN cluster label (0..k-1) of each point, clustering in metres.

    Points within ``eps_m`` of each other (chained) share a cluster. DBSCAN noise
    (possible when ``min_samples`` > 1) becomes a singleton cluster of its own, so
    every point gets a label. Labels are numbered in order of first appearance.
    Every point must have a geometry (:class:`DataError` otherwise).
    """
    from sklearn.cluster import DBSCAN

    from heritage.io.geo import metric_crs_for

    if len(points_gdf) == 0:
        return np.zeros(0, dtype=np.int64)
    _require_crs(points_gdf, "photo")
    if not _located(points_gdf).all():
        raise DataError("cluster_points needs a geometry for every point; drop the others first")
    metric = points_gdf.geometry.to_crs(metric_crs_for(points_gdf))
    xy = np.column_stack([metric.x.to_numpy(), metric.y.to_numpy()])
    raw = DBSCAN(eps=eps_m, min_samples=min_samples).fit_predict(xy)
    labels = np.empty(len(raw), dtype=np.int64)
    mapping: dict[int, int] = {}
    for i, lab in enumerate(raw):
        key = int(lab) if lab >= 0 else -(i + 1)  # each noise point is its own cluster
        labels[i] = mapping.setdefault(key, len(mapping))
    return labels


def _building_ids(grouping: BuildingGrouping, index: pd.Index) -> pd.Series:
    """``building_of_observation`` aligned on ``index`` (the same observations)."""
    s = grouping.building_of_observation
    if s.index.equals(index):
        return s
    if not index.is_unique or not s.index.is_unique:
        raise DataError("observations need a unique index to be matched with their buildings")
    return s.reindex(index)


def _flag_array(obs: gpd.GeoDataFrame) -> np.ndarray:
    if "flagged" not in obs.columns:
        raise DataError("observations need a boolean 'flagged' column")
    return obs["flagged"].fillna(False).astype(bool).to_numpy()


def group_observations(
    observations_gdf: gpd.GeoDataFrame,
    footprints_gdf: gpd.GeoDataFrame | None = None,
    *,
    max_distance_m: float = 25.0,
    eps_m: float = 30.0,
    min_samples: int = 1,
    hull_buffer_m: float = 10.0,
) -> BuildingGrouping:
    """Find the buildings holding >= 1 flagged photo and the building of every photo.

    With footprints: every located photo is assigned to its footprint
    (:func:`assign_to_footprints`); a building is a footprint with a flagged photo
    (building_id = 1.. in footprint order). Without: flagged photos are clustered
    (:func:`cluster_points`), unflagged photos join the nearest cluster within
    ``eps_m``, and the building polygon is the convex hull of the cluster's photos
    buffered by ``hull_buffer_m`` metres. The buildings layer holds geometry and
    identity columns only; :func:`summarise_buildings` adds counts and priority.
    """
    import geopandas as gpd
    import pandas as pd

    from heritage.io.geo import metric_crs_for

    _require_crs(observations_gdf, "photo")
    flagged = _flag_array(observations_gdf)
    located = _located(observations_gdf).to_numpy()
    n = len(observations_gdf)
    building_of = pd.Series(pd.NA, index=observations_gdf.index, dtype="Int64", name="building_id")
    problems: list[str] = []
    if located.any():
        geom_types = set(observations_gdf.geometry[located].geom_type)
        if geom_types - {"Point"}:
            raise DataError(f"observation geometries must be points, found {sorted(geom_types)}")

    if footprints_gdf is not None:
        fp, problems = _prepare_footprints(footprints_gdf)
        fp, kept = _polygons_only(fp)
        problems += kept
        fp_pos = _nearest_footprint(observations_gdf, fp, max_distance_m)
        if located.any() and not (fp_pos[located] >= 0).any():
            problems.append(_no_photo_near(observations_gdf[located], fp, max_distance_m))
        flagged_fps = sorted({int(p) for p in fp_pos[flagged & (fp_pos >= 0)]})
        fps = fp.loc[flagged_fps]
        if not fps.crs.equals(WGS84):
            fps = fps.to_crs(WGS84)
        attrs = pd.DataFrame(fps.drop(columns=fps.geometry.name)).reset_index(drop=True)
        attrs.columns = [f"{FOOTPRINT_PREFIX}{c}" for c in attrs.columns]
        ids = np.arange(1, len(flagged_fps) + 1)
        buildings = gpd.GeoDataFrame(
            {
                "building_id": ids,
                "source": "footprint",
                "footprint_index": np.asarray(flagged_fps, dtype=np.int64),
            },
            geometry=fps.geometry.to_numpy(),
            crs=WGS84,
        )
        buildings = pd.concat([buildings, attrs], axis=1)
        id_of_pos = dict(zip(flagged_fps, ids.tolist(), strict=True))
        building_of[:] = [id_of_pos.get(int(p), pd.NA) for p in fp_pos]
    else:
        obs_geom = observations_gdf.geometry
        sel = np.flatnonzero(flagged & located)
        crs = metric_crs_for(observations_gdf[located]) if located.any() else None
        labels = cluster_points(observations_gdf.iloc[sel], eps_m, min_samples)
        ids = labels + 1
        values: list = [pd.NA] * n
        for row, bid in zip(sel, ids, strict=True):
            values[row] = int(bid)
        others = np.flatnonzero(~flagged & located)
        if len(sel) and len(others):
            flagged_pts = gpd.GeoDataFrame(
                {"_bid": ids}, geometry=obs_geom.iloc[sel].values, crs=obs_geom.crs
            )
            other_pts = gpd.GeoDataFrame(
                {"_row": others}, geometry=obs_geom.iloc[others].values, crs=obs_geom.crs
            )
            joined = gpd.sjoin_nearest(
                other_pts.to_crs(crs),
                flagged_pts.to_crs(crs),
                max_distance=eps_m,
                distance_col="_dist",
            )
            joined = joined.sort_values(["_row", "_dist", "_bid"]).drop_duplicates("_row")
            for row, bid in zip(joined["_row"], joined["_bid"], strict=True):
                values[int(row)] = int(bid)
        building_of[:] = values
        polys = []
        member_ids = building_of.to_numpy(dtype="float64", na_value=np.nan)
        metric_pts = obs_geom.to_crs(crs) if crs is not None else None
        n_buildings = int(labels.max()) + 1 if len(labels) else 0
        for bid in range(1, n_buildings + 1):
            members = metric_pts[member_ids == bid]
            polys.append(members.union_all().convex_hull.buffer(hull_buffer_m))
        buildings = gpd.GeoDataFrame(
            {
                "building_id": np.arange(1, n_buildings + 1),
                "source": "cluster",
                "footprint_index": np.full(n_buildings, -1, dtype=np.int64),
            },
            geometry=gpd.GeoSeries(polys, crs=crs).to_crs(WGS84).values
            if n_buildings
            else gpd.GeoSeries([], crs=WGS84).values,
            crs=WGS84,
        )
    buildings["building_id"] = buildings["building_id"].astype("int64")
    return BuildingGrouping(buildings, building_of, None, problems)


def flagged_counts(observations_gdf: gpd.GeoDataFrame, grouping: BuildingGrouping) -> np.ndarray:
    """Number of flagged photos on each photo's building (a lone photo counts itself)."""
    flagged = _flag_array(observations_gdf)
    bid = _building_ids(grouping, observations_gdf.index)
    counts = bid[flagged].value_counts()
    n = bid.map(counts).fillna(0).to_numpy(dtype=np.int64)
    # photos on no building (no geometry): only themselves
    no_building = bid.isna().to_numpy()
    n[no_building] = flagged[no_building].astype(np.int64)
    return n


def has_recorded_threshold(observations_gdf: gpd.GeoDataFrame) -> np.ndarray:
    """Which photos carry the decision threshold they were classified with (a
    ``threshold`` in [0, 1); older surveys have no such column, or NULL in it)."""
    if "threshold" not in observations_gdf.columns:
        return np.zeros(len(observations_gdf), dtype=bool)
    t = observations_gdf["threshold"].astype("float64").to_numpy()
    return (t >= 0.0) & (t < 1.0)  # NaN fails both comparisons


def recorded_thresholds(observations_gdf: gpd.GeoDataFrame, fallback: float) -> np.ndarray:
    """Each photo's decision threshold (its ``threshold`` column), ``fallback`` where
    there is none (:func:`has_recorded_threshold`)."""
    known = has_recorded_threshold(observations_gdf)
    t = np.full(len(observations_gdf), float(fallback), dtype=np.float64)
    if known.any():
        t[known] = observations_gdf["threshold"].astype("float64").to_numpy()[known]
    return t


def apply_priority(
    observations_gdf: gpd.GeoDataFrame,
    grouping: BuildingGrouping,
    cfg: PriorityConfig = DEFAULT_CONFIG,
) -> gpd.GeoDataFrame:
    """Copy of the observations with the priority filled in.

    Uses ``p_final`` (confidence), ``defect_area_fraction`` and ``flagged`` and the
    number of flagged photos on the same building (:func:`flagged_counts`). Adds or
    overwrites ``building_id``, ``n_flagged_on_building``, ``priority_score`` and
    ``priority_category``. Photos that are not flagged get score 0 and category
    ``"none"``; a missing ``defect_area_fraction`` counts as 0. Each photo's score is
    anchored to its own ``threshold`` (the decision threshold it was classified with);
    photos without one (no column, or NULL) use ``cfg.confidence_floor``.
    """
    for col in ("p_final", "defect_area_fraction"):
        if col not in observations_gdf.columns:
            raise DataError(f"observations need a {col!r} column to compute the priority")
    out = observations_gdf.copy()
    flagged = _flag_array(out)
    n = flagged_counts(out, grouping)
    p = out["p_final"].astype("float64").to_numpy()
    area = out["defect_area_fraction"].astype("float64").fillna(0.0).to_numpy()
    floor = recorded_thresholds(out, cfg.confidence_floor)
    scores = np.zeros(len(out), dtype=np.float64)
    if flagged.any():
        if np.isnan(p[flagged]).any():
            raise DataError("a flagged observation has no p_final")
        scores[flagged] = priority_scores(
            p[flagged], area[flagged], n[flagged], cfg, floor[flagged]
        )
    out["building_id"] = _building_ids(grouping, out.index).to_numpy()
    out["n_flagged_on_building"] = n
    out["priority_score"] = scores
    out["priority_category"] = [
        priority_category(float(s), bool(f), cfg) for s, f in zip(scores, flagged, strict=True)
    ]
    return out


def _join(values) -> str:
    return LIST_SEPARATOR.join("" if v is None else str(v) for v in values)


def summarise_buildings(
    observations_gdf: gpd.GeoDataFrame, grouping: BuildingGrouping
) -> gpd.GeoDataFrame:
    """The buildings layer of ``grouping`` with counts and priority from the observations.

    ``n_photos``/``n_flagged``: photos/flagged photos on the building;
    ``priority_score``: the worst (highest) score of its flagged photos;
    ``priority_category``: the most urgent category among them;
    ``mean_priority_score``: mean score of its flagged photos; ``obs_ids``,
    ``file_names`` (all photos) and ``flagged_file_names``: ``;``-joined strings.
    """
    import pandas as pd

    for col in ("obs_id", "file_name", "priority_score", "priority_category"):
        if col not in observations_gdf.columns:
            raise DataError(f"observations need a {col!r} column to summarise buildings")
    b = grouping.buildings.copy()
    obs = pd.DataFrame(observations_gdf.drop(columns=observations_gdf.geometry.name))
    obs["_bid"] = _building_ids(grouping, obs.index).to_numpy()
    obs["_flagged"] = _flag_array(observations_gdf)
    obs = obs[obs["_bid"].notna()]
    by_building = {int(k): g for k, g in obs.groupby("_bid", sort=False)}
    empty = obs.iloc[:0]
    rows = []
    for bid in b["building_id"]:
        g = by_building.get(int(bid), empty)
        f = g[g["_flagged"]]
        cats = [c for c in f["priority_category"] if c in CATEGORIES]
        rows.append(
            {
                "n_photos": len(g),
                "n_flagged": len(f),
                "priority_score": float(f["priority_score"].max()) if len(f) else 0.0,
                "priority_category": min(cats, key=category_rank) if cats else "none",
                "mean_priority_score": float(f["priority_score"].mean()) if len(f) else 0.0,
                "obs_ids": _join(g["obs_id"]),
                "file_names": _join(g["file_name"]),
                "flagged_file_names": _join(f["file_name"]),
            }
        )
    stats = pd.DataFrame(rows, index=b.index, columns=list(BUILDING_COLUMNS[3:]))
    b = b.drop(columns=[c for c in stats.columns if c in b.columns])
    b = pd.concat([b, stats], axis=1)
    b["n_photos"] = b["n_photos"].astype("int64")
    b["n_flagged"] = b["n_flagged"].astype("int64")
    fp_cols = [c for c in b.columns if c not in BUILDING_COLUMNS and c != b.geometry.name]
    return b[[*BUILDING_COLUMNS, *fp_cols, b.geometry.name]]


def flagged_buildings(
    observations_gdf: gpd.GeoDataFrame,
    footprints_gdf: gpd.GeoDataFrame | None = None,
    *,
    priority_cfg: PriorityConfig | None = None,
    max_distance_m: float = 25.0,
    eps_m: float = 30.0,
    min_samples: int = 1,
    hull_buffer_m: float = 10.0,
) -> BuildingGrouping:
    """Buildings needing conservation as polygons (EPSG:4326) + the building of each photo.

    Groups (:func:`group_observations`), then, when ``priority_cfg`` is given,
    scores the photos (:func:`apply_priority`, needs ``p_final`` and
    ``defect_area_fraction``; otherwise the ``priority_score``/``priority_category``
    columns are used as they are), then summarises (:func:`summarise_buildings`).
    The returned ``observations`` carry ``building_id`` (and the priority).
    """
    grouping = group_observations(
        observations_gdf,
        footprints_gdf,
        max_distance_m=max_distance_m,
        eps_m=eps_m,
        min_samples=min_samples,
        hull_buffer_m=hull_buffer_m,
    )
    if priority_cfg is not None:
        obs = apply_priority(observations_gdf, grouping, priority_cfg)
    else:
        obs = observations_gdf.copy()
        obs["building_id"] = grouping.building_of_observation.to_numpy()
    buildings = summarise_buildings(obs, grouping)
    log.info(
        "%d flagged photos on %d buildings",
        int(_flag_array(obs).sum()),
        len(buildings),
    )
    return BuildingGrouping(buildings, grouping.building_of_observation, obs, grouping.problems)
