"""End to end through the plugin: classify a survey with processing.run, load the styled
layers into a project, render them to a PNG, and cancel a running backend task."""

from __future__ import annotations

import os
import sqlite3
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT
from conftest import wait_until as _wait_until
from helpers import heritage_provider

pytestmark = pytest.mark.qgis

#: where the rendered map goes for people to look at (copied to docs/img by hand)
RENDER_OUT = ROOT / "build" / "test-output" / "plugin_render.png"


def _has(command: str) -> bool:
    # imported here: qgis.utils.unloadPlugin (other tests) drops heritage_qgis.* from
    # sys.modules, so a module-level import could hold classes of a stale copy
    from heritage_qgis import backend

    try:
        return backend.has_command(command)
    except backend.BackendNotFoundError:
        return False


needs_classify = pytest.mark.skipif(
    not _has("classify"), reason="`heritage classify` is not available in the backend yet"
)


@pytest.fixture(scope="module")
def provider(qgis_app):
    with heritage_provider() as prov:
        yield prov


@pytest.fixture(scope="module")
def classified(qgis_app, provider, exif_gps: Path, tiny_model: Path, tmp_path_factory):
    """``processing.run('heritage:classifysurvey')`` on the whole exif-gps corpus."""
    from processing.core.Processing import Processing

    Processing.initialize()
    import processing

    out = tmp_path_factory.mktemp("plugin_survey") / "survey.gpkg"
    params = {
        "INPUT": str(exif_gps),
        "MODEL": str(tiny_model),
        "DEVICE": 1,  # cpu
        "OUTPUT": str(out),
    }
    return out, processing.run("heritage:classifysurvey", params)


@pytest.mark.slow
@needs_classify
def test_classify_returns_layers_with_expected_counts(classified) -> None:
    from qgis.core import QgsVectorLayer

    out, result = classified
    assert result["OUTPUT"] == str(out)
    counts = {}
    for key in ("OBSERVATIONS", "FLAGGED_BUILDINGS", "INSPECTION_ROUTE", "INVALID_PHOTOS"):
        layer = QgsVectorLayer(result[key], key, "ogr")
        assert layer.isValid(), key
        counts[key] = layer.featureCount()
    # 36 images: 17 with GPS, 19 without (kept, status no_location), none unreadable
    assert counts["OBSERVATIONS"] == 36
    assert counts["INVALID_PHOTOS"] == 0
    assert result["CLASSIFIED"] == 36 and result["FLAGGED"] == 36 and result["SKIPPED"] == 0
    assert counts["FLAGGED_BUILDINGS"] == result["BUILDINGS"] >= 2
    # an open path per site (buildings more than 2 km apart form separate sites)
    buildings = QgsVectorLayer(result["FLAGGED_BUILDINGS"], "b", "ogr")
    n_sites = len({f["site"] for f in buildings.getFeatures()})
    assert n_sites >= 1
    assert counts["INSPECTION_ROUTE"] == counts["FLAGGED_BUILDINGS"] - n_sites
    obs = QgsVectorLayer(result["OBSERVATIONS"], "obs", "ogr")
    row = next(obs.getFeatures())
    assert row["model_id"] == "tiny-plugin" and row["model_version"] == "0.0.1"
    assert (out.parent / row["overlay_path"]).is_file()
    assert (out.parent / row["thumbnail_path"]).is_file()


@pytest.mark.slow
@needs_classify
def test_survey_layers_load_styled_with_counts_and_image_form(
    qgis_app, qgis_new_project, classified
) -> None:
    from qgis.core import QgsEditFormConfig

    from heritage_qgis.results import load_survey

    out, _ = classified
    layers = load_survey(out, qgis_new_project)
    assert set(layers) == {
        "observations",
        "flagged_buildings",
        "inspection_route",
        "invalid_photos",
    }
    group = qgis_new_project.layerTreeRoot().findGroup("Heritage survey: survey")
    assert group is not None and len(group.findLayerIds()) == 4
    obs = layers["observations"]
    assert obs.name() == "Observations (36 photos, 36 flagged), 19 without position"
    assert layers["invalid_photos"].name() == "Skipped photos (0)"
    assert layers["flagged_buildings"].name().startswith("Flagged buildings (")
    assert layers["inspection_route"].name().endswith(" m)")
    assert obs.renderer().type() == "categorizedSymbol"  # the stored default style
    assert "overlay_path" in obs.mapTipTemplate()
    setup = obs.editorWidgetSetup(obs.fields().indexOf("overlay_path"))
    assert setup.type() == "ExternalResource"
    assert setup.config()["DefaultRoot"] == str(out.parent.resolve())
    assert setup.config()["DocumentViewer"] == 1
    assert obs.attributeDisplayName(obs.fields().indexOf("overlay_path")) == "Grad-CAM overlay"
    form = obs.editFormConfig()
    assert form.layout() == QgsEditFormConfig.EditorLayout.TabLayout
    first = form.tabs()[0]
    assert [c.name() for c in first.children()] == [
        "Photo and Grad-CAM",
        "Scores, priority and model",
    ]
    assert [c.name() for c in first.children()[0].children()] == ["thumbnail_path", "overlay_path"]
    # loading again replaces the group instead of duplicating it
    load_survey(out, qgis_new_project)
    assert len(qgis_new_project.mapLayers()) == 4


def _render(layers, extent, size=(800, 600)):
    from qgis.core import QgsCoordinateReferenceSystem, QgsMapRendererSequentialJob, QgsMapSettings
    from qgis.PyQt.QtCore import QSize
    from qgis.PyQt.QtGui import QColor

    settings = QgsMapSettings()
    settings.setLayers(layers)
    settings.setDestinationCrs(QgsCoordinateReferenceSystem("EPSG:3857"))
    settings.setOutputSize(QSize(*size))
    settings.setBackgroundColor(QColor("white"))
    settings.setExtent(settings.layerExtentToOutputExtent(layers[0], extent))
    job = QgsMapRendererSequentialJob(settings)
    job.start()
    job.waitForFinished()
    return job.renderedImage()


def _count_colour(image, hex_colour: str, tol: int = 12) -> int:
    from qgis.PyQt.QtGui import QColor

    target = QColor(hex_colour)
    n = 0
    for y in range(0, image.height()):
        for x in range(0, image.width()):
            c = QColor(image.pixel(x, y))
            if (
                abs(c.red() - target.red()) <= tol
                and abs(c.green() - target.green()) <= tol
                and abs(c.blue() - target.blue()) <= tol
            ):
                n += 1
    return n


@pytest.mark.slow
@needs_classify
def test_styled_layers_render_with_visible_flagged_points(
    qgis_app, qgis_new_project, classified, tmp_path: Path
) -> None:
    from qgis.core import QgsFeatureRequest, QgsRectangle

    from heritage_qgis.results import load_survey

    out, _ = classified
    layers = load_survey(out, qgis_new_project)
    obs = layers["observations"]
    # the Arezzo photos (DSCN*): a town-sized view with buildings and the route
    request = QgsFeatureRequest().setFilterExpression("\"file_name\" LIKE 'DSCN%'")
    extent = QgsRectangle()
    cats = set()
    for f in obs.getFeatures(request):
        extent.combineExtentWith(f.geometry().boundingBox())
        cats.add(f["priority_category"])
    assert not extent.isEmpty()
    extent.grow(max(extent.width(), extent.height()) * 0.15)
    colours = {c.value(): c.symbol().color().name() for c in obs.renderer().categories()}
    points_only = _render([obs], extent)
    assert sum(_count_colour(points_only, colours[c]) for c in cats) > 20
    image = _render(
        [layers["inspection_route"], obs, layers["flagged_buildings"]], extent, (1000, 750)
    )
    RENDER_OUT.parent.mkdir(parents=True, exist_ok=True)
    assert image.save(str(RENDER_OUT), "PNG")
    assert image.save(str(tmp_path / "plugin_render.png"), "PNG")
    assert sum(_count_colour(image, colours[c]) for c in cats) > 20
    assert _count_colour(image, "#ffffff", tol=0) < image.width() * image.height()


def test_task_reports_progress_and_cancel_stops_the_backend(
    qgis_app, exif_gps: Path, tmp_path: Path
) -> None:
    from qgis.core import QgsApplication, QgsVectorLayer

    from heritage_qgis.task import BackendTask

    # the backend module the task itself uses: QGIS' unloadPlugin (other tests) drops
    # the modules imported while the plugin loaded, so a fresh import may differ
    backend = sys.modules[BackendTask.__module__].backend
    photos = tmp_path / "many"
    photos.mkdir()
    src = exif_gps / "gps" / "DSCN0010.jpg"
    for i in range(400):  # duplicates: each one a row of invalid_photos
        os.symlink(src, photos / f"p{i:04d}.jpg")
    out = tmp_path / "photos.gpkg"
    done: list[BackendTask] = []
    task = BackendTask(
        "test",
        ["photos", str(photos), "-o", str(out), "--batch-size", "2", "--json-progress"],
        on_done=done.append,
    )
    seen: list[float] = []
    task.progressChanged.connect(seen.append)
    QgsApplication.taskManager().addTask(task)
    assert _wait_until(lambda: any(p >= 3.0 for p in seen), 60), "no progress reported"
    t0 = time.monotonic()
    task.cancel()
    assert _wait_until(lambda: bool(done), 15), "the task did not stop"
    stopped_s = time.monotonic() - t0
    assert stopped_s < 5.0
    assert isinstance(task.error, backend.BackendCancelled)
    assert task.error.returncode != 0
    # the GeoPackage is valid and holds what was written before the cancel (not all 400)
    con = sqlite3.connect(out)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()
    table = QgsVectorLayer(f"{out}|layername=invalid_photos", "invalid", "ogr")
    assert table.isValid()
    assert 1 <= table.featureCount() < 399
