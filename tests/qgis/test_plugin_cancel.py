"""Cancel through the plugin's runner (the survey dialog's background task), on the real
backend with the shipped model and 36 photos: the backend stops after the batch being
classified, still groups the buildings and plans the route over what it kept, and the
dialog reports a cancel (not a failure) and loads the partial layers."""

from __future__ import annotations

import re
import shutil
import sqlite3
from pathlib import Path

import pytest
from conftest import wait_until as _wait_until

pytestmark = [pytest.mark.qgis, pytest.mark.slow]


@pytest.fixture
def photos36(exif_gps: Path, tmp_path: Path) -> Path:
    """The 9 Arezzo photos, 4 copies each with different trailing bytes (distinct
    sha256, same picture and GPS): 36 photos."""
    out = tmp_path / "photos"
    out.mkdir()
    for src in sorted((exif_gps / "gps").glob("DSCN*.jpg")):
        data = src.read_bytes()
        for k in range(4):
            (out / f"{src.stem}_{k}.jpg").write_bytes(data + bytes([k]) * (k + 1))
    assert len(list(out.iterdir())) == 36
    return out


def test_cancel_keeps_photos_buildings_route_and_loads_them(
    qgis_app, qgis_iface, photos36: Path, backend_exe: Path, tmp_path: Path
) -> None:
    from qgis.core import Qgis, QgsProject

    from heritage_qgis import settings
    from heritage_qgis.dialog import SurveyDialog
    from heritage_qgis.results import group_name

    old = settings.backend_path()
    settings.set_backend_path(str(backend_exe))
    project = QgsProject.instance()
    project.clear()
    qgis_iface.messageBar().clear_messages()
    out = tmp_path / "cancelled.gpkg"
    seen: list[str] = []
    try:
        dialog = SurveyDialog(qgis_iface)
        dialog.photos.setFilePath(str(photos36))
        dialog.output.setFilePath(str(out))
        task = dialog.start_run()
        assert task is not None, dialog.status.text()
        task.statusChanged.connect(seen.append)

        def first_batch_written() -> bool:  # the step of file 16 comes after batch 1
            done = [int(m[1]) for t in seen if (m := re.match(r"Classifying photos: (\d+)", t))]
            return bool(done) and max(done) >= 16

        assert _wait_until(first_batch_written, 240), seen[-5:]
        dialog.cancel_run()
        assert _wait_until(lambda: dialog.task is None, 240), "the cancelled run did not end"
    finally:
        settings.set_backend_path(old)
    # the plugin showed the stop with the time left, then the backend's last stages
    stopping = [t for t in seen if t.startswith("Stopping: finishing the photos")]
    assert stopping and any("s left" in t for t in stopping), seen[-8:]
    assert "Grouping photos per building" in seen and "Planning the inspection route" in seen
    # read as a cancel, not a failure
    assert dialog.status.text().startswith("Canceled. Kept in ")
    assert "run again to classify the rest" in dialog.status.text()
    bar = qgis_iface.messageBar()
    assert bar.get_messages(Qgis.MessageLevel.Critical) == []
    assert any(m.startswith("Heritage:Canceled") or "Canceled" in m
               for m in bar.get_messages(Qgis.MessageLevel.Info))  # fmt: skip
    # the GeoPackage holds the kept photos, their buildings and route
    con = sqlite3.connect(out)
    try:
        n_obs = con.execute("SELECT COUNT(*) FROM observations").fetchone()[0]
        unscored = con.execute(
            "SELECT COUNT(*) FROM observations WHERE priority_category IS NULL"
        ).fetchone()[0]
        n_buildings = con.execute("SELECT COUNT(*) FROM flagged_buildings").fetchone()[0]
        n_legs = con.execute("SELECT COUNT(*) FROM inspection_route").fetchone()[0]
    finally:
        con.close()
    assert 8 <= n_obs < 36 and n_obs % 8 == 0  # whole batches, not all photos
    assert unscored == 0
    assert n_buildings >= 1 and n_legs == n_buildings - 1  # one site: Arezzo
    # ... and the partial layers are in the project, styled, in the survey's group
    group = project.layerTreeRoot().findGroup(group_name(out))
    assert group is not None
    layers = {n.layer().customProperty("heritage/layer"): n.layer() for n in group.findLayers()}
    assert layers["observations"].featureCount() == n_obs
    assert layers["flagged_buildings"].featureCount() == n_buildings
    assert layers["observations"].renderer().type() == "categorizedSymbol"
    shutil.rmtree(tmp_path / "cancelled_overlays", ignore_errors=True)


def test_processing_cancel_returns_the_partial_survey_and_loads_it(
    qgis_app, photos36: Path, backend_exe: Path, tmp_path: Path
) -> None:
    """Processing loads nothing after a cancel, so the algorithm loads the partial
    layers itself; the log says what was kept, with no error."""
    from processing.core.Processing import Processing
    from qgis.core import QgsApplication, QgsProcessingFeedback, QgsProject

    from heritage_qgis import settings
    from heritage_qgis.provider import HeritageProvider
    from heritage_qgis.results import group_name

    Processing.initialize()
    import processing

    registry = QgsApplication.processingRegistry()
    added = None
    if registry.providerById("heritage") is None:
        added = HeritageProvider()
        registry.addProvider(added)

    class CancelAfterFirstBatch(QgsProcessingFeedback):
        def __init__(self) -> None:
            super().__init__()
            self.warnings: list[str] = []
            self.errors: list[str] = []
            self.progressChanged.connect(self._maybe_cancel)

        def _maybe_cancel(self, percent: float) -> None:
            if percent >= 8 + 80 * 16 / 36:  # the step of photo 16: batch 1 is done
                self.cancel()

        def pushWarning(self, text: str) -> None:
            self.warnings.append(text)

        def reportError(self, text: str, fatalError: bool = False) -> None:
            self.errors.append(text)

    old = settings.backend_path()
    settings.set_backend_path(str(backend_exe))
    project = QgsProject.instance()
    project.clear()
    out = tmp_path / "cancelled_processing.gpkg"
    feedback = CancelAfterFirstBatch()
    try:
        result = processing.run(
            "heritage:classifysurvey",
            {"INPUT": str(photos36), "DEVICE": 1, "OUTPUT": str(out)},
            feedback=feedback,
        )
    finally:
        settings.set_backend_path(old)
        if added is not None:
            registry.removeProvider(added)
    assert feedback.isCanceled() and feedback.errors == []
    assert len(feedback.warnings) == 1
    kept = result["CLASSIFIED"]
    assert 8 <= kept < 36 and result["BUILDINGS"] >= 1
    assert feedback.warnings[0].startswith(f"Canceled by the user. Kept: {kept} photo(s)")
    group = project.layerTreeRoot().findGroup(group_name(out))
    assert group is not None
    names = {n.layer().customProperty("heritage/layer") for n in group.findLayers()}
    assert {"observations", "flagged_buildings", "inspection_route"} <= names
