"""Inspection route: completeness, start, length vs nearest neighbour, priority order, networks."""

from __future__ import annotations

import itertools

import geopandas as gpd
import numpy as np
import pytest
from pyproj import Transformer
from shapely.geometry import LineString, MultiLineString, Point, box

from heritage.kernel.errors import DataError
from heritage.survey.route import LEG_COLUMNS, nearest_neighbour_tour_length, plan_route

AREZZO = (11.882, 43.465)
UTM32 = "EPSG:32632"
_TO_LL = Transformer.from_crs(UTM32, "EPSG:4326", always_xy=True)
_TO_UTM = Transformer.from_crs("EPSG:4326", UTM32, always_xy=True)
X0, Y0 = _TO_UTM.transform(*AREZZO)


def ll(dx: float, dy: float) -> tuple[float, float]:
    """(lon, lat) ``dx`` m east and ``dy`` m north of the Arezzo origin."""
    return _TO_LL.transform(X0 + dx, Y0 + dy)


def stops(offsets, **cols) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        cols, geometry=[Point(ll(dx, dy)) for dx, dy in offsets], crs="EPSG:4326"
    )


def random_offsets(seed: int, n: int, size: float = 1500.0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-size / 2, size / 2, size=(n, 2))


def utm_length(gdf: gpd.GeoDataFrame) -> float:
    return float(gdf.to_crs(UTM32).length.sum())


# ---------------------------------------------------------------- straight-line routes


@pytest.mark.parametrize("seed", range(6))
def test_route_visits_all_once_from_start_and_beats_nearest_neighbour(seed):
    n = 15 + 3 * seed
    gdf = stops(random_offsets(seed, n))
    start = ll(-800, -800)
    r = plan_route(gdf, start=start)
    assert sorted(r.order) == list(range(n))
    assert r.legs["from_stop"].iloc[0] == -1 and r.legs["from_id"].iloc[0] == "start"
    assert r.legs["to_stop"].tolist() == r.order
    assert r.legs["from_stop"].tolist()[1:] == r.order[:-1]
    assert len(r.legs) == n
    first = r.legs.geometry.iloc[0].coords[0]
    assert first == pytest.approx(start, abs=1e-9)
    nn = nearest_neighbour_tour_length(gdf, start=start)
    assert r.total_m <= nn + 1e-6
    # the reported lengths are real metres along the drawn legs
    assert r.total_m == pytest.approx(utm_length(r.legs), rel=1e-6)
    assert r.legs["cumulative_m"].iloc[-1] == pytest.approx(r.total_m)
    assert np.all(np.diff(r.legs["cumulative_m"]) >= 0)
    assert r.crs.to_epsg() == 32632


@pytest.mark.parametrize("seed", range(3))
def test_route_without_start_is_no_longer_than_nearest_neighbour(seed):
    gdf = stops(random_offsets(100 + seed, 25))
    r = plan_route(gdf)
    assert sorted(r.order) == list(range(25))
    assert len(r.legs) == 24
    assert r.total_m <= nearest_neighbour_tour_length(gdf) + 1e-6


def test_route_on_a_line_is_optimal():
    # stops on a straight street, shuffled: the best path from the west end is 0..900 m
    xs = [300, 0, 800, 100, 500, 900, 200, 700, 400, 600]
    gdf = stops([(x, 0) for x in xs])
    r = plan_route(gdf, start=ll(-100, 0))
    assert [xs[i] for i in r.order] == sorted(xs)
    assert r.total_m == pytest.approx(1000.0, abs=0.01)
    r2 = plan_route(gdf)
    assert r2.total_m == pytest.approx(900.0, abs=0.01)


def test_visit_order_and_layers_schema():
    gdf = stops([(0, 0), (100, 0), (50, 0)], building_id=[7, 8, 9])
    gdf.index = [10, 11, 12]
    r = plan_route(gdf, start=ll(-10, 0))
    assert r.order == [0, 2, 1]
    assert r.visit_order.to_dict() == {10: 1, 11: 3, 12: 2}
    assert tuple(c for c in r.legs.columns if c != "geometry") == LEG_COLUMNS
    assert r.legs["to_id"].tolist() == ["7", "9", "8"]
    assert r.legs["order"].tolist() == [1, 2, 3]
    assert r.legs.crs.to_epsg() == 4326 and r.line.crs.to_epsg() == 4326
    assert (r.legs.geom_type == "LineString").all()
    assert r.line["total_m"].iloc[0] == pytest.approx(r.total_m)
    assert r.line.geometry.iloc[0].coords[-1] == pytest.approx(ll(100, 0))


def test_polygon_stops_and_other_crs():
    polys = gpd.GeoDataFrame(
        {"building_id": [1, 2]},
        geometry=[box(X0, Y0, X0 + 20, Y0 + 20), box(X0 + 200, Y0, X0 + 220, Y0 + 20)],
        crs=UTM32,
    ).to_crs(3857)
    r = plan_route(polys, start=ll(-50, 10))
    assert r.order == [0, 1]
    # representative points are inside the polygons: ~200 m apart, start ~50-70 m away
    assert 240 < r.total_m < 300


def test_tiny_inputs():
    empty = stops([])
    r = plan_route(empty, start=AREZZO)
    assert r.order == [] and r.total_m == 0.0 and len(r.legs) == 0
    one = stops([(0, 0)])
    assert plan_route(one).order == [0] and plan_route(one).total_m == 0.0
    r1 = plan_route(one, start=ll(30, 40))
    assert r1.total_m == pytest.approx(50.0, abs=1e-3)
    two_same = stops([(0, 0), (0, 0)])
    assert sorted(plan_route(two_same).order) == [0, 1]


def test_by_priority_visits_categories_in_order():
    offs = random_offsets(7, 24)
    cats = np.array(list("ABCDEF") * 4)
    np.random.default_rng(1).shuffle(cats)
    gdf = stops(offs, priority_category=cats)
    start = ll(0, 0)
    r = plan_route(gdf, start=start, by_priority=True)
    visited = [cats[i] for i in r.order]
    assert visited == sorted(visited)
    assert sorted(r.order) == list(range(24))
    # the free order is shorter (or equal): priority costs distance
    assert plan_route(gdf, start=start).total_m <= r.total_m + 1e-6
    # within each category the order is short: no worse than greedy within the group
    assert r.legs["leg_m"].sum() == pytest.approx(r.total_m)


def test_by_priority_from_scores_and_missing_columns():
    gdf = stops([(0, 0), (10, 0), (20, 0)], priority_score=[10.0, 90.0, 50.0])
    r = plan_route(gdf, start=ll(-5, 0), by_priority=True)
    assert r.order == [1, 2, 0]  # A (90), C (50), F (10)
    with pytest.raises(DataError, match="by_priority"):
        plan_route(stops([(0, 0)]), by_priority=True)
    bad = stops([(0, 0), (1, 1)], priority_category=["A", "Q"])
    with pytest.raises(DataError, match="unknown priority category"):
        plan_route(bad, by_priority=True)


def test_errors_on_bad_input():
    gdf = stops([(0, 0), (5, 5)])
    with pytest.raises(DataError, match="no CRS"):
        plan_route(gdf.set_crs(None, allow_override=True))
    gdf.loc[1, "geometry"] = None
    with pytest.raises(DataError, match="without geometry"):
        plan_route(gdf.set_geometry("geometry", crs=4326))
    with pytest.raises(DataError, match="lon, lat"):
        plan_route(stops([(0, 0)]), start=(X0, Y0))


# ---------------------------------------------------------------- network routes


def grid_network(n: int = 5, step: float = 100.0, crs: str = UTM32) -> gpd.GeoDataFrame:
    """Streets every ``step`` m, drawn as full-length lines (crossings not shared vertices)."""
    span = (n - 1) * step
    lines = [LineString([(X0, Y0 + k * step), (X0 + span, Y0 + k * step)]) for k in range(n)]
    lines += [LineString([(X0 + k * step, Y0), (X0 + k * step, Y0 + span)]) for k in range(n)]
    return gpd.GeoDataFrame({"name": [f"s{i}" for i in range(len(lines))]}, geometry=lines, crs=crs)


def test_network_legs_are_manhattan_distances():
    pts = [(0, 0), (300, 100), (100, 400), (400, 400), (200, 200), (0, 300)]
    gdf = stops(pts)
    net = grid_network().to_crs(3857)
    r = plan_route(gdf, start=ll(0, 0), network_gdf=net)
    seq = [(0, 0)] + [pts[i] for i in r.order]
    manhattan = [abs(a[0] - b[0]) + abs(a[1] - b[1]) for a, b in itertools.pairwise(seq)]
    assert r.legs["leg_m"].tolist() == pytest.approx(manhattan, abs=0.01)
    # the legs follow the streets: drawn length = network length, longer than straight
    assert utm_length(r.legs) == pytest.approx(r.total_m, rel=1e-5)
    straight = plan_route(gdf, start=ll(0, 0))
    assert r.total_m > straight.total_m
    assert r.total_m <= nearest_neighbour_tour_length(gdf, start=ll(0, 0), network_gdf=net)


def test_network_snaps_stops_onto_the_middle_of_streets():
    # a stop 10 m north of the middle of a 400 m street: access 10 m + 150 m along it
    gdf = stops([(150, 10)])
    net = gpd.GeoDataFrame(geometry=[LineString([(X0, Y0), (X0 + 400, Y0)])], crs=UTM32)
    r = plan_route(gdf, start=ll(0, 0), network_gdf=net)
    assert r.total_m == pytest.approx(160.0, abs=0.01)
    coords = [_TO_UTM.transform(*c) for c in r.legs.geometry.iloc[0].coords]
    assert coords[-2] == pytest.approx((X0 + 150, Y0), abs=0.01)


def test_network_needs_noding_for_drawn_grids():
    # drawn as full-length lines, the streets only share the 4 corner vertices of the frame
    net = grid_network()
    corners = stops([(0, 0), (400, 400)])
    r = plan_route(corners, network_gdf=net, node_intersections=False)
    assert r.total_m == pytest.approx(800.0, abs=0.01)
    inner = stops([(0, 0), (100, 100)])
    with pytest.raises(DataError, match="does not connect"):
        plan_route(inner, network_gdf=net, node_intersections=False)
    assert plan_route(inner, network_gdf=net).total_m == pytest.approx(200.0, abs=0.01)


def test_disconnected_network_names_unreachable_stops():
    west = grid_network(3)
    east = grid_network(3).translate(xoff=1000.0)
    net = gpd.GeoDataFrame(geometry=list(west.geometry) + list(east.geometry), crs=UTM32)
    gdf = stops([(0, 0), (200, 200), (1100, 100)], building_id=[11, 12, 13])
    with pytest.raises(DataError, match=r"1 stop\(s\) to the start: stop 2 \(id 13\)"):
        plan_route(gdf, start=ll(0, 0), network_gdf=net)
    with pytest.raises(DataError, match=r"stop 2 \(id 13\)"):
        plan_route(gdf, network_gdf=net)
    # the same stops on the west part alone are fine
    ok = plan_route(gdf.iloc[:2], start=ll(0, 0), network_gdf=net)
    assert ok.total_m == pytest.approx(400.0, abs=0.01)


def test_network_errors():
    gdf = stops([(0, 0)])
    no_crs = gpd.GeoDataFrame(geometry=[LineString([(0, 0), (1, 1)])])
    with pytest.raises(DataError, match="network layer has no CRS"):
        plan_route(gdf, start=ll(5, 5), network_gdf=no_crs)
    polys = gpd.GeoDataFrame(geometry=[box(X0, Y0, X0 + 5, Y0 + 5)], crs=UTM32)
    with pytest.raises(DataError, match="no LineStrings"):
        plan_route(gdf, start=ll(5, 5), network_gdf=polys)
    multi = gpd.GeoDataFrame(
        geometry=[
            MultiLineString([[(X0, Y0), (X0 + 50, Y0)], [(X0 + 50, Y0), (X0 + 50, Y0 + 50)]])
        ],
        crs=UTM32,
    )
    r = plan_route(stops([(50, 50)]), start=ll(0, 0), network_gdf=multi)
    assert r.total_m == pytest.approx(100.0, abs=0.01)


@pytest.mark.parametrize("seed", range(4))
def test_small_routes_are_near_optimal(seed):
    # brute force over all 7! orders from the start: the heuristic is within 3 %
    off = random_offsets(seed, 7)
    r = plan_route(stops(off), start=ll(0, 0))
    p = np.vstack([[0.0, 0.0], off])
    d = np.hypot(*(p[:, None] - p[None]).transpose(2, 0, 1))
    best = min(
        sum(d[a, b] for a, b in itertools.pairwise((0, *perm)))
        for perm in itertools.permutations(range(1, 8))
    )
    assert r.total_m <= best * 1.03 + 1e-6
