"""Behaviour check: the demo survey with the shipped model gives the recorded tables.

``make demo`` classifies the 21 demo photos (``resources/demo/photos``) with the shipped
model; this runs the same survey (on the CPU) and compares its observations, flagged
buildings, route legs and invalid photos with ``demo_survey_expected.json``, recorded
from ``make demo`` before the package was split into subpackages. A refactoring must
leave them unchanged. When the model, the priority formula or the route planner change
on purpose, record the tables again and say why in the commit:

    HERITAGE_RECORD_DEMO=1 .venv/bin/python -m pytest tests/integration/test_demo_survey.py

The observations' ``threshold`` column was added to the record by hand when observations
started recording it (the shipped card's threshold on every row; no other value changed).
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
from pathlib import Path

import pytest

from heritage.model.card import CARD_FILE, default_model_dir
from heritage.survey.pipeline import ClassifyConfig, run_survey

ROOT = Path(__file__).resolve().parents[2]
DEMO_PHOTOS = ROOT / "resources" / "demo" / "photos"
EXPECTED = Path(__file__).with_name("demo_survey_expected.json")

#: columns compared per table (paths and geometries depend on where the survey is written;
#: positions are in latitude/longitude, buildings by their photos, legs by their length)
COLUMNS = {
    "observations": (
        "file_name", "sha256", "latitude", "longitude", "status", "message", "stage1_label",
        "stage1_score", "p_stage1", "p_stage2", "p_final", "flagged", "decision", "cam_method",
        "cam_layer", "cam_empty", "defect_area_fraction", "priority_score",
        "priority_category", "building_id", "n_flagged_on_building", "visit_order",
        "model_id", "model_version", "threshold", "inference_mode", "n_tiles", "n_wall_tiles",
        "n_flagged_tiles", "best_box_left", "best_box_top", "best_box_right",
        "best_box_bottom", "overlay_path", "heatmap_path", "thumbnail_path",
    ),
    "flagged_buildings": (
        "building_id", "source", "n_photos", "n_flagged", "priority_score",
        "priority_category", "mean_priority_score", "file_names", "flagged_file_names",
        "visit_order", "site",
    ),
    "inspection_route": (
        "order", "from_stop", "to_stop", "from_id", "to_id", "leg_m", "cumulative_m", "site",
        "to_visit",
    ),
    "invalid_photos": ("file_name", "reason", "message"),
}  # fmt: skip


def survey_tables(gpkg: Path) -> dict[str, list[dict]]:
    """The compared columns of each table, rows in ``fid`` order."""
    con = sqlite3.connect(gpkg)
    try:
        out = {}
        for table, columns in COLUMNS.items():
            names = ", ".join(f'"{c}"' for c in columns)
            rows = con.execute(f'SELECT {names} FROM "{table}" ORDER BY fid').fetchall()
            out[table] = [dict(zip(columns, row, strict=True)) for row in rows]
        return out
    finally:
        con.close()


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        if a is None or b is None:
            return a is b
        # float noise only: torch may sum in another order (seen: p_stage2 2e-4 apart when
        # an earlier test in the same process had changed torch's state)
        return math.isclose(float(a), float(b), rel_tol=2e-3, abs_tol=1e-5)
    return a == b


@pytest.mark.slow
def test_demo_survey_tables_are_unchanged(tmp_path: Path) -> None:
    model = default_model_dir()
    assert (model / CARD_FILE).is_file(), f"the shipped model is missing at {model}"
    out = tmp_path / "demo" / "survey.gpkg"
    run_survey(ClassifyConfig((DEMO_PHOTOS,), out, model_dir=model, device="cpu"))
    got = survey_tables(out)
    if os.environ.get("HERITAGE_RECORD_DEMO"):
        EXPECTED.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    expected = json.loads(EXPECTED.read_text(encoding="utf-8"))
    for table in COLUMNS:
        assert len(got[table]) == len(expected[table]), table
        for i, (row, want) in enumerate(zip(got[table], expected[table], strict=True)):
            diff = {c: (row[c], want[c]) for c in want if not _same(row[c], want[c])}
            assert not diff, f"{table} row {i + 1} ({row.get('file_name', '')}): {diff}"
