"""Metric CRS choice, vector reading/cleaning, footprint assignment, clustering, buildings layer."""

from __future__ import annotations

import logging

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from pyproj import Transformer
from shapely.geometry import Point, Polygon, box

from heritage.io.geo import metric_crs_for, read_vector, repair_geometries, to_metric
from heritage.kernel.errors import DataError, InputNotFoundError
from heritage.survey.buildings import (
    BUILDING_COLUMNS,
    apply_priority,
    assign_to_footprints,
    cluster_points,
    flagged_buildings,
    group_observations,
)
from heritage.survey.priority import DEFAULT_CONFIG, priority_score

AREZZO = (11.882, 43.465)
UTM32 = "EPSG:32632"
_TO_LL = Transformer.from_crs(UTM32, "EPSG:4326", always_xy=True)
_TO_UTM = Transformer.from_crs("EPSG:4326", UTM32, always_xy=True)
X0, Y0 = _TO_UTM.transform(*AREZZO)


def ll(dx: float, dy: float) -> Point:
    """WGS84 point ``dx`` m east and ``dy`` m north of the Arezzo origin."""
    return Point(_TO_LL.transform(X0 + dx, Y0 + dy))


def utm_box(x0: float, y0: float, x1: float, y1: float) -> Polygon:
    """Rectangle in UTM 32N metres relative to the origin."""
    return box(X0 + x0, Y0 + y0, X0 + x1, Y0 + y1)


def points(offsets, **cols) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(cols, geometry=[ll(*o) for o in offsets], crs="EPSG:4326")


@pytest.fixture
def footprints_utm() -> gpd.GeoDataFrame:
    # two 20x10 m buildings 100 m apart and a third far away
    return gpd.GeoDataFrame(
        {"osm_id": [101, 102, 103], "name": ["Pieve", "Casa", "Torre"]},
        geometry=[utm_box(0, 0, 20, 10), utm_box(100, 0, 120, 10), utm_box(1000, 0, 1010, 10)],
        crs=UTM32,
    )


# ---------------------------------------------------------------- metric CRS


def test_metric_crs_arezzo_is_utm_32n():
    assert metric_crs_for([AREZZO]).to_epsg() == 32632
    gdf = points([(0, 0), (500, 300)])
    assert metric_crs_for(gdf).to_epsg() == 32632
    assert metric_crs_for(gdf.to_crs(3857)).to_epsg() == 32632


def test_metric_crs_southern_hemisphere_and_antimeridian():
    assert metric_crs_for([(-58.38, -34.60)]).to_epsg() == 32721  # Buenos Aires
    assert metric_crs_for([(151.21, -33.87)]).to_epsg() == 32756  # Sydney
    assert metric_crs_for([(179.95, -17.0), (-179.95, -17.0)]).to_epsg() == 32760


def _is_aeqd(crs) -> bool:
    return "Azimuthal Equidistant" in crs.coordinate_operation.method_name


def test_metric_crs_polar_and_zone_crossing_use_local_aeqd():
    polar = metric_crs_for([(15.6, 78.2), (16.0, 84.5)])  # Svalbard to beyond 84°N
    assert polar.to_epsg() is None and polar.is_projected
    assert _is_aeqd(polar)
    assert _is_aeqd(metric_crs_for([(0.0, -89.0)]))
    wide = metric_crs_for([(5.0, 45.0), (14.0, 45.0)])  # zones 31-33
    assert _is_aeqd(wide)
    params = {p.name: p.value for p in wide.coordinate_operation.params}
    assert params["Longitude of natural origin"] == pytest.approx(9.5)
    # slightly across a zone border is still UTM
    assert metric_crs_for([(11.9, 43.4), (12.2, 43.4)]).to_epsg() in (32632, 32633)


def test_metric_crs_errors():
    with pytest.raises(DataError):
        metric_crs_for([])
    with pytest.raises(DataError):
        metric_crs_for([(500000.0, 4800000.0)])
    with pytest.raises(DataError):
        metric_crs_for(gpd.GeoDataFrame(geometry=[Point(0, 0)]))


def test_to_metric_preserves_distances():
    gdf = points([(0, 0), (300, 400)])
    m = to_metric(gdf)
    assert m.crs.to_epsg() == 32632
    assert m.geometry.iloc[0].distance(m.geometry.iloc[1]) == pytest.approx(500.0, abs=1e-3)


# ---------------------------------------------------------------- reading vectors


def test_repair_geometries_reports_bowtie_and_empty():
    bowtie = Polygon([(0, 0), (1, 1), (1, 0), (0, 1)])
    gdf = gpd.GeoDataFrame({"a": [1, 2, 3]}, geometry=[bowtie, Polygon(), None], crs=4326)
    assert not gdf.geometry.iloc[0].is_valid
    out, problems = repair_geometries(gdf)
    assert list(out.index) == [0]
    assert out.geometry.iloc[0].is_valid
    assert out.geometry.iloc[0].geom_type == "MultiPolygon"
    assert out.geometry.iloc[0].area == pytest.approx(0.5)
    assert len(problems) == 3
    assert any("feature 0" in p and "repaired" in p for p in problems)
    assert sum("dropped" in p for p in problems) == 2


@pytest.mark.parametrize("suffix", [".gpkg", ".geojson", ".shp"])
def test_read_vector_reprojects_and_cleans(tmp_path, footprints_utm, suffix):
    bowtie = Polygon([(X0, Y0), (X0 + 10, Y0 + 10), (X0 + 10, Y0), (X0, Y0 + 10)])
    extra = gpd.GeoDataFrame({"osm_id": [104], "name": ["X"]}, geometry=[bowtie], crs=UTM32)
    gdf = pd.concat([footprints_utm, extra], ignore_index=True)
    path = tmp_path / f"footprints{suffix}"
    gdf.to_file(path, engine="pyogrio")
    out = read_vector(path)
    assert out.crs.to_epsg() == 4326
    assert len(out) == 4
    assert out.geometry.is_valid.all()
    assert any("invalid geometry" in p for p in out.attrs["problems"])
    metric = read_vector(path, to_crs="metric")
    assert metric.crs.to_epsg() == 32632
    assert metric.geometry.iloc[0].area == pytest.approx(200.0, rel=1e-6)


def test_read_vector_errors(tmp_path):
    with pytest.raises(InputNotFoundError):
        read_vector(tmp_path / "missing.gpkg")
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(DataError, match="unsupported"):
        read_vector(tmp_path / "a.txt")
    no_crs = tmp_path / "nocrs.geojson"
    no_crs.write_text(
        '{"type":"FeatureCollection","features":[{"type":"Feature","properties":{},'
        '"geometry":{"type":"Point","coordinates":[500000,4800000]}}]}'
    )
    # GeoJSON without "crs" is WGS84 by definition; a shapefile without .prj has none
    shp = tmp_path / "nocrs.shp"
    with pytest.warns(UserWarning, match="crs"):
        gpd.GeoDataFrame({"a": [1]}, geometry=[Point(1, 2)]).to_file(shp, engine="pyogrio")
    with pytest.raises(DataError, match="no coordinate reference system"):
        read_vector(shp)
    two = tmp_path / "two.gpkg"
    g = gpd.GeoDataFrame({"a": [1]}, geometry=[Point(11, 43)], crs=4326)
    g.to_file(two, layer="one", engine="pyogrio")
    g.to_file(two, layer="two", engine="pyogrio")
    with pytest.raises(DataError, match="several layers"):
        read_vector(two)
    assert len(read_vector(two, layer="two")) == 1


# ---------------------------------------------------------------- footprints


def test_assign_inside_near_and_too_far(footprints_utm):
    pts = points([(10, 5), (110, 15), (55, 5), (10, -40), (1005, -20)])
    got = assign_to_footprints(pts, footprints_utm, max_distance_m=25.0)
    # inside -> 0; 5 m north of #1 -> 1; 35/45 m -> -1; 40 m south -> -1; 15 m -> 2
    assert got.tolist() == [0, 1, -1, -1, 2]
    assert got.dtype == np.int64
    assert assign_to_footprints(pts, footprints_utm, max_distance_m=50.0).tolist()[2:4] == [0, 0]


@pytest.mark.parametrize("crs", ["EPSG:3857", "EPSG:4326", "EPSG:32632", "EPSG:3003"])
def test_assign_reprojects_footprints(footprints_utm, crs):
    pts = points([(10, 5), (110, 15), (60, 5)])
    fp = footprints_utm.to_crs(crs)
    assert assign_to_footprints(pts, fp).tolist() == [0, 1, -1]


def test_assign_tie_break_and_missing_geometry(footprints_utm):
    overlapping = pd.concat([footprints_utm, footprints_utm.iloc[[0]]], ignore_index=True)
    pts = points([(10, 5)])
    pts.loc[1, "geometry"] = None
    pts = pts.set_geometry("geometry", crs=4326)
    got = assign_to_footprints(pts, overlapping.iloc[::-1].reset_index(drop=True))
    # footprint 0 is duplicated at positions 0 and 3 after reversing: the lowest wins
    assert got.tolist() == [0, -1]


def test_assign_repairs_invalid_footprint(caplog, footprints_utm):
    bowtie = Polygon([(X0 + 200, Y0), (X0 + 220, Y0 + 20), (X0 + 220, Y0), (X0 + 200, Y0 + 20)])
    fp = pd.concat(
        [footprints_utm, gpd.GeoDataFrame({"osm_id": [9]}, geometry=[bowtie], crs=UTM32)],
        ignore_index=True,
    )
    pts = points([(218, 10)])  # inside the right triangle of the bow tie
    with caplog.at_level(logging.WARNING):
        assert assign_to_footprints(pts, fp, max_distance_m=0.5).tolist() == [3]
    assert any(
        "footprint 3" in r.getMessage() and "repaired" in r.getMessage() for r in caplog.records
    )


def test_assign_needs_crs(footprints_utm):
    pts = points([(10, 5)])
    with pytest.raises(DataError):
        assign_to_footprints(pts, footprints_utm.set_crs(None, allow_override=True))


# ---------------------------------------------------------------- clustering


def test_two_groups_200m_apart_make_two_clusters():
    offs = [(0, 0), (5, 3), (10, -4), (200, 0), (204, 6)]
    labels = cluster_points(points(offs))
    assert labels.tolist() == [0, 0, 0, 1, 1]


def test_eps_is_respected():
    pts = points([(0, 0), (29, 0), (58, 0), (100, 0)])
    assert cluster_points(pts, eps_m=30).tolist() == [0, 0, 0, 1]  # chained at 29 m
    assert cluster_points(pts, eps_m=28).tolist() == [0, 1, 2, 3]
    assert cluster_points(pts, eps_m=50).tolist() == [0, 0, 0, 0]


def test_noise_becomes_singletons():
    pts = points([(0, 0), (5, 0), (8, 0), (500, 0), (900, 0)])
    labels = cluster_points(pts, eps_m=30, min_samples=3)
    assert labels.tolist() == [0, 0, 0, 1, 2]
    assert cluster_points(points([])).shape == (0,)


# ---------------------------------------------------------------- buildings layer


def observations() -> gpd.GeoDataFrame:
    """Six photos: 3 on building 0 (2 flagged), 1 flagged on building 1, 1 far, 1 unlocated."""
    offs = [(5, 5), (15, 5), (10, 12), (110, 5), (500, 500), (0, 0)]
    gdf = points(
        offs,
        obs_id=[f"o{i}" for i in range(6)],
        file_name=[f"IMG_{i}.jpg" for i in range(6)],
        flagged=[True, True, False, True, True, True],
        p_final=[0.95, 0.80, 0.20, 0.70, 0.99, 0.90],
        defect_area_fraction=[0.30, 0.10, 0.0, 0.05, 0.5, 0.2],
    )
    gdf.loc[5, "geometry"] = None
    return gdf.set_geometry("geometry", crs=4326)


def test_flagged_buildings_with_footprints(footprints_utm):
    obs = observations()
    res = flagged_buildings(obs, footprints_utm.to_crs(3857), priority_cfg=DEFAULT_CONFIG)
    b = res.buildings
    assert b.crs.to_epsg() == 4326
    assert list(b.columns[: len(BUILDING_COLUMNS)]) == list(BUILDING_COLUMNS)
    assert {"fp_osm_id", "fp_name"} <= set(b.columns)
    assert b["building_id"].tolist() == [1, 2]
    assert b["fp_osm_id"].tolist() == [101, 102]
    assert b["n_photos"].tolist() == [3, 1]
    assert b["n_flagged"].tolist() == [2, 1]
    s0 = priority_score(0.95, 0.30, 2)
    s1 = priority_score(0.80, 0.10, 2)
    assert b["priority_score"].iloc[0] == pytest.approx(max(s0, s1))
    assert b["mean_priority_score"].iloc[0] == pytest.approx((s0 + s1) / 2)
    assert b["priority_score"].iloc[1] == pytest.approx(priority_score(0.70, 0.05, 1))
    assert b["obs_ids"].tolist() == ["o0;o1;o2", "o3"]
    assert b["file_names"].iloc[0] == "IMG_0.jpg;IMG_1.jpg;IMG_2.jpg"
    assert b["flagged_file_names"].iloc[0] == "IMG_0.jpg;IMG_1.jpg"
    assert b.geometry.iloc[0].contains(obs.geometry.iloc[0])
    assert res.building_of_observation.iloc[:4].tolist() == [1, 1, 1, 2]
    assert res.building_of_observation.isna().tolist() == [False] * 4 + [True, True]
    scored = res.observations
    assert scored["priority_category"].iloc[2] == "none"
    assert scored["priority_score"].iloc[2] == 0.0
    assert scored["n_flagged_on_building"].tolist() == [2, 2, 2, 1, 1, 1]
    cats = scored["priority_category"].iloc[[0, 1]].tolist()
    assert b["priority_category"].iloc[0] == min(cats)


def test_flagged_buildings_without_footprints_clusters():
    obs = observations()
    res = flagged_buildings(obs, priority_cfg=DEFAULT_CONFIG, eps_m=30)
    b = res.buildings
    assert b.crs.to_epsg() == 4326
    assert (b["source"] == "cluster").all() and (b["footprint_index"] == -1).all()
    # flagged photos: cluster {o0, o1}, {o3}, {o4}; o2 joins the first as unflagged
    assert b["building_id"].tolist() == [1, 2, 3]
    assert b["n_photos"].tolist() == [3, 1, 1]
    assert b["n_flagged"].tolist() == [2, 1, 1]
    assert b["obs_ids"].tolist() == ["o0;o1;o2", "o3", "o4"]
    poly = to_metric(b).geometry
    # buffered hull: a single photo gives a 10 m disc
    assert poly.iloc[1].area == pytest.approx(np.pi * 100, rel=0.02)
    hull_members = to_metric(obs.iloc[[0, 1, 2]]).geometry
    assert all(poly.iloc[0].buffer(1e-6).contains(p) for p in hull_members)
    # 10 m buffer drawn with 32 segments per circle: chords are >= 10*cos(pi/32) = 9.95 m away
    assert all(poly.iloc[0].exterior.distance(p) >= 9.9 for p in hull_members)


def test_group_then_apply_priority_counts_flagged_on_building(footprints_utm):
    obs = observations()
    grouping = group_observations(obs, footprints_utm)
    scored = apply_priority(obs, grouping)
    assert scored["priority_score"].iloc[0] == pytest.approx(priority_score(0.95, 0.30, 2))
    assert scored["priority_score"].iloc[5] == pytest.approx(priority_score(0.90, 0.2, 1))
    assert "priority_score" not in obs.columns  # input untouched
    with pytest.raises(DataError, match="p_final"):
        apply_priority(obs.drop(columns="p_final"), grouping)


def test_flagged_buildings_uses_existing_priority_and_handles_no_flags(footprints_utm):
    obs = observations()
    obs["priority_score"] = [50.0, 90.0, 0.0, 10.0, 10.0, 10.0]
    obs["priority_category"] = ["C", "A", "none", "F", "F", "F"]
    b = flagged_buildings(obs, footprints_utm).buildings
    assert b["priority_score"].tolist() == [90.0, 10.0]
    assert b["priority_category"].tolist() == ["A", "F"]
    assert b["mean_priority_score"].tolist() == [70.0, 10.0]
    obs["flagged"] = False
    for fp in (footprints_utm, None):
        res = flagged_buildings(obs, fp)
        assert len(res.buildings) == 0
        assert list(res.buildings.columns[: len(BUILDING_COLUMNS)]) == list(BUILDING_COLUMNS)
        assert res.building_of_observation.isna().all()


def test_flagged_buildings_gpkg_roundtrip(tmp_path, footprints_utm):
    res = flagged_buildings(observations(), footprints_utm, priority_cfg=DEFAULT_CONFIG)
    path = tmp_path / "out.gpkg"
    res.buildings.to_file(path, layer="flagged_buildings", engine="pyogrio", VERSION="1.2")
    back = read_vector(path)
    assert back["obs_ids"].tolist() == ["o0;o1;o2", "o3"]
    assert back["n_flagged"].tolist() == [2, 1]


def test_observations_in_another_crs_with_string_index(footprints_utm):
    obs = observations()
    ref = flagged_buildings(obs, priority_cfg=DEFAULT_CONFIG)
    other = obs.to_crs(3857)
    other.index = [f"row{i}" for i in range(len(other))]
    for fp in (None, footprints_utm):
        res = flagged_buildings(other, fp, priority_cfg=DEFAULT_CONFIG)
        assert res.buildings.crs.to_epsg() == 4326
        assert list(res.building_of_observation.index) == list(other.index)
        assert res.observations["building_id"].iloc[:4].tolist() == [1, 1, 1, 2]
    res = flagged_buildings(other, priority_cfg=DEFAULT_CONFIG)
    assert res.buildings["obs_ids"].tolist() == ref.buildings["obs_ids"].tolist()
    assert res.buildings.geom_equals_exact(ref.buildings.geometry, tolerance=1e-7).all()
