"""The review panel, headless: open a classified survey, record confirmed, false alarm
and missed through the panel's own actions, and check the reviews table, the re-scored
priorities, the buildings and the route (the backend is the real `heritage` command)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from conftest import ROOT
from conftest import wait_until as _wait_until
from helpers import HELSINKI, review_survey

pytestmark = pytest.mark.qgis

#: the rendered panel, for people to look at (copied to docs/img by hand)
RENDER_OUT = ROOT / "build" / "test-output" / "review_panel.png"


@pytest.fixture
def survey(exif_gps: Path, tiny_model: Path, tmp_path: Path) -> Path:
    """Five photos classified by a model that flags everything; Helsinki's photo then
    marked as not flagged (a defect the model missed)."""
    return review_survey(tmp_path, exif_gps, tiny_model)


def _rows(gpkg: Path, sql: str) -> list[tuple]:
    con = sqlite3.connect(gpkg)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_review_panel_records_verdicts_and_the_map_follows(
    qgis_app, qgis_new_project, survey: Path, backend_exe: Path
) -> None:
    from qgis.core import QgsCoordinateReferenceSystem, QgsProject, QgsRectangle, QgsSettings
    from qgis.gui import QgsMapCanvas

    from heritage_qgis import settings
    from heritage_qgis.results import load_survey
    from heritage_qgis.review import REVIEWER_KEY, ReviewDock

    old_backend, old_reviewer = settings.backend_path(), QgsSettings().value(REVIEWER_KEY, "")
    settings.set_backend_path(str(backend_exe))
    QgsSettings().setValue(REVIEWER_KEY, "M. Rossi")
    canvas = QgsMapCanvas()
    canvas.setDestinationCrs(QgsCoordinateReferenceSystem("EPSG:4326"))
    canvas.resize(600, 400)
    canvas.setExtent(QgsRectangle(-10.0, 35.0, 30.0, 65.0))
    layers = load_survey(survey, QgsProject.instance())
    try:
        dock = ReviewDock(canvas=canvas)
        dock.resize(1100, 620)
        dock.update_timer.setInterval(0)
        # default: the flagged photos in visiting order, the first one shown
        assert dock.open_survey(survey) == 4
        first = dock.current()
        assert first["visit_order"] == 1 and HELSINKI not in {r["file_name"] for r in dock.rows}
        assert dock.photo.has_image() and dock.overlay.has_image() and dock.heatmap.has_image()
        assert "decision: <b>conservation_needed</b>" in dock.info.text()
        assert not dock.actions["missed"].isEnabled() and dock.actions["confirmed"].isEnabled()
        dock.photo.zoom_by(2.0)
        assert dock.photo.zoom == 2.0

        # false alarm on Madrid's photo (the map pans to it)
        sha = {r["file_name"]: r["sha256"] for r in dock.rows}
        assert dock.show_sha(sha["iphone_hdr_NO.jpg"])
        assert canvas.center().x() == pytest.approx(-3.7247528, abs=1e-4)
        dock.note.setText("a shadow of the balcony")
        dock.actions["false_alarm"].trigger()
        assert _wait_until(lambda: not dock.busy(), 120), dock.status.text()

        # confirmed crack on DSCN0025
        assert dock.show_sha(sha["DSCN0025.jpg"])
        dock.defect_type.setCurrentIndex(dock.defect_type.findData("crack"))
        dock.actions["confirmed"].trigger()

        # missed defect on Helsinki's photo (only in the list of all photos)
        dock.set_order("all")
        assert len(dock.rows) == 5
        hel = next(r for r in dock.rows if r["file_name"] == HELSINKI)
        assert dock.show_sha(hel["sha256"])
        assert dock.actions["missed"].isEnabled() and not dock.actions["confirmed"].isEnabled()
        dock.defect_type.setCurrentIndex(dock.defect_type.findData("biological_growth"))
        dock.actions["missed"].trigger()
        assert _wait_until(lambda: not dock.busy(), 120), dock.status.text()
        assert dock.last_summary["reviews"]["reviewed"] == 3
        assert "3 reviewed: 1 confirmed, 1 false alarm(s), 1 missed" in dock.status.text()

        RENDER_OUT.parent.mkdir(parents=True, exist_ok=True)
        assert dock.show_sha(sha["DSCN0025.jpg"])
        assert dock.grab().save(str(RENDER_OUT))
    finally:
        settings.set_backend_path(old_backend)
        if old_reviewer:
            QgsSettings().setValue(REVIEWER_KEY, old_reviewer)
        else:
            QgsSettings().remove(REVIEWER_KEY)

    # the reviews table: one row per verdict, with who and when
    reviews = _rows(
        survey, "SELECT sha256, verdict, defect_type, note, reviewer, reviewed_at FROM reviews"
    )
    assert [(r[0], r[1], r[2], r[4]) for r in reviews] == [
        (sha["iphone_hdr_NO.jpg"], "false_alarm", None, "M. Rossi"),
        (sha["DSCN0025.jpg"], "confirmed", "crack", "M. Rossi"),
        (hel["sha256"], "missed", "biological_growth", "M. Rossi"),
    ]
    assert reviews[0][3] == "a shadow of the balcony" and all(r[5] for r in reviews)
    # re-scored: Madrid no longer counts, DSCN0025 certain, Helsinki added
    obs = {
        r[0]: r[1:]
        for r in _rows(
            survey, "SELECT file_name, priority_category, building_id, review FROM observations"
        )
    }
    assert obs["iphone_hdr_NO.jpg"][:2] == ("none", None)
    assert obs[HELSINKI][0] != "none" and obs[HELSINKI][1] is not None
    assert obs["DSCN0025.jpg"][2] == "confirmed"
    buildings = _rows(survey, "SELECT flagged_file_names, visit_order FROM flagged_buildings")
    names = ";".join(b[0] for b in buildings)
    assert HELSINKI in names and "iphone_hdr_NO.jpg" not in names
    assert sorted(b[1] for b in buildings) == [1, 2, 3, 4]
    assert _rows(survey, "SELECT COUNT(*) FROM inspection_route") == [(2,)]  # Arezzo's legs
    # the project's layers were reloaded: they show the new state
    observations = layers["observations"]
    states = {f["file_name"]: f["review"] for f in observations.getFeatures()}
    assert states[HELSINKI] == "missed"
    assert observations.labelsEnabled()  # the default style labels the review state
    assert '"review"' in observations.labeling().settings().fieldName
    assert layers["flagged_buildings"].featureCount() == 4
    QgsProject.instance().removeAllMapLayers()  # before pytest removes the survey's folder
