"""Reviews: the append-only table, the map following it, re-classification, export.

A tiny random model flags every photo (threshold 0) of five exif-gps photos: three
in Arezzo (three buildings at the default 30 m clustering), one in Madrid, one in
Helsinki. One photo is then marked as not flagged in the GeoPackage, standing for a
photo the model missed.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil
import sqlite3
from pathlib import Path

import pyogrio
import pytest
from click.testing import CliRunner
from factories import tiny_model_dir
from helpers import HELSINKI, review_survey

from heritage.io.reviews import current_reviews, read_history, record_review
from heritage.kernel.errors import DataError
from heritage.survey.pipeline import ClassifyConfig, regroup_survey, run_survey
from heritage.training.review_data import export_class, is_held_out, model_label, reviewed_items


def review_model(path: Path, version: str = "0.0.1") -> Path:
    """Two mobilenet_v3_small stages that flag every photo (threshold 0)."""
    return tiny_model_dir(
        path, model_id="tiny-review", version=version, stage2="mobilenet_v3_small", threshold=0.0
    )


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return review_model(tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture(scope="module")
def classified(exif_gps: Path, model: Path, tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """The survey, classified once: (its folder, file name -> sha256); Helsinki's photo
    not flagged."""
    root = tmp_path_factory.mktemp("classified")
    obs = pyogrio.read_dataframe(review_survey(root, exif_gps, model), layer="observations")
    return root, dict(zip(obs["file_name"], obs["sha256"], strict=True))


@pytest.fixture
def survey(classified, tmp_path: Path) -> tuple[Path, dict[str, str], Path]:
    """(survey.gpkg, file name -> sha256, photo folder): a fresh copy of the classified
    survey with its photos and overlays for each test (paths in it are relative)."""
    root, sha = classified
    shutil.copytree(root, tmp_path, dirs_exist_ok=True)
    return tmp_path / "survey.gpkg", sha, tmp_path / "photos"


def read(out: Path, layer: str):
    return pyogrio.read_dataframe(out, layer=layer)


def by_file(out: Path) -> dict[str, dict]:
    obs = read(out, "observations")
    return {r["file_name"]: r for r in obs.to_dict("records")}


def test_history_is_append_only_and_the_latest_review_counts(survey) -> None:
    out, sha, _ = survey
    first = record_review(
        out, sha["DSCN0025.jpg"], "confirmed", reviewer="ana", defect_type="crack"
    )
    second = record_review(
        out, sha["DSCN0025.jpg"], "false_alarm", reviewer="ben", note="a shadow", at="2099-01-01"
    )
    assert first.previous_verdict is None and second.previous_verdict == "confirmed"
    history = read_history(out, sha["DSCN0025.jpg"])
    assert [(r.verdict, r.reviewer) for r in history] == [
        ("confirmed", "ana"),
        ("false_alarm", "ben"),
    ]
    assert history[0].model_id == "tiny-review" and history[0].p_final is not None
    assert current_reviews(out)[sha["DSCN0025.jpg"]].verdict == "false_alarm"
    from heritage.survey.report import read_reviews as report_reviews

    in_report = report_reviews(out)[sha["DSCN0025.jpg"]]  # the report's review state
    assert (in_report.state, in_report.reviewer, in_report.note) == (
        "false_alarm",
        "ben",
        "a shadow",
    )
    con = sqlite3.connect(out)
    for sql in ("UPDATE reviews SET verdict = 'unsure'", "DELETE FROM reviews"):
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            con.execute(sql)
    con.close()
    assert len(read_history(out)) == 2


def test_reviews_that_make_no_sense_are_refused(survey) -> None:
    out, sha, _ = survey
    with pytest.raises(DataError, match="'confirmed'"):
        record_review(out, sha["DSCN0010.jpg"], "missed", reviewer="ana")
    with pytest.raises(DataError, match="'missed'"):
        record_review(out, sha[HELSINKI], "false_alarm", reviewer="ana")
    with pytest.raises(DataError, match="no photo with sha256"):
        record_review(out, "0" * 64, "confirmed", reviewer="ana")
    with pytest.raises(ValueError, match="reviewer"):
        record_review(out, sha["DSCN0010.jpg"], "confirmed", reviewer=" ")
    with pytest.raises(ValueError, match="defect type"):
        record_review(out, sha["DSCN0010.jpg"], "confirmed", reviewer="a", defect_type="rust")
    assert read_history(out) == []


def test_priorities_buildings_and_route_follow_the_reviews(survey) -> None:
    out, sha, _ = survey
    before = by_file(out)
    n_buildings = len(read(out, "flagged_buildings"))
    assert before[HELSINKI]["priority_category"] == "none" and n_buildings == 4
    assert before["iphone_hdr_NO.jpg"]["priority_category"] != "none"

    record_review(out, sha["iphone_hdr_NO.jpg"], "false_alarm", reviewer="ana")
    record_review(out, sha["DSCN0025.jpg"], "confirmed", reviewer="ana", defect_type="salt")
    record_review(out, sha[HELSINKI], "missed", reviewer="ana", defect_type="biological_growth")
    totals = regroup_survey(out, threshold=0.0)

    after = by_file(out)
    assert totals["reviews"] == {
        "reviewed": 3, "confirmed": 1, "false_alarm": 1, "unsure": 0, "missed": 1
    }  # fmt: skip
    # a false alarm no longer counts: no priority, no building
    madrid = after["iphone_hdr_NO.jpg"]
    assert madrid["priority_category"] == "none" and madrid["priority_score"] == 0.0
    assert madrid["building_id"] is None or madrid["building_id"] != madrid["building_id"]
    assert madrid["flagged"] and madrid["decision"] == "conservation_needed"  # model kept
    # a confirmed defect counts as certain: c = 1 in the score
    c25 = after["DSCN0025.jpg"]
    area = min(c25["defect_area_fraction"] / 0.25, 1.0)
    assert c25["priority_score"] == pytest.approx(100 * (0.55 + 0.45 * area))
    assert c25["priority_score"] >= before["DSCN0025.jpg"]["priority_score"]
    # a missed defect adds its building
    hel = after[HELSINKI]
    assert hel["priority_category"] != "none" and hel["building_id"] == hel["building_id"]
    states = sorted(str(r["review"]) for r in after.values() if isinstance(r["review"], str))
    assert states == ["confirmed", "false_alarm", "missed"]  # the others are NULL
    buildings = read(out, "flagged_buildings")
    assert len(buildings) == n_buildings  # Madrid out, Helsinki in
    mine = buildings[buildings["building_id"] == hel["building_id"]].iloc[0]
    assert mine["n_confirmed"] == 1 and mine["n_reviewed"] == 1
    flagged_files = ";".join(buildings["flagged_file_names"])
    assert HELSINKI in flagged_files and "iphone_hdr_NO.jpg" not in flagged_files
    # one open route per site: Arezzo's three buildings, Helsinki alone
    legs = read(out, "inspection_route")
    assert len(legs) == 2 and sorted(buildings["visit_order"]) == [1, 2, 3, 4]


def test_reclassifying_with_another_model_keeps_every_review(survey, model, tmp_path) -> None:
    out, sha, photos = survey
    record_review(out, sha["iphone_hdr_NO.jpg"], "false_alarm", reviewer="ana")
    record_review(out, sha["DSCN0010.jpg"], "confirmed", reviewer="ana", defect_type="crack")
    record_review(out, sha["DSCN0010.jpg"], "unsure", reviewer="ben", box=(0, 0, 32, 32))
    history = read_history(out)
    other = review_model(tmp_path / "other", version="0.0.2")
    cfg = ClassifyConfig((photos,), out, model_dir=other, device="cpu", reclassify=True)
    summary = run_survey(cfg)
    assert summary.reclassified == 5 and summary.classified == 5
    assert summary.reviews["reviewed"] == 2  # per photo: Madrid and DSCN0010
    assert "5 classified again with this model (their reviews kept)" in "\n".join(summary.lines())
    obs = read(out, "observations")
    assert set(obs["model_version"]) == {"0.0.2"} and len(obs) == 5 and obs["sha256"].is_unique
    assert read_history(out) == history  # every review kept, unchanged
    after = by_file(out)
    assert after["iphone_hdr_NO.jpg"]["review"] == "false_alarm"
    assert after["iphone_hdr_NO.jpg"]["priority_category"] == "none"
    # a plain re-run with the same model changes nothing
    again = run_survey(dataclasses.replace(cfg, reclassify=False))
    assert again.classified == 0 and read_history(out) == history


def test_cli_review_and_export_as_image_folder(survey, tmp_path) -> None:
    from heritage.cli import cli

    out, sha, _ = survey
    run = CliRunner().invoke
    r = run(cli, ["review", str(out), "--photo", sha["DSCN0010.jpg"], "--verdict", "confirmed",
                  "--type", "crack", "--reviewer", "ana", "--json", "--rescore"])  # fmt: skip
    assert r.exit_code == 0, r.output
    written = json.loads(r.output)
    assert written["verdict"] == "confirmed" and written["rescored"]["reviews"]["confirmed"] == 1
    r = run(cli, ["review", str(out), "--photo", sha["iphone_hdr_NO.jpg"], "--verdict",
                  "false_alarm", "--reviewer", "ben", "--box", "1,2,40,50"])  # fmt: skip
    assert r.exit_code == 0, r.output
    r = run(cli, ["review", str(out), "--photo", sha["DSCN0010.jpg"], "--verdict", "nope",
                  "--reviewer", "ana"])  # fmt: skip
    assert r.exit_code != 0
    r = run(cli, ["reviews", str(out), "--history"])
    assert r.exit_code == 0 and r.output.count("\n") == 2, r.output

    dest = tmp_path / "export"
    r = run(cli, ["reviews", str(out), "--export", str(dest)])
    assert r.exit_code == 0, r.output
    with open(dest / "manifest.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert {(row["class"], row["reviewer"]) for row in rows} == {
        ("crack", "ana"),
        ("no_defect", "ben"),
    }
    for row in rows:
        assert (
            (dest / row["file"]).is_file() and row["sha256"] in sha.values() and row["reviewed_at"]
        )
    from PIL import Image

    tile = next(row for row in rows if row["class"] == "no_defect")
    assert Image.open(dest / tile["file"]).size == (39, 48)  # the reviewed box


def test_hold_out_rule_and_labels(survey) -> None:
    out, sha, _ = survey
    assert is_held_out("0" * 64) and not is_held_out("f" * 64)
    assert is_held_out("33333333" + "0" * 56, 0.2) and not is_held_out("34000000" + "0" * 56, 0.2)
    assert export_class("false_alarm", "crack") == "no_defect"
    assert export_class("missed", None) == "other"
    record_review(out, sha[HELSINKI], "missed", reviewer="a", defect_type="salt")
    record_review(out, sha["DSCN0010.jpg"], "false_alarm", reviewer="a")
    record_review(out, sha["DSCN0012.jpg"], "confirmed", reviewer="a", defect_type="other")
    items = {i.sha256: i for i in reviewed_items(out)}
    labels, pos = ("crack", "healthy", "no_crack", "salt_damage"), ("crack", "salt_damage")
    assert model_label(items[sha[HELSINKI]], labels, pos) == "salt_damage"
    assert model_label(items[sha["DSCN0010.jpg"]], labels, pos) == "no_crack"
    assert model_label(items[sha["DSCN0012.jpg"]], labels, pos) in pos


def test_a_survey_whose_path_has_spaces_and_hashes(survey, tmp_path: Path) -> None:
    out, sha, _ = survey
    odd = tmp_path / "site #2 (2027)?" / "survey.gpkg"
    odd.parent.mkdir()
    shutil.copy(out, odd)
    record_review(odd, sha["DSCN0010.jpg"], "confirmed", reviewer="ana")
    assert [r.verdict for r in read_history(odd)] == ["confirmed"]
    assert [i.sha256 for i in reviewed_items(odd)] == [sha["DSCN0010.jpg"]]
