"""Sites: buildings far apart get separate routes, numbered one after the other."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
from shapely.geometry import Point

from heritage.survey.route import plan_route
from heritage.survey.sites import SITE_GAP_M, haversine_m, plan_by_site, site_labels, summary_line

#: two towns 47 km apart, three buildings each, 300-600 m between neighbours
AREZZO = [(11.8800, 43.4660), (11.8840, 43.4670), (11.8880, 43.4690)]
SIENA = [(11.3300, 43.3180), (11.3330, 43.3200), (11.3360, 43.3190)]


def _buildings(points, scores) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        {"building_id": np.arange(1, len(points) + 1), "priority_score": scores},
        geometry=[Point(p) for p in points],
        crs="EPSG:4326",
    )


def _one(part, start):
    res = plan_route(part, start=start)
    return res.visit_order, res.legs, res.total_m


def test_single_linkage_chains_close_buildings_and_splits_far_ones() -> None:
    pts = np.asarray([*AREZZO, *SIENA])
    labels = site_labels(pts)
    assert len(set(labels[:3])) == 1 and len(set(labels[3:])) == 1
    assert labels[0] != labels[3]
    assert haversine_m(pts[:1], pts[3:4])[0, 0] == pytest.approx(47_400, rel=0.02)
    # a chain of 1.5 km steps stays one site at the 2 km gap, two at a 1 km gap
    chain = np.asarray([(11.0 + 0.0186 * k, 43.0) for k in range(4)])
    assert len(set(site_labels(chain))) == 1
    assert len(set(site_labels(chain, gap_m=1000))) == 4
    with pytest.raises(ValueError):
        site_labels(chain, gap_m=0)


def test_each_site_gets_its_own_route_and_visits_continue() -> None:
    b = _buildings([*AREZZO, *SIENA], [40.0, 50.0, 45.0, 90.0, 20.0, 30.0])
    visit, legs, total, sites, problems = plan_by_site(b, None, _one)
    assert problems == []
    assert [s.site for s in sites] == [1, 2]
    assert sites[0].lat == pytest.approx(43.32, abs=0.01)  # Siena holds the top score
    assert sorted(visit) == [1, 2, 3, 4, 5, 6]
    assert set(visit.iloc[3:]) == {1, 2, 3} and set(visit.iloc[:3]) == {4, 5, 6}
    assert len(legs) == 4  # 2 legs per site, none between the towns
    assert legs["leg_m"].max() < SITE_GAP_M
    assert list(legs["order"]) == [1, 2, 3, 4]
    assert list(legs["site"]) == [1, 1, 2, 2]
    assert [int(visit.iloc[s]) for s in legs["to_stop"]] == list(legs["to_visit"])
    assert total == pytest.approx(legs["leg_m"].sum())
    line = summary_line([s.as_dict() for s in sites])
    assert line.startswith("2 sites more than 2 km apart, each with its own route: site 1 near")
    assert summary_line([sites[0].as_dict()]) == ""


def test_the_start_picks_its_site_first_or_is_reported_when_far() -> None:
    b = _buildings([*AREZZO, *SIENA], [40.0, 50.0, 45.0, 90.0, 20.0, 30.0])
    _, legs, _, sites, problems = plan_by_site(b, (11.8790, 43.4655), _one)
    assert problems == [] and sites[0].lat == pytest.approx(43.467, abs=0.01)
    assert legs["from_id"].iloc[0] == "start" and legs["from_stop"].iloc[0] == -1
    assert len(legs) == 3 + 2
    _, legs, _, _, problems = plan_by_site(b, (12.5, 41.9), _one)  # Rome
    assert len(problems) == 1 and "more than the 2 km between sites" in problems[0]
    assert "start" not in set(legs["from_id"]) and legs["leg_m"].max() < SITE_GAP_M
