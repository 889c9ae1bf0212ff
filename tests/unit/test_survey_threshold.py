"""Re-scoring a survey anchors each photo's priority to the threshold it was classified with.

A survey classified with a model whose threshold is 0.3 (a fine-tuned model, say) and
re-grouped by ``heritage group`` without ``--model`` (the default model, threshold
0.692) keeps the scores of 0.3. A survey written before observations recorded their
threshold is scored with the threshold of ``--model`` (or the default model), and the
command says so once. The surveys are written directly (no model is run), four flagged
photos about 14 m apart in Arezzo (one building at the default clustering).
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from factories import tiny_card
from shapely.geometry import Point

from heritage.cli import cli
from heritage.io.gpkg import BatchWriter
from heritage.model.card import CARD_FILE, read_card
from heritage.survey.classify import DECISION_FLAGGED
from heritage.survey.pipeline import observations_schema
from heritage.survey.priority import PriorityConfig, priority_scores

P_FINAL = (0.45, 0.6, 0.8, 0.95)
AREA = (0.02, 0.1, 0.05, 0.3)
#: the threshold of the model that "classified" the survey
SURVEY_THRESHOLD = 0.3


def write_survey(
    out: Path, threshold: float | tuple[float, ...] | None, with_column: bool = True
) -> Path:
    """A classified survey of four flagged photos, classified with ``threshold`` (one
    for all, or one per photo); ``with_column`` False: as written before observations
    had a ``threshold`` column."""
    per_photo = threshold if isinstance(threshold, tuple) else (threshold,) * len(P_FINAL)
    schema = observations_schema()
    if not with_column:
        fields = tuple(f for f in schema.fields if f.name != "threshold")
        schema = dataclasses.replace(schema, fields=fields, added_later=())
    with BatchWriter(out, schema) as writer:
        for i, (p, area, t) in enumerate(zip(P_FINAL, AREA, per_photo, strict=True)):
            lat, lon = 43.4630 + i * 1e-4, 11.8800 + i * 1e-4
            row = {
                "path": f"photos/p{i}.jpg",
                "file_name": f"p{i}.jpg",
                "sha256": f"{i:02d}" * 32,
                "latitude": lat,
                "longitude": lon,
                "p_final": p,
                "p_stage1": p,
                "flagged": True,
                "decision": DECISION_FLAGGED,
                "defect_area_fraction": area,
                "model_id": "tiny-finetuned",
                "model_version": "0.0.2",
                "threshold": t,
                "inference_mode": "whole",
                "status": "ok",
            }
            writer.add(row, Point(lon, lat))
    return out


def read_scores(out: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, list | None]:
    """(priority_score, n_flagged_on_building, defect_area_fraction, threshold) in fid
    order; threshold ``None`` when the layer has no such column."""
    con = sqlite3.connect(out)
    try:
        have = {r[1] for r in con.execute('PRAGMA table_info("observations")')}
        cols = ["priority_score", "n_flagged_on_building", "defect_area_fraction"]
        cols += ["threshold"] if "threshold" in have else []
        rows = con.execute(f"SELECT {', '.join(cols)} FROM observations ORDER BY fid").fetchall()
    finally:
        con.close()
    columns = list(zip(*rows, strict=True))
    score, n, area = (np.array(c, float) for c in columns[:3])
    return score, n, area, list(columns[3]) if len(columns) > 3 else None


def expected_scores(n: np.ndarray, area: np.ndarray, floor: float) -> np.ndarray:
    return priority_scores(np.array(P_FINAL), area, n, PriorityConfig(confidence_floor=floor))


def card_dir(path: Path, threshold: float) -> Path:
    """A model folder with only its card (``heritage group`` reads nothing else)."""
    path.mkdir(parents=True)
    card = tiny_card(model_id="tiny-other", version="0.0.9", threshold=threshold)
    (path / CARD_FILE).write_text(card.to_json(), encoding="utf-8")
    return path


def test_regrouping_with_the_default_model_keeps_the_surveys_own_threshold(
    tmp_path: Path,
) -> None:
    default = float(read_card().threshold)
    assert not np.isclose(default, SURVEY_THRESHOLD)  # else the test could not fail
    out = write_survey(tmp_path / "survey.gpkg", SURVEY_THRESHOLD)

    res = CliRunner().invoke(cli, ["group", str(out)])

    assert res.exit_code == 0, res.output
    score, n, area, thr = read_scores(out)
    assert n.tolist() == [4.0] * 4  # one building: corroboration counts in the score
    np.testing.assert_allclose(score, expected_scores(n, area, SURVEY_THRESHOLD))
    # the default model's threshold would give other scores (0 for the photos below it)
    assert not np.allclose(score, expected_scores(n, area, default))
    assert thr == [SURVEY_THRESHOLD] * 4  # re-grouping never rewrites the model's columns
    assert "no recorded threshold" not in res.stderr


def test_review_rescore_keeps_the_surveys_own_threshold(tmp_path: Path) -> None:
    """``heritage review --rescore`` (the map following a verdict at once) as ``group``."""
    out = write_survey(tmp_path / "survey.gpkg", SURVEY_THRESHOLD)
    args = ["review", str(out), "--photo", "00" * 32, "--verdict", "unsure", "--reviewer", "ana"]

    res = CliRunner().invoke(cli, [*args, "--rescore"])

    assert res.exit_code == 0, res.output
    score, n, area, _ = read_scores(out)
    np.testing.assert_allclose(score, expected_scores(n, area, SURVEY_THRESHOLD))
    assert "no recorded threshold" not in res.stderr


def test_each_photo_is_scored_with_its_own_threshold(tmp_path: Path) -> None:
    """A survey whose photos come from two models (0.3 and 0.7): each keeps its own."""
    out = write_survey(tmp_path / "survey.gpkg", (0.3, 0.3, 0.7, 0.7))

    res = CliRunner().invoke(
        cli, ["group", str(out), "--model", str(card_dir(tmp_path / "m", 0.5))]
    )

    assert res.exit_code == 0, res.output
    score, n, area, thr = read_scores(out)
    assert thr == [0.3, 0.3, 0.7, 0.7]
    want = np.concatenate([expected_scores(n, area, 0.3)[:2], expected_scores(n, area, 0.7)[2:]])
    np.testing.assert_allclose(score, want)


def test_an_old_survey_is_scored_with_the_models_threshold_and_says_so(tmp_path: Path) -> None:
    out = write_survey(tmp_path / "survey.gpkg", None, with_column=False)
    model = card_dir(tmp_path / "model", 0.4)

    res = CliRunner().invoke(cli, ["group", str(out), "--model", str(model)])

    assert res.exit_code == 0, res.output
    score, n, area, thr = read_scores(out)
    assert thr is None  # group adds no column: classify does, on the next run
    np.testing.assert_allclose(score, expected_scores(n, area, 0.4))
    note = (
        "4 observation(s) have no recorded threshold (classified before thresholds were "
        "recorded); scored with model tiny-other 0.0.9's threshold 0.400"
    )
    assert res.stderr.count("no recorded threshold") == 1
    assert f"warning: {note}" in res.stderr.splitlines()


def test_an_old_survey_names_the_default_model_in_the_plugins_summary(tmp_path: Path) -> None:
    """``--json-progress`` (what the QGIS panel runs): the note is among the summary lines."""
    out = write_survey(tmp_path / "survey.gpkg", None, with_column=False)
    card = read_card()

    res = CliRunner().invoke(cli, ["group", str(out), "--json-progress"])

    assert res.exit_code == 0, res.output
    summary = [json.loads(line) for line in res.stdout.splitlines() if '"summary"' in line]
    assert len(summary) == 1
    notes = [line for line in summary[0]["lines"] if "no recorded threshold" in line]
    assert notes == [
        "warning: 4 observation(s) have no recorded threshold (classified before thresholds "
        f"were recorded); scored with model {card.model_id} {card.version}'s threshold "
        f"{card.threshold:.3f}"
    ]
    score, n, area, _ = read_scores(out)
    np.testing.assert_allclose(score, expected_scores(n, area, float(card.threshold)))


@pytest.mark.parametrize("recorded", [1.0, -0.1])
def test_a_threshold_outside_0_1_counts_as_not_recorded(tmp_path: Path, recorded: float) -> None:
    out = write_survey(tmp_path / "survey.gpkg", recorded)
    res = CliRunner().invoke(
        cli, ["group", str(out), "--model", str(card_dir(tmp_path / "m", 0.4))]
    )
    assert res.exit_code == 0, res.output
    score, n, area, _ = read_scores(out)
    np.testing.assert_allclose(score, expected_scores(n, area, 0.4))
    assert "4 observation(s) have no recorded threshold" in res.stderr


@pytest.mark.slow
def test_classify_records_the_threshold_and_an_older_survey_gets_the_column(
    tmp_path: Path,
) -> None:
    """``classify`` writes the card's threshold on each row; a survey written before (no
    column) gets it on its next run: the running model's own earlier rows get its
    threshold, another model's rows stay NULL and are scored with the running model's
    threshold, counted once in the summary."""
    from factories import geotagged, geotagged_folder, tiny_model_dir

    from heritage.io.gpkg import connect_gpkg
    from heritage.survey.pipeline import ClassifyConfig, run_survey

    model = tiny_model_dir(tmp_path / "model", model_id="tiny-thr", threshold=0.3)
    photos = geotagged_folder(tmp_path / "photos", 2)
    out = tmp_path / "survey.gpkg"
    cfg = ClassifyConfig((photos,), out, model_dir=model, device="cpu", mode="whole")
    first = run_survey(cfg)
    assert read_scores(out)[3] == [0.3, 0.3]
    assert not [p for p in first.problems if "no recorded threshold" in p]

    con = connect_gpkg(out)  # now it is a survey written before thresholds were recorded,
    with con:  # its first photo by an older version of the model
        con.execute("ALTER TABLE observations DROP COLUMN threshold")
        con.execute("UPDATE observations SET model_version = '0.0.0' WHERE fid = 1")
    con.close()
    geotagged(photos / "new.jpg", 43.4633, 11.8803)
    summary = run_survey(cfg)

    assert summary.classified == 1
    assert read_scores(out)[3] == [None, 0.3, 0.3]
    note = (
        "1 observation(s) have no recorded threshold (classified before thresholds were "
        "recorded); scored with model tiny-thr 0.0.1's threshold 0.300"
    )
    assert [p for p in summary.problems if "no recorded threshold" in p] == [note]
    assert [line for line in summary.lines() if "no recorded threshold" in line] == [
        f"warning: {note}"
    ]
