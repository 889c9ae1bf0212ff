"""heritage classify end to end on the real exif-gps corpus with a tiny random model.

One run over the whole corpus plus a folder of bad files (module fixture) is checked
layer by layer; smaller runs cover footprints (reprojected from EPSG:3857),
clustering, --start, --embed-overlays, re-runs, JSON progress and bad inputs.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sqlite3
from collections import Counter
from pathlib import Path

import numpy as np
import pyogrio
import pytest
from click.testing import CliRunner
from factories import tiny_model_dir
from PIL import Image

from heritage.kernel.errors import InputNotFoundError, ModelError
from heritage.survey.pipeline import (
    OBSERVATION_FIELDS,
    ClassifyConfig,
    parse_start,
    run_survey,
)
from heritage.survey.priority import PriorityConfig, priority_category, priority_score
from heritage.survey.sites import SITE_GAP_M

SIZE = 64
LABELS = ("crack", "no_crack", "salt_damage")
N_CORPUS = 36  # every file of exif-gps is a readable photo
N_NO_LOCATION = 19  # 3 in no_gps/ + 16 in orientation/
AREZZO = ("DSCN0010.jpg", "DSCN0012.jpg", "DSCN0025.jpg", "DSCN0027.jpg")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return tiny_model_dir(tmp_path_factory.mktemp("model") / "tiny", model_id="tiny-survey")


@pytest.fixture(scope="module")
def flag_all_model(tmp_path_factory) -> Path:
    """Threshold 0: every photo is flagged, so buildings and routes are deterministic."""
    return tiny_model_dir(
        tmp_path_factory.mktemp("model0") / "tiny0", model_id="tiny-survey", threshold=0.0
    )


@pytest.fixture(scope="module")
def corpus(exif_gps: Path, tmp_path_factory) -> Path:
    """A copy of exif-gps, so that it sorts before ``bad_dir`` (the duplicate comes second)."""
    d = tmp_path_factory.mktemp("photos")
    shutil.copytree(exif_gps, d / "a_corpus")
    return d / "a_corpus"


@pytest.fixture(scope="module")
def bad_dir(corpus: Path) -> Path:
    d = corpus.parent / "z_bad"
    d.mkdir()
    good = (corpus / "gps" / "DSCN0010.jpg").read_bytes()
    (d / "broken.jpg").write_bytes(good[:3000])  # truncated JPEG
    (d / "notes.jpg").write_text("not an image")
    (d / "copy_of_DSCN0010.jpg").write_bytes(good)  # same sha256 as a corpus photo
    Image.new("RGB", (20, 20)).save(d / "anim.gif")
    return d


@pytest.fixture(scope="module")
def survey(corpus: Path, bad_dir: Path, model_dir: Path, tmp_path_factory):
    out = tmp_path_factory.mktemp("survey") / "survey.gpkg"
    cfg = ClassifyConfig((corpus, bad_dir), out, model_dir=model_dir, device="cpu", batch_size=8)
    return out, run_survey(cfg), cfg


def read(out: Path, layer: str):
    return pyogrio.read_dataframe(out, layer=layer, fid_as_index=True)


def gps_subset(exif_gps: Path, dest: Path, names=None) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for f in sorted((exif_gps / "gps").iterdir()):
        if f.suffix.lower() == ".jpg" and (names is None or f.name in names):
            shutil.copy(f, dest / f.name)
    return dest


# ------------------------------------------------------------------ main run


def test_layers_schema_and_geopackage_version(survey) -> None:
    out, summary, _ = survey
    layers = dict(pyogrio.list_layers(out))
    assert layers["observations"] == "Point"
    assert layers["flagged_buildings"] == "MultiPolygon"
    assert layers["inspection_route"] == "LineString"
    assert layers["invalid_photos"] is None
    info = pyogrio.read_info(out, layer="observations")
    assert info["crs"] == "EPSG:4326"
    assert [f.name for f in OBSERVATION_FIELDS] == list(info["fields"])
    with sqlite3.connect(out) as con:
        assert con.execute("PRAGMA user_version").fetchone()[0] == 10200  # GeoPackage 1.2
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert summary.found == N_CORPUS + 4
    assert summary.classified == N_CORPUS == summary.observations_total
    assert len(read(out, "observations")) == N_CORPUS


def test_observation_values(survey, model_dir: Path) -> None:
    out, summary, _ = survey
    obs = read(out, "observations")
    assert set(obs["model_id"]) == {"tiny-survey"} and set(obs["model_version"]) == {"0.0.1"}
    assert set(obs["inference_mode"]) == {"scene"} and (obs["n_tiles"] >= 1).all()
    # no wall gate in the tiny model's card: every tile is a wall tile
    assert (obs["n_wall_tiles"] == obs["n_tiles"]).all()
    assert (obs["n_flagged_tiles"] <= obs["n_wall_tiles"]).all()
    assert ((obs["n_flagged_tiles"] >= 1) == obs["flagged"]).all()
    box = obs[["best_box_left", "best_box_top", "best_box_right", "best_box_bottom"]]
    assert (box["best_box_left"] < box["best_box_right"]).all()
    longest = obs[["width", "height"]].max(axis=1)
    assert (box["best_box_right"] <= longest).all() and (box["best_box_bottom"] <= longest).all()
    assert set(obs["cam_layer"]) == {"features.12"}
    assert set(obs["cam_method"]) <= {"gradcam", "eigencam"}
    for col in ("p_stage1", "p_stage2", "p_final", "stage1_score", "defect_area_fraction"):
        assert obs[col].between(0, 1).all(), col
    assert (obs["p_final"] == obs["p_stage2"]).all()  # the card's decision stage
    assert (obs["flagged"] == (obs["p_final"] >= 0.5)).all()
    assert set(obs["decision"]) <= {"conservation_needed", "not_flagged"}
    assert ((obs["decision"] == "conservation_needed") == obs["flagged"]).all()
    assert set(obs["stage1_label"]) <= set(LABELS)
    assert obs["classified_at"].str.match(r"\d{4}-\d\d-\d\dT").all()
    assert summary.flagged == int(obs["flagged"].sum())


def test_photos_without_position_are_kept_without_geometry(survey, corpus: Path) -> None:
    out, summary, _ = survey
    obs = read(out, "observations")
    nol = obs[obs["status"] == "no_location"]
    assert len(nol) == summary.no_location == N_NO_LOCATION
    assert nol.geometry.isna().all()
    assert nol["latitude"].isna().all()
    assert set(nol["message"].str.split(":").str[0]) == {"no_gps"}
    ok = obs[obs["status"] == "ok"]
    assert len(ok) == N_CORPUS - N_NO_LOCATION
    assert np.allclose(ok.geometry.x, ok["longitude"]) and np.allclose(
        ok.geometry.y, ok["latitude"]
    )
    d10 = ok[ok["file_name"] == "DSCN0010.jpg"].iloc[0]
    assert d10.geometry.x == pytest.approx(11.8851267, abs=1e-6)
    assert d10.geometry.y == pytest.approx(43.4674483, abs=1e-6)
    assert (out.parent / d10["path"]).resolve() == (corpus / "gps" / "DSCN0010.jpg").resolve()


def test_bad_files_listed_and_batch_goes_on(survey) -> None:
    out, summary, _ = survey
    bad = read(out, "invalid_photos")
    reasons = dict(zip(bad["file_name"], bad["reason"], strict=True))
    assert reasons == {
        "broken.jpg": "unreadable_image",
        "notes.jpg": "unreadable_image",
        "copy_of_DSCN0010.jpg": "duplicate",
        "anim.gif": "unsupported_format",
    }
    assert summary.skipped == {"unreadable_image": 2, "duplicate": 1, "unsupported_format": 1}


def test_overlays_heatmaps_thumbnails_written_with_relative_paths(survey) -> None:
    out, _, _ = survey
    obs = read(out, "observations")
    for col in ("overlay_path", "heatmap_path", "thumbnail_path"):
        for rel in obs[col]:
            assert not Path(rel).is_absolute() and ".." not in Path(rel).parts
            assert rel.startswith("survey_overlays/")
            assert (out.parent / rel).is_file()
    row = obs.iloc[0]
    assert (row["width"], row["height"]) == (640, 480)
    with Image.open(out.parent / row["overlay_path"]) as im:
        assert im.size == (640, 480) and im.format == "JPEG"  # the whole photo (scene mode)
    with Image.open(out.parent / row["heatmap_path"]) as im:
        assert im.size == (640, 480) and im.format == "PNG"  # the heat map stays lossless
    # a large photo: the pictures are at the working size, at the photo's aspect
    big = obs[obs["file_name"] == "iphone_hdr_NO.jpg"].iloc[0]
    with Image.open(out.parent / big["overlay_path"]) as im:
        assert max(im.size) == 1280 and abs(im.size[0] / im.size[1] - 3264 / 2448) < 0.01
    with Image.open(out.parent / big["heatmap_path"]) as heat:
        assert heat.size == im.size
    thumbs = dict(zip(obs["file_name"], obs["thumbnail_path"], strict=True))
    sizes = {}
    for name in ("landscape_6.jpg", "portrait_6.jpg", "iphone_hdr_NO.jpg", "Kodak_CX7530.jpg"):
        with Image.open(out.parent / thumbs[name]) as im:
            assert im.format == "JPEG"
            sizes[name] = im.size
    assert sizes["landscape_6.jpg"] == (480, 360)  # stored 450x600, EXIF-rotated
    assert sizes["portrait_6.jpg"] == (360, 480)
    assert max(sizes["iphone_hdr_NO.jpg"]) == 480
    assert sizes["Kodak_CX7530.jpg"] == (100, 78)  # never enlarged


def test_priority_columns_follow_priority_module(survey) -> None:
    out, _, _ = survey
    obs = read(out, "observations")
    cfg = PriorityConfig(confidence_floor=0.5)  # the model's threshold
    assert obs["priority_category"].notna().all() and obs["priority_score"].notna().all()
    flagged = obs[obs["flagged"]]
    assert len(flagged) > 0
    counts = Counter(flagged["building_id"].dropna().astype(int))
    for _, r in obs.iterrows():
        if not r["flagged"]:
            assert r["priority_category"] == "none" and r["priority_score"] == 0
            continue
        n = counts[int(r["building_id"])] if not np.isnan(r["building_id"]) else 1
        assert r["n_flagged_on_building"] == n
        expected = priority_score(r["p_final"], r["defect_area_fraction"], n, cfg)
        assert r["priority_score"] == pytest.approx(expected)
        assert r["priority_category"] == priority_category(expected, True, cfg)
    # a flagged photo with a position is always on a building; one without never is
    located = flagged.geometry.notna()
    assert flagged.loc[located, "building_id"].notna().all()
    assert flagged.loc[~located, "building_id"].isna().all()


def test_buildings_and_route_layers(survey) -> None:
    out, summary, _ = survey
    obs = read(out, "observations")
    b = read(out, "flagged_buildings")
    route = read(out, "inspection_route")
    assert len(b) == summary.buildings == obs.loc[obs["flagged"], "building_id"].nunique()
    assert set(b["source"]) == {"cluster"}
    assert sorted(b["visit_order"]) == list(range(1, len(b) + 1))
    # exif-gps spans four continents: one site per town, each with its own route that
    # starts at its top building (no leg to it), and no leg longer than the site gap
    sites = summary.sites
    assert len(sites) == b["site"].nunique() >= 2
    assert len(route) == len(b) - len(sites)
    assert route["leg_m"].max() <= SITE_GAP_M
    assert list(route["order"]) == list(range(1, len(route) + 1))
    for _, legs in route.groupby("site"):
        assert np.allclose(np.cumsum(legs["leg_m"]), legs["cumulative_m"])
    assert summary.route_m == pytest.approx(route["leg_m"].sum(), rel=1e-6)
    assert summary.route_m == pytest.approx(sum(s["route_m"] for s in sites), rel=1e-6)
    assert any(line.startswith(f"{len(sites)} sites more than 2 km apart") for line in
               summary.lines())  # fmt: skip
    top = b.sort_values(["priority_score", "building_id"], ascending=[False, True]).iloc[0]
    assert top["visit_order"] == 1
    by_visit = b.set_index("visit_order")["building_id"].astype(str)
    assert list(route["to_id"]) == [by_visit[k] for k in route["to_visit"]]
    for number, site in enumerate(sites, start=1):
        members = b[b["site"] == number]
        assert sorted(members["visit_order"]) == list(
            range(site["first_visit"], site["last_visit"] + 1)
        )
    visit_of = dict(zip(b["building_id"], b["visit_order"], strict=True))
    on_b = obs[obs["building_id"].notna()]
    assert all(
        v == visit_of[int(k)] for k, v in zip(on_b["building_id"], on_b["visit_order"], strict=True)
    )


def test_exif_gps_sites_each_get_their_own_route(
    exif_gps: Path, flag_all_model: Path, tmp_path: Path
) -> None:
    """Every photo flagged: nine towns on four continents are nine sites, the summary
    names them, and no leg of any route is longer than the 2 km site gap."""
    out = tmp_path / "all.gpkg"
    summary = run_survey(ClassifyConfig((exif_gps,), out, model_dir=flag_all_model, device="cpu"))
    route = read(out, "inspection_route")
    b = read(out, "flagged_buildings")
    assert len(summary.sites) == 9
    assert route["leg_m"].max() <= SITE_GAP_M
    assert summary.route_m < 5_000  # was 19,555 km as one route across the continents
    arezzo = [s for s in summary.sites if abs(s["lat"] - 43.467) < 0.01]
    assert len(arezzo) == 1 and arezzo[0]["buildings"] >= 3  # the one site with a route
    assert arezzo[0]["route_m"] == pytest.approx(summary.route_m)
    line = next(ln for ln in summary.lines() if "sites more than" in ln)
    assert line.startswith("9 sites more than 2 km apart, each with its own route: site 1 near")
    assert all(f"site {k} near" in line for k in range(1, 10))
    assert set(route["site"]) <= set(b["site"]) and sorted(set(b["site"])) == list(range(1, 10))


def test_default_styles_stored_like_qgis(survey) -> None:
    out, _, _ = survey
    with sqlite3.connect(out) as con:
        cols = [r[1] for r in con.execute("PRAGMA table_info(layer_styles)")]
        rows = con.execute(
            "SELECT f_table_catalog, f_table_schema, f_table_name, f_geometry_column, "
            "styleName, useAsDefault, styleQML FROM layer_styles ORDER BY f_table_name"
        ).fetchall()
        contents = con.execute(
            "SELECT data_type FROM gpkg_contents WHERE table_name = 'layer_styles'"
        ).fetchone()
    assert cols == [
        "id", "f_table_catalog", "f_table_schema", "f_table_name", "f_geometry_column",
        "styleName", "styleQML", "styleSLD", "useAsDefault", "description", "owner", "ui",
        "update_time",
    ]  # fmt: skip
    assert contents == ("attributes",)
    assert [r[2] for r in rows] == ["flagged_buildings", "inspection_route", "observations"]
    for cat, schema, _, geom, _, default, qml in rows:
        assert (cat, schema, geom, default) == ("", "", "geom", 1)
        assert qml.startswith("<!DOCTYPE qgis")
    obs_qml = rows[2][6]
    assert '&quot;priority_category&quot;)"' in obs_qml and "thumbnail_path" in obs_qml
    assert 'value="not_assessable"' in obs_qml  # scene mode's own symbol


def test_rerun_adds_only_new_photos(survey) -> None:
    out, _, cfg = survey
    before = read(out, "invalid_photos")
    again = run_survey(cfg)
    assert again.classified == 0 and again.already_classified == N_CORPUS
    assert again.observations_total == N_CORPUS
    obs = read(out, "observations")
    assert len(obs) == N_CORPUS and obs["sha256"].is_unique
    assert len(read(out, "invalid_photos")) == len(before)
    assert not any("another model" in p for p in again.problems)


def test_rerun_with_another_model_warns_and_keeps_earlier_rows(survey, tmp_path) -> None:
    out, _, cfg = survey
    other = tmp_path / "other"
    shutil.copytree(cfg.model_dir, other)
    card = json.loads((other / "model.json").read_text())
    card["version"] = "9.9.9"
    (other / "model.json").write_text(json.dumps(card))
    again = run_survey(dataclasses.replace(cfg, model_dir=other))
    assert again.classified == 0 and again.already_classified == N_CORPUS
    (warning,) = [p for p in again.problems if "another model" in p]
    assert f"{N_CORPUS} earlier observation(s)" in warning and "0.0.1" in warning
    assert "new GeoPackage" in warning
    assert set(read(out, "observations")["model_version"]) == {card_version(cfg.model_dir)}


def card_version(model_dir: Path) -> str:
    return json.loads((Path(model_dir) / "model.json").read_text())["version"]


# ------------------------------------------------------------------ smaller runs


def test_footprints_in_another_crs_start_and_cli(
    exif_gps: Path, flag_all_model: Path, tmp_path: Path
) -> None:
    import geopandas as gpd

    photos = gps_subset(exif_gps, tmp_path / "photos")
    pts = pyogrio.read_dataframe(exif_gps / "expected_gps_points.geojson", columns=["file"])
    name_col = "file"
    pts = pts[pts[name_col].astype(str).str.endswith(AREZZO)].to_crs(3857)
    # one footprint around DSCN0010, one around DSCN0012, one covering DSCN0025 + 0027
    by = {Path(str(n)).name: g for n, g in zip(pts[name_col], pts.geometry, strict=True)}
    polys = [
        by["DSCN0010.jpg"].buffer(8, cap_style="square"),
        by["DSCN0012.jpg"].buffer(8, cap_style="square"),
        by["DSCN0025.jpg"].union(by["DSCN0027.jpg"]).envelope.buffer(8, cap_style="square"),
    ]
    fp = gpd.GeoDataFrame({"name": ["a", "b", "c"]}, geometry=polys, crs=3857)
    fp_path = tmp_path / "footprints.geojson"
    fp.to_file(fp_path, driver="GeoJSON")
    out = tmp_path / "fp.gpkg"
    res = CliRunner().invoke(
        __import__("heritage.cli", fromlist=["cli"]).cli,
        ["classify", str(photos), "-o", str(out), "--model", str(flag_all_model),
         "--device", "cpu", "--footprints", str(fp_path), "--max-distance", "5",
         "--start", "11.8790,43.4640", "--json-progress", "--batch-size", "4"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    events = [json.loads(line) for line in res.output.splitlines() if line.startswith("{")]
    assert events[-1]["event"] == "summary" and events[-1]["classified"] == 11
    # the text a terminal shows travels with it, for the plugin's log
    lines = events[-1]["lines"]
    assert lines[0].startswith("GeoPackage: ") and lines[-1].startswith("done in ")
    assert any(e["event"] == "step" for e in events)
    obs = read(out, "observations")
    b = read(out, "flagged_buildings")
    assert set(b["source"]) == {"footprint"} and len(b) == 3
    assert sorted(b["fp_name"]) == ["a", "b", "c"]
    bid = dict(zip(obs["file_name"], obs["building_id"], strict=True))
    assert bid["DSCN0025.jpg"] == bid["DSCN0027.jpg"] != bid["DSCN0010.jpg"]
    assert np.isnan(bid["iphone_hdr_NO.jpg"]) and np.isnan(bid["DSCN0040.jpg"])
    counts = dict(zip(obs["file_name"], obs["n_flagged_on_building"], strict=True))
    assert counts["DSCN0025.jpg"] == 2 and counts["DSCN0010.jpg"] == 1
    # the reprojected footprint contains its photo
    poly = b.loc[b["fp_name"] == "a"].geometry.iloc[0]
    assert poly.contains(obs.loc[obs["file_name"] == "DSCN0010.jpg"].geometry.iloc[0])
    route = read(out, "inspection_route")
    assert len(route) == 3 and route["from_id"].iloc[0] == "start"
    assert route["from_stop"].iloc[0] == -1
    first = route.geometry.iloc[0].coords[0]
    assert first == pytest.approx((11.8790, 43.4640), abs=1e-6)


def test_clustering_without_footprints(exif_gps: Path, flag_all_model: Path, tmp_path) -> None:
    photos = gps_subset(exif_gps, tmp_path / "photos")
    out = tmp_path / "c.gpkg"
    summary = run_survey(
        ClassifyConfig((photos,), out, model_dir=flag_all_model, device="cpu", cluster_eps_m=30)
    )
    obs = read(out, "observations")
    assert obs["flagged"].all() and summary.flagged == 11
    assert obs["building_id"].notna().all()
    b = read(out, "flagged_buildings")
    assert set(b["source"]) == {"cluster"}
    assert b["n_photos"].sum() == 11
    # Madrid and Helsinki are buildings of their own
    alone = obs[obs["file_name"].isin(["iphone_hdr_NO.jpg", "HMD_Nokia_8.3_5G.jpg"])]
    assert (alone["n_flagged_on_building"] == 1).all()
    assert alone["building_id"].nunique() == 2
    assert (obs["priority_category"] != "none").all()
    for poly, bid in zip(b.geometry, b["building_id"], strict=True):
        members = obs[obs["building_id"] == bid]
        assert all(poly.contains(p) for p in members.geometry)


def test_embed_overlays_as_blobs(exif_gps: Path, model_dir: Path, tmp_path: Path) -> None:
    photos = gps_subset(exif_gps, tmp_path / "p", names=AREZZO[:2])
    out = tmp_path / "e.gpkg"
    run_survey(
        ClassifyConfig((photos,), out, model_dir=model_dir, device="cpu", embed_overlays=True)
    )
    with sqlite3.connect(out) as con:
        rows = con.execute(
            "SELECT overlay_path, overlay_jpg, heatmap_path, heatmap_png, thumbnail_path, "
            "thumbnail_jpg FROM observations"
        ).fetchall()
    assert len(rows) == 2
    for row in rows:
        for rel, blob in zip(row[::2], row[1::2], strict=True):
            assert blob == (out.parent / rel).read_bytes()
    info = pyogrio.read_info(out, layer="observations")
    assert "overlay_jpg" in list(info["fields"])


def test_missing_folder_fails_before_writing(model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "x.gpkg"
    with pytest.raises(InputNotFoundError, match="does not exist"):
        run_survey(ClassifyConfig((tmp_path / "nope",), out, model_dir=model_dir))
    assert not out.exists()


def test_corrupt_model_fails_before_any_work(
    exif_gps: Path, model_dir: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "bad_model"
    shutil.copytree(model_dir, bad)
    weights = bad / "stage2.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])  # truncated
    out = tmp_path / "x.gpkg"
    with pytest.raises(ModelError, match="tampered or truncated"):
        run_survey(ClassifyConfig((exif_gps / "gps",), out, model_dir=bad))
    assert not out.exists() and not (tmp_path / "x_overlays").exists()
    res = CliRunner().invoke(
        __import__("heritage.cli", fromlist=["cli"]).cli,
        ["classify", str(exif_gps / "gps"), "-o", str(out), "--model", str(tmp_path / "none")],
    )
    assert res.exit_code != 0 and isinstance(res.exception, ModelError)
    assert not out.exists()


def test_parse_start() -> None:
    assert parse_start("11.88,43.46") == (11.88, 43.46)
    assert parse_start("start.geojson") == Path("start.geojson")
    with pytest.raises(ValueError, match="LON,LAT"):
        parse_start("43.46,211.88")


def test_config_is_frozen_and_checked(tmp_path: Path) -> None:
    cfg = ClassifyConfig((tmp_path,), tmp_path / "o.gpkg")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.batch_size = 3  # type: ignore[misc]
    with pytest.raises(ValueError, match="batch_size"):
        ClassifyConfig((tmp_path,), tmp_path / "o.gpkg", batch_size=0)
    assert cfg.inference_mode == "scene" and not cfg.tiles
    assert ClassifyConfig((tmp_path,), tmp_path / "o.gpkg", mode="tiles").tiles
    with pytest.raises(ValueError, match="mode"):
        ClassifyConfig((tmp_path,), tmp_path / "o.gpkg", mode="centre")


def test_survey_map_png(survey, tmp_path: Path) -> None:
    from heritage.survey.mapplot import plot_survey

    out, _, _ = survey
    png = plot_survey(out, tmp_path / "map.png", dpi=60)
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size[0] > 300
        assert len(np.unique(np.asarray(im.convert("RGB")).reshape(-1, 3), axis=0)) > 10
    with pytest.raises(InputNotFoundError):
        plot_survey(tmp_path / "missing.gpkg", tmp_path / "m.png")


def test_start_from_points_file_and_by_priority(survey, tmp_path: Path) -> None:
    import geopandas as gpd
    from shapely.geometry import Point

    from heritage.survey.pipeline import update_priority
    from heritage.survey.priority import category_rank

    src, _, cfg = survey
    out = tmp_path / "copy.gpkg"
    shutil.copy(src, out)
    start = tmp_path / "start.geojson"
    gpd.GeoDataFrame(geometry=[Point(11.8790, 43.4640)], crs=4326).to_crs(3857).to_file(start)
    cfg = dataclasses.replace(cfg, output=out, start=start, by_priority=True)
    totals = update_priority(out, cfg, threshold=0.5)
    route = read(out, "inspection_route")
    b = read(out, "flagged_buildings").sort_values("visit_order")
    # a leg from the start to each building of its site (Arezzo, visited first); the
    # other sites start at their top building
    assert totals["buildings"] == len(b) == len(route) + len(totals["sites"]) - 1
    assert route["from_id"].iloc[0] == "start" and route["site"].iloc[0] == 1
    assert route.geometry.iloc[0].coords[0] == pytest.approx((11.8790, 43.4640), abs=1e-6)
    for _, members in b.groupby("site"):
        ranks = [category_rank(c) for c in members["priority_category"]]
        assert ranks == sorted(ranks)  # most urgent categories first, in each site


def test_route_along_a_street_network(exif_gps: Path, flag_all_model: Path, tmp_path) -> None:
    import geopandas as gpd
    from shapely.geometry import LineString

    photos = gps_subset(exif_gps, tmp_path / "p", names=AREZZO)
    # a street grid every 40 m around the Arezzo photos, written in EPSG:3857
    pts = pyogrio.read_dataframe(exif_gps / "expected_gps_points.geojson", columns=["file"])
    x0, y0, x1, y1 = pts[pts["file"].str.endswith(AREZZO)].to_crs(3857).total_bounds
    xs = np.arange(x0 - 100, x1 + 140, 40.0)
    ys = np.arange(y0 - 100, y1 + 140, 40.0)
    lines = [LineString([(x, ys[0]), (x, ys[-1])]) for x in xs]
    lines += [LineString([(xs[0], y), (xs[-1], y)]) for y in ys]
    network = tmp_path / "streets.gpkg"
    gpd.GeoDataFrame(geometry=lines, crs=3857).to_file(network, driver="GPKG")
    straight = run_survey(
        ClassifyConfig((photos,), tmp_path / "s.gpkg", model_dir=flag_all_model, device="cpu")
    )
    cfg = ClassifyConfig(
        (photos,), tmp_path / "n.gpkg", model_dir=flag_all_model, device="cpu", network=network
    )
    along = run_survey(cfg)
    assert along.buildings == straight.buildings >= 2
    assert along.route_m > straight.route_m  # streets are longer than straight lines
    legs = read(tmp_path / "n.gpkg", "inspection_route")
    assert max(len(g.coords) for g in legs.geometry) > 2  # legs follow the streets


def test_group_and_route_commands_rework_a_survey_in_place(
    exif_gps: Path, flag_all_model: Path, tmp_path: Path
) -> None:
    from click.testing import CliRunner

    from heritage.cli import cli

    photos = gps_subset(exif_gps, tmp_path / "photos")
    out = tmp_path / "g.gpkg"
    run_survey(ClassifyConfig((photos,), out, model_dir=flag_all_model, device="cpu"))
    before = read(out, "flagged_buildings")
    n_obs = len(read(out, "observations"))

    # 2 km clusters: all Arezzo photos become one building (Madrid, Helsinki stay alone)
    r = CliRunner().invoke(cli, ["group", str(out), "--cluster-eps", "2000", "--json-progress"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.output.strip().splitlines()[-1])
    assert summary["event"] == "summary" and summary["buildings"] == 3 < len(before)
    assert summary["lines"][0].startswith(f"{summary['flagged_total']} flagged photo(s) on 3 ")
    obs = read(out, "observations")
    assert len(obs) == n_obs  # nothing re-classified or duplicated
    grouped_ids = sorted(read(out, "flagged_buildings")["building_id"])
    arezzo = obs[obs["file_name"].str.startswith("DSCN")]
    assert arezzo["building_id"].nunique() == 1
    assert (arezzo["n_flagged_on_building"] == len(arezzo)).all()

    # re-plan from a start in Arezzo: same buildings, route begins at the start
    r = CliRunner().invoke(cli, ["route", str(out), "--start", "11.8790,43.4640"])
    assert r.exit_code == 0, r.output
    b = read(out, "flagged_buildings")
    assert sorted(b["building_id"]) == grouped_ids
    assert sorted(b["visit_order"]) == [1, 2, 3]
    legs = read(out, "inspection_route").sort_values("order")
    assert len(legs) == 1  # start -> Arezzo; Madrid and Helsinki are sites of their own
    x0, y0 = legs.geometry.iloc[0].coords[0]
    assert abs(x0 - 11.8790) < 1e-6 and abs(y0 - 43.4640) < 1e-6
    assert legs["leg_m"].max() < 2000
    obs = read(out, "observations")
    visit = dict(zip(b["building_id"], b["visit_order"], strict=True))
    assert all(
        visit[bid] == v for bid, v in zip(obs["building_id"], obs["visit_order"], strict=True)
    )

    bad = CliRunner().invoke(cli, ["route", str(tmp_path / "missing.gpkg")])
    assert bad.exit_code != 0


def test_a_photo_without_position_is_inspected_with_one_header_read(tmp_path, monkeypatch):
    from PIL import Image

    import heritage.io.exif as exif
    import heritage.survey.photos as photos
    import heritage.survey.pipeline as survey_module
    from heritage.kernel.records import Photo
    from heritage.survey.pipeline import inspect_for_survey

    path = tmp_path / "no_exif.png"
    Image.new("RGB", (40, 30), (90, 60, 30)).save(path)
    calls = {"read_exif": 0, "check_image": 0}

    def counted(name, original):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return original(*args, **kwargs)

        return wrapper

    # patched wherever a module holds a reference, so no call escapes the count
    originals = {"read_exif": exif.read_exif, "check_image": photos.check_image}
    for name, original in originals.items():
        for module in (exif, photos, survey_module):
            if hasattr(module, name):
                monkeypatch.setattr(module, name, counted(name, original))
    photo, why = inspect_for_survey(path, photos.sha256_file(path))
    assert isinstance(photo, Photo) and photo.position is None
    assert (photo.width, photo.height) == (40, 30)
    assert why.startswith("no_gps:")
    assert calls == {"read_exif": 1, "check_image": 1}
