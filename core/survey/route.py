"""Inspection route: visit every flagged building once, in a short order.

The route is an open path (no return), optionally from a fixed start point.
Distances are metres in the metric CRS of the area (:func:`heritage.io.geo.metric_crs_for`):
straight lines by default, or shortest paths along a street network.

Solver (small problems, a few hundred stops at most): candidates are

* the nearest-neighbour path from the start, and
* a Christofides tour (``networkx.algorithms.approximation.christofides``) over the
  start and the stops, cut open at the start (dropping the longer of its two
  edges there); without a start, cut at its longest edge;

each improved by 2-opt for open paths; the shortest wins. So the route is never
longer than the nearest-neighbour path (:func:`nearest_neighbour_tour_length`).
Without a start, the path may begin at any stop (a virtual start at distance 0
from every stop). Christofides is called on the complete graph directly rather than
through ``traveling_salesman_problem``, which re-expands every edge into shortest
paths and could visit a stop twice when rounding breaks the triangle inequality.

With ``by_priority=True`` the stops are visited category by category (A before B
...), each category in a short order starting where the previous one ended.

Network mode (``network_gdf``: LineStrings, any CRS): lines are noded at their
intersections (``shapely.node``; set ``node_intersections=False`` for networks
with bridges that already share vertices at real junctions), split at every
vertex, endpoints snapped to a 0.5 m grid; edges weigh their length. Each stop and
the start is joined to the nearest point of the network (the edge is split there)
by a straight access segment, counted in the leg length. Legs follow the
network. A network that does not connect all stops raises :class:`DataError`
naming the unreachable stops (no silent fallback to straight lines).
"""

from __future__ import annotations

import itertools
import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from heritage.kernel.errors import DataError
from heritage.survey.priority import category_rank, priority_category

if TYPE_CHECKING:
    import geopandas as gpd
    import networkx as nx
    import pandas as pd
    import pyproj

log = logging.getLogger(__name__)

WGS84 = "EPSG:4326"
START = -1  #: ``from_stop`` value of the first leg when the route has a start point
SNAP_GRID_M = 0.5
CHRISTOFIDES_MAX_NODES = 300
LEG_COLUMNS = ("order", "from_stop", "to_stop", "from_id", "to_id", "leg_m", "cumulative_m")


@dataclass(frozen=True)
class RouteResult:
    """A planned inspection route.

    ``order``: stop positions (0-based, as ``stops_gdf.iloc``) in visiting order.
    ``visit_order``: 1-based visit number per stop, indexed like ``stops_gdf``
    (the ``visit_order`` field of flagged_buildings). ``legs``: the
    ``inspection_route`` layer, one LineString per leg in EPSG:4326 with
    :data:`LEG_COLUMNS` (``from_stop`` = -1 for the start). ``total_m``: route
    length in metres. ``line``: one row, the whole route as a LineString (EPSG:4326).
    ``crs``: the metric CRS the distances were computed in.
    """

    order: list[int]
    visit_order: pd.Series
    legs: gpd.GeoDataFrame
    total_m: float
    line: gpd.GeoDataFrame
    crs: pyproj.CRS


# ---------------------------------------------------------------- path solver


def _path_cost(d: np.ndarray, path: list[int] | np.ndarray) -> float:
    p = np.asarray(path)
    return float(d[p[:-1], p[1:]].sum()) if len(p) > 1 else 0.0


def _nearest_neighbour(d: np.ndarray, first: int, nodes: list[int]) -> list[int]:
    """Greedy path from ``first`` through ``nodes`` (ties: lowest index)."""
    left = list(nodes)
    path = [first]
    while left:
        cur = path[-1]
        k = int(np.argmin(d[cur, left]))
        path.append(left.pop(k))
    return path


def _two_opt(d: np.ndarray, path: list[int], max_rounds: int = 1000) -> list[int]:
    """2-opt for an open path whose first node is fixed and last node is free."""
    p = np.asarray(path)
    m = len(p)
    if m < 3:
        return list(p)
    for _ in range(max_rounds):
        improved = False
        for i in range(1, m - 1):
            a, b = p[i - 1], p[i]
            js = np.arange(i + 1, m)
            c = p[js]
            delta = d[a, c] - d[a, b]
            inner = js < m - 1
            nxt = p[js[inner] + 1]
            delta[inner] += d[b, nxt] - d[c[inner], nxt]
            k = int(np.argmin(delta))
            if delta[k] < -1e-9:
                j = js[k]
                p[i : j + 1] = p[i : j + 1][::-1].copy()
                improved = True
        if not improved:
            break
    return p.tolist()


def _christofides_cycle(d: np.ndarray) -> list[int]:
    import networkx as nx
    from networkx.algorithms.approximation import christofides

    n = len(d)
    g = nx.Graph()
    g.add_weighted_edges_from((i, j, float(d[i, j])) for i in range(n) for j in range(i + 1, n))
    return christofides(g, weight="weight")


def _open_path(d_full: np.ndarray, start: int | None, nodes: list[int]) -> list[int]:
    """Short open path visiting ``nodes`` (indices of ``d_full``), from ``start`` if given.

    Returns the nodes in order (without ``start``).
    """
    if len(nodes) <= 1:
        return list(nodes)
    k = len(nodes)
    # local matrix: node 0 = start (or a virtual start at distance 0), 1..k = nodes
    d = np.zeros((k + 1, k + 1))
    idx = np.asarray(nodes)
    d[1:, 1:] = d_full[np.ix_(idx, idx)]
    if start is not None:
        d[0, 1:] = d_full[start, idx]
        d[1:, 0] = d_full[idx, start]
    local = list(range(1, k + 1))
    candidates = [_nearest_neighbour(d, 0, local)]
    if k + 1 >= 3 and k + 1 <= CHRISTOFIDES_MAX_NODES:
        if start is not None:
            cyc = _christofides_cycle(d)[:-1]
            r = cyc.index(0)
            cyc = cyc[r:] + cyc[:r]  # 0, a, ..., z
            fwd, back = cyc, [0, *cyc[1:][::-1]]
            candidates.append(fwd if d[cyc[-1], 0] >= d[0, cyc[1]] else back)
        elif k >= 3:
            sub = d[1:, 1:]
            cyc = _christofides_cycle(sub)[:-1]
            edges = [sub[cyc[i], cyc[(i + 1) % k]] for i in range(k)]
            cut = int(np.argmax(edges))
            path = cyc[cut + 1 :] + cyc[: cut + 1]
            candidates.append([0, *(x + 1 for x in path)])
    improved = [_two_opt(d, c) for c in candidates]
    best = min(improved, key=lambda p: _path_cost(d, p))
    return [nodes[x - 1] for x in best[1:]]


# ---------------------------------------------------------------- network distances


@dataclass
class _Network:
    graph: nx.Graph
    coords: dict[Any, tuple[float, float]]
    node_of: list[Any]  # network node of each point
    access_m: np.ndarray  # straight distance point -> its network node


def _build_network(
    network_gdf: gpd.GeoDataFrame,
    crs: pyproj.CRS,
    points_xy: np.ndarray,
    node_intersections: bool,
) -> _Network:
    import networkx as nx
    import shapely
    from shapely.geometry import LineString, Point

    if network_gdf.crs is None:
        raise DataError("the network layer has no CRS; set one (e.g. EPSG:4326)")
    geoms = network_gdf.geometry.to_crs(crs)
    geoms = geoms[~(geoms.isna() | geoms.is_empty)]
    lines = [g for g in geoms.explode(index_parts=False) if g.geom_type == "LineString"]
    if not lines:
        raise DataError("the network layer holds no LineStrings; give a street/path layer")
    if node_intersections:
        noded = shapely.node(shapely.MultiLineString(lines))
        lines = list(noded.geoms)

    def key(x: float, y: float) -> tuple[int, int]:
        return (round(x / SNAP_GRID_M), round(y / SNAP_GRID_M))

    g = nx.Graph()
    coords: dict[Any, tuple[float, float]] = {}
    for line in lines:
        xy = np.asarray(line.coords)[:, :2]
        for (x0, y0), (x1, y1) in itertools.pairwise(xy):
            u, v = key(x0, y0), key(x1, y1)
            if u == v:
                continue
            # the grid cell is the node's identity; its position is the first vertex seen
            coords.setdefault(u, (float(x0), float(y0)))
            coords.setdefault(v, (float(x1), float(y1)))
            w = math.dist(coords[u], coords[v])
            if not g.has_edge(u, v) or g[u][v]["weight"] > w:
                g.add_edge(u, v, weight=w)
    if g.number_of_edges() == 0:
        raise DataError("the network layer has only zero-length lines")

    # snap every point to the nearest point of the nearest edge, splitting it there
    edges = list(g.edges())
    edge_lines = [LineString([coords[u], coords[v]]) for u, v in edges]
    tree = shapely.STRtree(edge_lines)
    pts = [Point(x, y) for x, y in points_xy]
    hits = tree.query_nearest(pts, all_matches=False)
    nearest_edge = np.empty(len(pts), dtype=np.int64)
    nearest_edge[hits[0]] = hits[1]
    node_of: list[Any] = [None] * len(pts)
    access = np.zeros(len(pts))
    by_edge: dict[int, list[tuple[float, int]]] = {}
    for i, (pt, e) in enumerate(zip(pts, nearest_edge, strict=True)):
        line = edge_lines[e]
        access[i] = line.distance(pt)
        by_edge.setdefault(int(e), []).append((line.project(pt), i))
    for e, items in by_edge.items():
        u, v = edges[e]
        length = g[u][v]["weight"]
        chain: list[tuple[float, Any]] = []
        for t, i in sorted(items):
            if t <= 1e-6:
                node_of[i] = u
            elif t >= length - 1e-6:
                node_of[i] = v
            else:
                if chain and abs(chain[-1][0] - t) <= 1e-6:
                    node_of[i] = chain[-1][1]
                    continue
                n = ("snap", e, len(chain))
                p = edge_lines[e].interpolate(t)
                coords[n] = (p.x, p.y)
                chain.append((t, n))
                node_of[i] = n
        if chain:
            g.remove_edge(u, v)
            seq = [(0.0, u), *chain, (length, v)]
            for (t0, a), (t1, b) in itertools.pairwise(seq):
                g.add_edge(a, b, weight=t1 - t0)
    return _Network(g, coords, node_of, access)


def _network_matrix(net: _Network, labels: list[str], has_start: bool) -> np.ndarray:
    import networkx as nx

    n = len(net.node_of)
    d = np.zeros((n, n))
    lengths: dict[Any, dict[Any, float]] = {}
    for node in dict.fromkeys(net.node_of):
        lengths[node] = nx.single_source_dijkstra_path_length(net.graph, node, weight="weight")
    unreachable = np.zeros((n, n), dtype=bool)
    for i in range(n):
        li = lengths[net.node_of[i]]
        for j in range(n):
            if i == j:
                continue
            sp = li.get(net.node_of[j])
            if sp is None:
                unreachable[i, j] = True
            else:
                d[i, j] = net.access_m[i] + sp + net.access_m[j]
    if unreachable.any():
        # reference group: the start's component, or the one holding most points
        ref = 0 if has_start else int(np.argmax((~unreachable).sum(axis=1)))
        bad = [labels[j] for j in range(n) if j != ref and unreachable[ref, j]]
        what = "the start" if has_start else "the other stops"
        raise DataError(
            f"the network does not connect {len(bad)} stop(s) to {what}: {', '.join(bad)}; "
            "add the missing streets to the network (or check it is one connected layer), "
            "or plan the route without a network"
        )
    return d


def _network_leg(net: _Network, i: int, j: int, xy: np.ndarray) -> list[tuple[float, float]]:
    import networkx as nx

    nodes = nx.dijkstra_path(net.graph, net.node_of[i], net.node_of[j], weight="weight")
    pts = [tuple(xy[i])] + [net.coords[n] for n in nodes] + [tuple(xy[j])]
    out: list[tuple[float, float]] = []
    for p in pts:
        if not out or math.dist(out[-1], p) > 1e-9:
            out.append(p)
    if len(out) == 1:
        out.append(out[0])
    return out


# ---------------------------------------------------------------- public API


def _stop_points_metric(stops_gdf: gpd.GeoDataFrame, crs: pyproj.CRS) -> np.ndarray:
    g = stops_gdf.geometry.to_crs(crs)
    rep = g.where(g.geom_type == "Point", g.representative_point())
    return np.column_stack([rep.x.to_numpy(), rep.y.to_numpy()])


def _prepare(
    stops_gdf: gpd.GeoDataFrame, start: tuple[float, float] | None
) -> tuple[pyproj.CRS, np.ndarray]:
    """Metric CRS and metric coordinates of [start?] + stops."""
    import geopandas as gpd
    from shapely.geometry import Point

    from heritage.io.geo import metric_crs_for

    if stops_gdf.crs is None:
        raise DataError("the stops layer has no CRS; set one (e.g. EPSG:4326)")
    bad = stops_gdf.geometry.isna() | stops_gdf.geometry.is_empty
    if bad.any():
        raise DataError(
            f"stops without geometry at positions {np.flatnonzero(bad.to_numpy()).tolist()}; "
            "drop them before planning the route"
        )
    area = stops_gdf.geometry.to_crs(WGS84)
    if start is not None:
        lon, lat = float(start[0]), float(start[1])
        if not (-180 <= lon <= 180 and -90 <= lat <= 90):
            raise DataError(f"start must be (lon, lat) in degrees, got {start}")
        area = gpd.GeoSeries([*area, Point(lon, lat)], crs=WGS84)
    crs = metric_crs_for(area) if len(area) else None
    if crs is None:
        return None, np.zeros((0, 2))
    xy = _stop_points_metric(stops_gdf, crs)
    if start is not None:
        s = gpd.GeoSeries([Point(start[0], start[1])], crs=WGS84).to_crs(crs)
        xy = np.vstack([[s.x.iloc[0], s.y.iloc[0]], xy])
    return crs, xy


def _distance_matrix(
    xy: np.ndarray,
    crs: pyproj.CRS,
    network_gdf: gpd.GeoDataFrame | None,
    labels: list[str],
    has_start: bool,
    node_intersections: bool,
) -> tuple[np.ndarray, _Network | None]:
    if network_gdf is None:
        diff = xy[:, None, :] - xy[None, :, :]
        return np.hypot(diff[..., 0], diff[..., 1]), None
    net = _build_network(network_gdf, crs, xy, node_intersections)
    return _network_matrix(net, labels, has_start), net


def _ranks(stops_gdf: gpd.GeoDataFrame, priority_col: str, category_col: str) -> np.ndarray:
    if category_col in stops_gdf.columns:
        cats = stops_gdf[category_col].fillna("none").astype(str)
    elif priority_col in stops_gdf.columns:
        cats = [priority_category(float(s), True) for s in stops_gdf[priority_col]]
    else:
        raise DataError(
            f"by_priority needs a {category_col!r} or {priority_col!r} column on the stops"
        )
    try:
        return np.array([category_rank(c) for c in cats], dtype=np.int64)
    except ValueError as exc:
        raise DataError(str(exc)) from exc


def plan_route(
    stops_gdf: gpd.GeoDataFrame,
    start: tuple[float, float] | None = None,
    by_priority: bool = False,
    priority_col: str = "priority_score",
    network_gdf: gpd.GeoDataFrame | None = None,
    *,
    category_col: str = "priority_category",
    id_col: str | None = "building_id",
    node_intersections: bool = True,
) -> RouteResult:
    """Plan a short open route visiting every stop exactly once.

    ``stops_gdf``: points or polygons (polygons are visited at their
    ``representative_point``), any CRS. ``start``: ``(lon, lat)`` in WGS84 where the
    route begins, or None to begin at whichever stop gives the shortest route.
    ``by_priority``: visit stops category by category, most urgent first (the
    ``category_col`` column, else categories derived from ``priority_col``).
    ``network_gdf``: LineString street/path layer to route along (see module doc).
    ``id_col``: stop column used for ``from_id``/``to_id`` on the legs (position when absent).
    """
    import geopandas as gpd
    import pandas as pd
    from shapely.geometry import LineString

    n = len(stops_gdf)
    has_start = start is not None
    crs, xy = _prepare(stops_gdf, start)
    offset = 1 if has_start else 0
    if id_col and id_col in stops_gdf.columns:
        ids = [str(v) for v in stops_gdf[id_col]]
    else:
        ids = [str(i) for i in range(n)]
    labels = (["start"] if has_start else []) + [f"stop {i} (id {ids[i]})" for i in range(n)]
    if n == 0:
        d, net = np.zeros((offset, offset)), None
    else:
        d, net = _distance_matrix(xy, crs, network_gdf, labels, has_start, node_intersections)

    groups: list[list[int]]
    if by_priority and n:
        ranks = _ranks(stops_gdf, priority_col, category_col)
        groups = [list(np.flatnonzero(ranks == r) + offset) for r in sorted(set(ranks.tolist()))]
    else:
        groups = [list(range(offset, n + offset))]
    current: int | None = 0 if has_start else None
    visit: list[int] = []
    for group in groups:
        path = _open_path(d, current, [int(x) for x in group])
        visit += path
        if path:
            current = path[-1]
    order = [v - offset for v in visit]

    seq = ([0] if has_start else []) + visit
    rows, geoms_m = [], []
    cumulative = 0.0
    for k, (a, b) in enumerate(itertools.pairwise(seq), start=1):
        leg_m = float(d[a, b])
        cumulative += leg_m
        coords = _network_leg(net, a, b, xy) if net is not None else [tuple(xy[a]), tuple(xy[b])]
        geoms_m.append(LineString(coords))
        rows.append(
            {
                "order": k,
                "from_stop": a - offset,
                "to_stop": b - offset,
                "from_id": "start" if a - offset == START else ids[a - offset],
                "to_id": ids[b - offset],
                "leg_m": leg_m,
                "cumulative_m": cumulative,
            }
        )
    legs_geom = gpd.GeoSeries(geoms_m, crs=crs).to_crs(WGS84) if geoms_m else None
    legs = gpd.GeoDataFrame(
        pd.DataFrame(rows, columns=list(LEG_COLUMNS)),
        geometry=legs_geom.values if legs_geom is not None else [],
        crs=WGS84,
    )
    for col in ("order", "from_stop", "to_stop"):
        legs[col] = legs[col].astype("int64")
    for col in ("leg_m", "cumulative_m"):
        legs[col] = legs[col].astype("float64")
    whole: list[tuple[float, float]] = []
    for geom in geoms_m:
        c = list(geom.coords)
        whole += c[1:] if whole else c
    line_geom = (
        gpd.GeoSeries([LineString(whole)], crs=crs).to_crs(WGS84).values
        if len(whole) >= 2
        else gpd.GeoSeries([None], crs=WGS84).values
    )
    line = gpd.GeoDataFrame(
        {"n_stops": [n], "total_m": [cumulative]}, geometry=line_geom, crs=WGS84
    )
    visit_order = pd.Series(pd.NA, index=stops_gdf.index, dtype="Int64", name="visit_order")
    if order:
        values = np.zeros(n, dtype=np.int64)
        values[order] = np.arange(1, n + 1)
        visit_order[:] = values
    log.info("inspection route: %d stops, %.0f m", n, cumulative)
    return RouteResult(order, visit_order, legs, cumulative, line, crs)


def nearest_neighbour_tour_length(
    stops_gdf: gpd.GeoDataFrame,
    start: tuple[float, float] | None = None,
    network_gdf: gpd.GeoDataFrame | None = None,
    *,
    node_intersections: bool = True,
) -> float:
    """Length (m) of the greedy nearest-neighbour open path, for comparison.

    From ``start`` when given, else from the first stop; same distances as
    :func:`plan_route` (straight or along ``network_gdf``).
    """
    n = len(stops_gdf)
    if n == 0:
        return 0.0
    crs, xy = _prepare(stops_gdf, start)
    has_start = start is not None
    labels = (["start"] if has_start else []) + [f"stop {i}" for i in range(n)]
    d, _ = _distance_matrix(xy, crs, network_gdf, labels, has_start, node_intersections)
    first = 0
    rest = list(range(1, len(d)))
    return _path_cost(d, _nearest_neighbour(d, first, rest))
