"""The plugin installed from its zip into a fresh profile, the backend set through the
settings code path, one survey run through Processing and one through the survey
dialog: both load the same styled layers, in the survey's group, in a projected CRS."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import wait_until as _wait_until
from helpers import plugin_profile

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = "heritage_qgis"

pytestmark = [pytest.mark.qgis, pytest.mark.slow]


@pytest.fixture
def installed_plugin(qgis_app, qgis_iface, tmp_path: Path):
    """The zip of `make plugin`, extracted into a fresh profile and started from there;
    yields the installed package's modules."""
    import qgis.utils

    dist = tmp_path / "dist"
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "build_plugin.py"), "--out-dir", str(dist)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    plugins_dir = tmp_path / "profiles" / "fresh" / "python" / "plugins"
    zip_path = next(dist.glob(f"{PLUGIN}-*.zip"))
    with plugin_profile(zip_path, plugins_dir, qgis_iface):
        assert qgis.utils.loadPlugin(PLUGIN) and qgis.utils.startPlugin(PLUGIN)
        assert Path(sys.modules[PLUGIN].__file__).resolve().is_relative_to(plugins_dir.resolve())
        try:
            import importlib

            yield {
                name: importlib.import_module(f"{PLUGIN}.{name}")
                for name in ("settings", "backend", "dialog", "results", "options")
            }
        finally:
            qgis.utils.unloadPlugin(PLUGIN)


class _LogFeedback:
    """Processing feedback that prints what the algorithm reports (seen when a test fails)."""

    def __new__(cls):
        from qgis.core import QgsProcessingFeedback

        class Printing(QgsProcessingFeedback):
            def reportError(self, error, fatalError=False):
                print("error:", error)

            def pushInfo(self, info):
                print(info)

        return Printing()


def _describe(layer) -> dict:
    """What a user sees of a loaded layer."""
    labels = layer.labeling()
    fields = layer.fields()
    overlay = fields.indexOf("overlay_path")
    table = layer.attributeTableConfig()
    return {
        "name": layer.name(),
        "renderer": layer.renderer().type() if layer.renderer() is not None else None,
        "labels": layer.labelsEnabled(),
        "label_expr": labels.settings().fieldName if labels is not None else None,
        "map_tip": layer.mapTipTemplate(),
        "display": layer.displayExpression(),
        "form_tabs": [t.name() for t in layer.editFormConfig().tabs()],
        "overlay_widget": layer.editorWidgetSetup(overlay).type() if overlay >= 0 else None,
        "columns": [c.name for c in table.columns() if not c.hidden][:6],
        "sort": table.sortExpression(),
        "actions": sorted(a.name() for a in layer.actions().actions()),
    }


def _group_view(project, gpkg: Path, results) -> dict:
    group = project.layerTreeRoot().findGroup(results.group_name(gpkg))
    assert group is not None, f"no group for {gpkg.name}"
    layers = [node.layer() for node in group.findLayers()]
    return {lay.customProperty("heritage/layer"): _describe(lay) for lay in layers}, [
        lay.customProperty("heritage/layer") for lay in layers
    ]


def test_processing_and_dialog_load_the_same_styled_layers(
    installed_plugin,
    qgis_iface,
    exif_gps: Path,
    tiny_model: Path,
    backend_exe: Path,
    tmp_path: Path,
) -> None:
    from qgis.core import QgsCoordinateReferenceSystem, QgsProject, QgsSettings

    settings, backend, dialog_mod, results = (
        installed_plugin[k] for k in ("settings", "backend", "dialog", "results")
    )
    old = QgsSettings().value(backend.SETTING_KEY, "")
    # Settings > Options > Heritage: the path, Test, OK
    page = installed_plugin["options"].HeritageOptionsFactory().createWidget(None)
    page.path.setFilePath(str(backend_exe))
    assert page.run_test(), page.result.text()
    page.apply()
    project = QgsProject.instance()
    project.clear()
    try:
        assert backend.find_backend() == str(backend_exe)
        photos = exif_gps / "gps"
        # 1. Processing, as the Toolbox runs it (layers loaded on completion)
        from processing.core.Processing import Processing

        Processing.initialize()
        import processing

        project.setCrs(QgsCoordinateReferenceSystem("EPSG:4326"))
        by_processing = tmp_path / "processing.gpkg"
        processing.runAndLoadResults(
            "heritage:classifysurvey",
            {"INPUT": str(photos), "MODEL": str(tiny_model), "DEVICE": 1,
             "OUTPUT": str(by_processing)},
            feedback=_LogFeedback(),
        )  # fmt: skip
        assert project.crs().authid() == "EPSG:32632"  # Arezzo's UTM zone
        proc_layers, proc_order = _group_view(project, by_processing, results)
        # 2. the survey dialog's code path
        project.setCrs(QgsCoordinateReferenceSystem("EPSG:4326"))
        by_dialog = tmp_path / "dialog.gpkg"
        dialog = dialog_mod.SurveyDialog(qgis_iface)
        dialog.photos.setFilePath(str(photos))
        dialog.model.setFilePath(str(tiny_model))
        dialog.output.setFilePath(str(by_dialog))
        assert dialog.start_run() is not None, dialog.status.text()
        assert _wait_until(lambda: dialog.task is None, 300), "the dialog's run did not end"
        assert project.crs().authid() == "EPSG:32632"
        dialog_layers, dialog_order = _group_view(project, by_dialog, results)
    finally:
        settings.set_backend_path(str(old) if old else "")
    assert proc_order == dialog_order == [
        "inspection_route", "observations", "flagged_buildings", "invalid_photos"
    ]  # fmt: skip
    assert proc_layers == dialog_layers
    obs = proc_layers["observations"]
    assert obs["renderer"] == "categorizedSymbol"
    assert "overlay_path" in obs["map_tip"] and obs["overlay_widget"] == "ExternalResource"
    for name in ("flagged_buildings", "inspection_route"):
        assert proc_layers[name]["labels"], name
        assert proc_layers[name]["map_tip"], name
    assert proc_layers["flagged_buildings"]["renderer"] == "categorizedSymbol"
    assert project.crs().isGeographic() is False
    # the table starts with what the analyst reads, sorted by priority
    assert obs["columns"] == [
        "file_name", "decision", "priority_category", "priority_score", "p_final", "building_id"
    ]  # fmt: skip
    assert obs["sort"] == '"priority_score"'
    assert obs["actions"] == ["Photo and Grad-CAM"]  # listed in Identify results
    assert proc_layers["flagged_buildings"]["columns"][0] == "visit_order"
    _check_form_and_precision(project, by_dialog, results)


def _check_form_and_precision(project, gpkg: Path, results) -> None:
    """The feature form fits a 1366 x 768 screen with photo and overlay on its first
    tab; probabilities show 3 decimals, not 16."""
    from qgis.core import QgsApplication
    from qgis.gui import QgsAttributeForm

    group = project.layerTreeRoot().findGroup(results.group_name(gpkg))
    obs = next(
        n.layer() for n in group.findLayers()
        if n.layer().customProperty("heritage/layer") == "observations"
    )  # fmt: skip
    feature = next(obs.getFeatures())
    form = QgsAttributeForm(obs, feature)
    hint = form.sizeHint()
    assert hint.width() <= 1366 and hint.height() <= 700, (hint.width(), hint.height())
    first = obs.editFormConfig().tabs()[0]
    names = [c.name() for box in first.children() for c in box.children()]
    assert names[:2] == ["thumbnail_path", "overlay_path"] and "p_final" in names
    idx = obs.fields().indexOf("p_final")
    setup = obs.editorWidgetSetup(idx)
    assert setup.type() == "Range" and setup.config()["Precision"] == 3
    formatter = QgsApplication.fieldFormatterRegistry().fieldFormatter("Range")
    text = formatter.representValue(obs, idx, setup.config(), None, feature["p_final"])
    assert len(text.split(".")[-1]) == 3, text
