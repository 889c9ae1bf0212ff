"""Headless QGIS: the inspection atlas (a print layout exported to PDF, one page per
flagged building, saved in the project) and the QField field package (relative paths,
image widgets that load the photos)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import ROOT
from helpers import arezzo_survey, heritage_provider

pytestmark = pytest.mark.qgis


@pytest.fixture(scope="module")
def survey_gpkg(exif_gps: Path, flag_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 9 Arezzo photos classified by a random model that flags every photo."""
    tmp = tmp_path_factory.mktemp("inspection")
    return arezzo_survey(tmp, tmp / "survey" / "survey.gpkg", exif_gps, flag_model)


@pytest.fixture(scope="module")
def provider(qgis_app):
    from processing.core.Processing import Processing

    Processing.initialize()
    with heritage_provider() as prov:
        yield prov


def _pdf_pages(pdf: Path) -> int:
    out = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True)
    return int(re.search(r"^Pages:\s+(\d+)", out.stdout, flags=re.M).group(1))


def test_atlas_one_page_per_building_saved_in_the_project(
    qgis_app, qgis_new_project, provider, survey_gpkg: Path, tmp_path: Path
) -> None:
    import processing
    from qgis.core import QgsLayoutItemPicture, QgsProject, QgsVectorLayer

    buildings = QgsVectorLayer(f"{survey_gpkg}|layername=flagged_buildings", "b", "ogr")
    n_buildings = buildings.featureCount()
    pdf = tmp_path / "atlas.pdf"
    result = processing.run(
        "heritage:inspectionatlas", {"SURVEY": str(survey_gpkg), "OUTPUT": str(pdf)}
    )
    assert result["PAGES"] == n_buildings
    assert _pdf_pages(pdf) == n_buildings
    subprocess.run(["pdftoppm", "-r", "30", "-png", "-f", "1", "-l", "1", str(pdf),
                    str(tmp_path / "page")], check=True)  # fmt: skip
    assert list(tmp_path.glob("page-*.png"))

    project = QgsProject.instance()
    layout = project.layoutManager().layoutByName(result["LAYOUT"])
    assert layout is not None and layout.atlas().enabled()
    assert layout.atlas().coverageLayer().source().endswith("layername=flagged_buildings")
    # page k shows the strongest flagged photo of the k-th building of the round
    atlas = layout.atlas()
    assert atlas.beginRender()
    pictures = [i for i in layout.items() if isinstance(i, QgsLayoutItemPicture)]
    obs = QgsVectorLayer(f"{survey_gpkg}|layername=observations", "o", "ogr")
    for k in range(atlas.count()):
        assert atlas.seekTo(k)
        bid = atlas.layout().reportContext().feature()["building_id"]
        visit = atlas.layout().reportContext().feature()["visit_order"]
        assert visit == k + 1
        best = max(
            (f for f in obs.getFeatures() if f["building_id"] == bid and f["flagged"]),
            key=lambda f: f["priority_score"],
        )
        for pic in pictures:
            pic.refreshDataDefinedProperty()
        paths = {Path(p.evaluatedPath()).name for p in pictures if p.evaluatedPath()}
        assert Path(best["thumbnail_path"]).name in paths
        assert Path(best["overlay_path"]).name in paths
    atlas.endRender()

    qgz = tmp_path / "analyst.qgz"
    assert project.write(str(qgz))
    again = QgsProject()
    assert again.read(str(qgz))
    saved = again.layoutManager().layoutByName(result["LAYOUT"])
    assert saved is not None and saved.atlas().enabled()
    assert saved.atlas().coverageLayer() is not None
    assert saved.atlas().updateFeatures() == n_buildings

    # a second run replaces the layout instead of adding another
    processing.run("heritage:inspectionatlas", {"SURVEY": str(survey_gpkg), "OUTPUT": str(pdf)})
    names = [lay.name() for lay in project.layoutManager().layouts()]
    assert names.count(result["LAYOUT"]) == 1


def test_atlas_refuses_a_survey_without_flagged_buildings(
    qgis_app, qgis_new_project, survey_gpkg: Path, tmp_path: Path
) -> None:
    from qgis.core import QgsProject

    from heritage.survey.pipeline import connect_gpkg, regroup_survey
    from heritage_qgis.atlas import create_inspection_atlas

    copy = tmp_path / "none.gpkg"
    shutil.copy(survey_gpkg, copy)
    con = connect_gpkg(copy)
    with con:
        con.execute("UPDATE observations SET flagged = 0")
    con.close()
    regroup_survey(copy)
    with pytest.raises(ValueError, match="no flagged building"):
        create_inspection_atlas(QgsProject.instance(), copy, tmp_path / "a.pdf")
    assert not (tmp_path / "a.pdf").exists()


def test_field_package_is_relative_and_its_photo_widgets_load_images(
    qgis_app, survey_gpkg: Path, tmp_path: Path
) -> None:
    from qgis.core import QgsProject
    from qgis.gui import QgsGui
    from qgis.PyQt.QtWidgets import QLabel

    from heritage_qgis.fieldpkg import RELATIVE_TO_PROJECT, write_field_package

    qgz = write_field_package(survey_gpkg, tmp_path / "pkg")
    with zipfile.ZipFile(qgz) as z:
        xml = z.read(next(n for n in z.namelist() if n.endswith(".qgs"))).decode()
    sources = [s for s in re.findall(r"<datasource>([^<]*)</datasource>", xml) if s]
    assert sources and all(s.startswith("./survey.gpkg|layername=") for s in sources)
    assert str(tmp_path) not in xml and str(survey_gpkg.parent) not in xml

    moved = tmp_path / "tablet" / "survey_package"  # copied elsewhere, as onto a tablet
    moved.parent.mkdir()
    shutil.move(str(tmp_path / "pkg"), moved)
    project = QgsProject.instance()
    project.clear()
    assert project.read(str(moved / "survey.qgz"))
    layers = {lyr.source().split("layername=")[-1]: lyr for lyr in project.mapLayers().values()}
    assert {"observations", "flagged_buildings", "inspection_route"} <= set(layers)
    assert all(lyr.isValid() for lyr in layers.values())
    obs = layers["observations"]
    form = obs.editFormConfig()
    images = form.tabs()[0].children()[0]  # the first tab's first box: photo and overlay
    first_tab = [c.name() for c in images.children()]
    assert first_tab == ["thumbnail_path", "overlay_path"]

    QgsGui.editorWidgetRegistry().initEditors()
    for field in ("thumbnail_path", "overlay_path"):
        idx = obs.fields().indexOf(field)
        setup = obs.editorWidgetSetup(idx)
        assert setup.type() == "ExternalResource"
        assert setup.config()["RelativeStorage"] == RELATIVE_TO_PROJECT
        assert setup.config()["DocumentViewer"] == 1 and form.readOnly(idx)
        for feature in obs.getFeatures():
            assert (moved / feature[field]).is_file()
        wrapper = QgsGui.editorWidgetRegistry().create(
            "ExternalResource", obs, idx, setup.config(), None, None
        )
        widget = wrapper.widget()
        viewer = next(
            lab for lab in widget.findChildren(QLabel)
            if lab.metaObject().className() == "QgsPixmapLabel"
        )  # fmt: skip
        feature = next(obs.getFeatures())
        wrapper.setValues(feature[field], [])
        assert viewer.pixmap() is not None and not viewer.pixmap().isNull()
        wrapper.setValues("survey_overlays/not_there.png", [])
        assert viewer.pixmap() is None or viewer.pixmap().isNull()
    project.clear()


def test_field_package_refuses_the_survey_folder(qgis_app, survey_gpkg: Path) -> None:
    from heritage_qgis.fieldpkg import write_field_package

    with pytest.raises(ValueError, match="other than"):
        write_field_package(survey_gpkg, survey_gpkg.parent)


def test_field_package_script(qgis_app, survey_gpkg: Path, tmp_path: Path, capsys) -> None:
    from conftest import load_script

    script = load_script("field_package")
    assert script.main([str(survey_gpkg), str(tmp_path / "pkg")]) == 0
    assert (tmp_path / "pkg" / "survey.qgz").is_file()
    assert (tmp_path / "pkg" / "survey.gpkg").is_file()
    assert "open survey.qgz in QField" in capsys.readouterr().out
    assert script.main([str(tmp_path / "missing.gpkg"), str(tmp_path / "x")]) == 1
    assert capsys.readouterr().err.startswith("Error: survey GeoPackage not found")


def test_report_algorithm_runs_the_backend(
    provider, survey_gpkg: Path, tmp_path: Path, monkeypatch
) -> None:
    import processing

    import heritage
    from heritage_qgis import backend

    # the backend of this checkout (the runner drops PYTHONPATH, so set it in a wrapper)
    wrapper = tmp_path / "heritage"
    wrapper.write_text(
        f"#!/bin/sh\nPYTHONPATH={Path(heritage.__file__).parents[1]} "
        f'exec {sys.executable} -m heritage.cli "$@"\n'
    )
    wrapper.chmod(0o755)
    monkeypatch.setenv(backend.ENV_VAR, str(wrapper))
    html, pdf = tmp_path / "out" / "report.html", tmp_path / "out" / "report.pdf"
    result = processing.run(
        "heritage:inspectionreport",
        {"SURVEY": str(survey_gpkg), "OUTPUT": str(html), "PDF": str(pdf), "CSV": True},
    )
    buildings = _n_buildings(survey_gpkg)
    assert result["BUILDINGS"] == buildings and result["PAGES"] == _pdf_pages(pdf)
    assert html.is_file() and (tmp_path / "out" / "report.csv").is_file()
    assert html.read_text(encoding="utf-8").count('<section class="building"') == buildings


def _n_buildings(gpkg: Path) -> int:
    from qgis.core import QgsVectorLayer

    return QgsVectorLayer(f"{gpkg}|layername=flagged_buildings", "b", "ogr").featureCount()


def test_inspection_algorithms_check_their_survey(provider, tmp_path: Path) -> None:
    from qgis.core import QgsApplication, QgsProcessingContext, QgsProject

    from heritage.survey.photos import import_photos

    photos_only = tmp_path / "photos.gpkg"
    import_photos([ROOT / "resources" / "demo" / "photos"], photos_only)
    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    registry = QgsApplication.processingRegistry()
    for alg_id, out in (
        ("heritage:inspectionatlas", str(tmp_path / "a.pdf")),
        ("heritage:fieldpackage", str(tmp_path / "pkg")),
        ("heritage:inspectionreport", str(tmp_path / "r.html")),
    ):
        alg = registry.createAlgorithmById(alg_id)
        ok, msg = alg.checkParameterValues(
            {"SURVEY": str(tmp_path / "none.gpkg"), "OUTPUT": out}, context
        )
        assert not ok and "does not exist" in msg, alg_id
        ok, msg = alg.checkParameterValues({"SURVEY": str(photos_only), "OUTPUT": out}, context)
        assert not ok and "not a classified survey" in msg, alg_id
