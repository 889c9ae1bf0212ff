"""Sites: flagged buildings far apart are inspected on separate routes.

A survey may hold photos from several towns (or continents). One route through all of
them would send the inspector across the sea, so the buildings are first split into
**sites**: two buildings belong to the same site when a chain of buildings links them
in which each step is at most ``gap_m`` metres (single linkage, great-circle distance
between the buildings' representative points; DBSCAN with ``min_samples=1``). The
default gap, :data:`SITE_GAP_M` = 2 km, is about half an hour's walk: buildings of one
historic centre stay together, the next town is another site. Each site gets its own
open route (:func:`heritage.survey.route.plan_route`), so **no leg of a route is longer than
the gap** unless the buildings of one site are strung out along a chain of such steps
(a leg joins two buildings of the same site; the route solver may still choose a
longer leg inside a site when that shortens the site's route overall).

Sites are visited one after the other: the site of the start point first (when the
start lies within the gap of one of its buildings), then the site holding the
highest priority score, and so on; visit numbers continue from one site to the next,
so every building has one number on the map, in the table and in the map tips.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import geopandas as gpd
    import pandas as pd

#: metres: buildings farther apart than this (through any chain) form separate sites
SITE_GAP_M = 2000.0
EARTH_RADIUS_M = 6_371_008.8
#: columns the per-site planner adds to the route legs
SITE_LEG_COLUMNS = ("site", "to_visit")


@dataclass(frozen=True)
class Site:
    """One site of a survey: its number (visiting order), buildings, route length and
    the median position of its buildings (WGS84)."""

    site: int
    buildings: int
    route_m: float
    lon: float
    lat: float
    first_visit: int
    last_visit: int
    gap_m: float = SITE_GAP_M

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)

    def label(self) -> str:
        """``site 2 near 40.4470,-3.7248: 3 building(s), route 412 m``."""
        return (
            f"site {self.site} near {self.lat:.4f},{self.lon:.4f}: {self.buildings} "
            f"building(s), route {self.route_m:.0f} m"
        )


def _points_lon_lat(gdf: gpd.GeoDataFrame) -> np.ndarray:
    """Representative points of ``gdf`` (any CRS) as an (n, 2) array of lon, lat."""
    from heritage.io.geo import metric_crs_for

    geoms = gdf.geometry
    if len(gdf) and not all(geoms.geom_type == "Point"):
        crs = metric_crs_for(gdf)
        geoms = geoms.to_crs(crs).representative_point().to_crs("EPSG:4326")
    else:
        geoms = geoms.to_crs("EPSG:4326")
    return np.column_stack([geoms.x.to_numpy(), geoms.y.to_numpy()])


def haversine_m(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Great-circle distances (m) between lon/lat rows of ``a`` (n, 2) and ``b`` (m, 2)."""
    la, lb = np.radians(a), np.radians(b)
    dlon = lb[None, :, 0] - la[:, None, 0]
    dlat = lb[None, :, 1] - la[:, None, 1]
    h = (
        np.sin(dlat / 2) ** 2
        + np.cos(la[:, None, 1]) * np.cos(lb[None, :, 1]) * np.sin(dlon / 2) ** 2
    )
    return 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))


def site_labels(lon_lat: np.ndarray, gap_m: float = SITE_GAP_M) -> np.ndarray:
    """0-based site of each lon/lat row: single-linkage groups at ``gap_m`` metres."""
    from sklearn.cluster import DBSCAN

    if gap_m <= 0:
        raise ValueError("the site gap must be > 0 metres")
    if len(lon_lat) == 0:
        return np.zeros(0, dtype=np.int64)
    radians = np.radians(lon_lat[:, ::-1])  # haversine wants (lat, lon)
    db = DBSCAN(eps=gap_m / EARTH_RADIUS_M, min_samples=1, metric="haversine")
    return db.fit_predict(radians).astype(np.int64)


#: plans one site: (its buildings, start lon/lat or None) -> (visit order, legs, metres)
RouteOne = Callable[
    ["gpd.GeoDataFrame", "tuple[float, float] | None"],
    "tuple[pd.Series, gpd.GeoDataFrame, float]",
]


def plan_by_site(
    buildings: gpd.GeoDataFrame,
    start: tuple[float, float] | None,
    route_one: RouteOne,
    gap_m: float = SITE_GAP_M,
    score_col: str = "priority_score",
) -> tuple[pd.Series, gpd.GeoDataFrame, float, list[Site], list[str]]:
    """Split ``buildings`` into sites and plan each site's route with ``route_one``.

    Returns the visit number of each building (1..n, continuing across sites), the
    legs of every site (``order`` numbered across sites, ``cumulative_m`` restarting
    at each site, plus ``site`` and ``to_visit``), the total metres, the sites and
    the problems to report (a start too far from every site).
    """
    import geopandas as gpd
    import pandas as pd

    problems: list[str] = []
    pts = _points_lon_lat(buildings)
    labels = site_labels(pts, gap_m)
    n_sites = int(labels.max()) + 1 if len(labels) else 0
    start_site = None
    if start is not None and len(pts):
        dist = haversine_m(np.asarray([start], dtype=float), pts)[0]
        nearest = int(np.argmin(dist))
        if dist[nearest] <= gap_m:
            start_site = int(labels[nearest])
        else:
            problems.append(
                f"the route start is {dist[nearest] / 1000:.1f} km from the nearest flagged "
                f"building, more than the {gap_m / 1000:g} km between sites: each site's "
                "route begins at its highest-priority building"
            )
    scores = (
        buildings[score_col].astype(float).to_numpy()
        if score_col in buildings.columns
        else np.zeros(len(buildings))
    )

    def site_key(s: int) -> tuple:
        members = np.flatnonzero(labels == s)
        return (s != start_site, -float(scores[members].max()), int(members.min()))

    visit = pd.Series(pd.NA, index=buildings.index, dtype="Int64", name="visit_order")
    site_of = pd.Series(0, index=buildings.index, dtype="int64", name="site")
    all_legs: list[gpd.GeoDataFrame] = []
    sites: list[Site] = []
    offset = 0
    total = 0.0
    for number, s in enumerate(sorted(range(n_sites), key=site_key), start=1):
        members = np.flatnonzero(labels == s)
        part = buildings.iloc[members]
        v, legs, metres = route_one(part, start if s == start_site else None)
        v = v.astype("int64").to_numpy() + offset
        visit.iloc[members] = v
        site_of.iloc[members] = number
        legs = legs.copy()
        to_stop = legs["to_stop"].to_numpy().astype(np.int64)
        legs["to_stop"] = members[to_stop] if len(legs) else to_stop
        from_stop = legs["from_stop"].to_numpy().astype(np.int64)
        legs["from_stop"] = np.where(from_stop < 0, from_stop, members[np.maximum(from_stop, 0)])
        legs["site"] = np.full(len(legs), number, dtype=np.int64)
        legs["to_visit"] = v[to_stop] if len(legs) else np.zeros(0, dtype=np.int64)
        all_legs.append(legs)
        centre = np.median(pts[members], axis=0)
        sites.append(
            Site(number, len(members), float(metres), float(centre[0]), float(centre[1]),
                 offset + 1, offset + len(members), float(gap_m))
        )  # fmt: skip
        offset += len(members)
        total += float(metres)
    if all_legs:
        legs = pd.concat(all_legs, ignore_index=True)
        legs["order"] = np.arange(1, len(legs) + 1, dtype=np.int64)
        legs = gpd.GeoDataFrame(legs, geometry="geometry", crs="EPSG:4326")
    else:
        legs = route_one(buildings.iloc[[]], None)[1].assign(
            site=pd.Series([], dtype="int64"), to_visit=pd.Series([], dtype="int64")
        )
    return visit, legs, total, sites, problems


def summary_line(sites: list[dict[str, Any]]) -> str:
    """One sentence on the sites of a survey ("" for one site or none)."""
    if len(sites) < 2:
        return ""
    gap_m = float(sites[0].get("gap_m", SITE_GAP_M))
    parts = "; ".join(Site(**s).label() for s in sites)
    return (
        f"{len(sites)} sites more than {gap_m / 1000:g} km apart, each with its own route: {parts}"
    )
