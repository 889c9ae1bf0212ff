"""The plugin's toolbar button, menu entry and provider come and go with the plugin;
the survey dialog validates its input and turns a map click into lon,lat."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from unittest.mock import MagicMock

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.qgis


def _on_path() -> None:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))


def _declare_plugin() -> None:
    import qgis.utils

    _on_path()
    if "heritage_qgis" not in qgis.utils.available_plugins:
        qgis.utils.available_plugins.append("heritage_qgis")


def test_toolbar_menu_and_provider_added_and_removed(qgis_app, qgis_iface, monkeypatch) -> None:
    import qgis.utils
    from qgis.core import QgsApplication

    add_menu, remove_menu = MagicMock(), MagicMock()
    add_page, remove_page = MagicMock(), MagicMock()
    monkeypatch.setattr(qgis_iface, "addPluginToMenu", add_menu)
    monkeypatch.setattr(qgis_iface, "removePluginMenu", remove_menu)
    monkeypatch.setattr(qgis_iface, "registerOptionsWidgetFactory", add_page, raising=False)
    monkeypatch.setattr(qgis_iface, "unregisterOptionsWidgetFactory", remove_page, raising=False)
    qgis.utils.iface = qgis_iface
    _declare_plugin()
    assert qgis.utils.loadPlugin("heritage_qgis")
    assert qgis.utils.startPlugin("heritage_qgis")
    try:
        plugin = qgis.utils.plugins["heritage_qgis"]
        action = plugin.action
        assert action is not None and not action.icon().isNull()
        assert action in plugin.toolbar.actions()
        assert plugin.toolbar.objectName() == "HeritageToolbar"
        settings_action = plugin.settings_action
        review_action = plugin.review_action
        assert review_action in plugin.toolbar.actions()
        assert add_menu.call_args_list == [
            (("&Heritage", action),),
            (("&Heritage", review_action),),
            (("&Heritage", settings_action),),
        ]
        factory = plugin.options_factory
        add_page.assert_called_once_with(factory)
        assert factory.title() == "Heritage"
        provider = QgsApplication.processingRegistry().providerById("heritage")
        assert provider is not None
        assert {a.name() for a in provider.algorithms()} == {
            "importphotos",
            "classifysurvey",
            "classifyraster",
            "groupbuildings",
            "planroute",
            "trainmodel",
            "inspectionreport",
            "inspectionatlas",
            "fieldpackage",
        }
        toolbar = plugin.toolbar
    finally:
        assert qgis.utils.unloadPlugin("heritage_qgis")
    assert {c.args[1] for c in remove_menu.call_args_list} == {
        action,
        review_action,
        settings_action,
    }
    remove_page.assert_called_once_with(factory)
    assert action not in toolbar.actions()
    assert plugin.action is None and plugin.toolbar is None
    assert QgsApplication.processingRegistry().providerById("heritage") is None


def test_dialog_rejects_bad_input_with_a_clear_message(qgis_app, qgis_iface, tmp_path) -> None:
    _on_path()
    from heritage_qgis.dialog import SurveyDialog

    dialog = SurveyDialog(qgis_iface)
    dialog.photos.setFilePath(str(tmp_path / "missing"))
    dialog.start.setText("43.4,200")
    dialog.output.setFilePath(str(tmp_path / "survey.shp"))
    assert dialog.start_run() is None  # nothing started
    text = dialog.status.text()
    assert "Photo folder not found" in text
    assert "Start point '43.4,200' is outside the world" in text
    assert "must be a GeoPackage" in text
    assert dialog.run_button.isEnabled()


def test_dialog_start_picked_on_the_map_becomes_lon_lat(qgis_app, qgis_iface) -> None:
    _on_path()
    from qgis.core import QgsCoordinateReferenceSystem, QgsPointXY
    from qgis.gui import QgsMapToolEmitPoint

    from heritage_qgis.dialog import SurveyDialog

    canvas = qgis_iface.mapCanvas()
    canvas.setDestinationCrs(QgsCoordinateReferenceSystem("EPSG:3857"))
    dialog = SurveyDialog(qgis_iface)
    dialog.pick_start()
    assert isinstance(canvas.mapTool(), QgsMapToolEmitPoint)
    # Arezzo in web mercator, as a click on the canvas would give it
    dialog._map_tool.canvasClicked.emit(QgsPointXY(1323060.0, 5383230.0), 1)
    lon, lat = (float(v) for v in dialog.start.text().split(","))
    assert lon == pytest.approx(11.885, abs=1e-3)
    assert lat == pytest.approx(43.467, abs=1e-3)
    assert canvas.mapTool() is not dialog._map_tool


FAILING_BACKEND = """#!{python}
import json, sys
if "--help" in sys.argv:
    print("Usage: heritage", sys.argv[1])
    sys.exit(0)
print(json.dumps({{"event": "start", "stage": "Classifying photos", "total": 2}}), flush=True)
print(json.dumps({{"event": "step", "stage": "Classifying photos", "done": 1, "total": 2,
                  "percent": 50.0}}), flush=True)
print("Error: the model folder is corrupt (sha256 mismatch): re-train or re-download it",
      file=sys.stderr)
sys.exit(1)
"""


def test_dialog_shows_the_backend_reason_in_the_message_bar(
    qgis_app, qgis_iface, tmp_path, monkeypatch
) -> None:
    _on_path()
    from qgis.core import Qgis
    from qgis.PyQt.QtCore import QEventLoop, QTimer

    from heritage_qgis import backend
    from heritage_qgis.dialog import SurveyDialog

    exe = tmp_path / "heritage"
    exe.write_text(FAILING_BACKEND.format(python=sys.executable))
    exe.chmod(0o755)
    monkeypatch.setenv(backend.ENV_VAR, str(exe))
    qgis_iface.messageBar().clear_messages()
    dialog = SurveyDialog(qgis_iface)
    dialog.photos.setFilePath(str(tmp_path))
    dialog.start.setText("11.8851,43.4674")
    dialog.output.setFilePath(str(tmp_path / "survey.gpkg"))
    task = dialog.start_run()
    assert task is not None
    assert task.args[:4] == ["classify", str(tmp_path), "-o", str(tmp_path / "survey.gpkg")]
    assert "--start" in task.args and "11.8851000,43.4674000" in task.args
    assert not dialog.run_button.isEnabled() and dialog.cancel_button.isEnabled()
    loop = QEventLoop()
    poll = QTimer()
    poll.timeout.connect(lambda: loop.quit() if dialog.run_button.isEnabled() else None)
    poll.start(20)
    QTimer.singleShot(20000, loop.quit)
    loop.exec()
    poll.stop()
    assert dialog.run_button.isEnabled(), "the task did not finish"
    reason = "the model folder is corrupt (sha256 mismatch): re-train or re-download it"
    assert reason in dialog.status.text()
    critical = qgis_iface.messageBar().get_messages(Qgis.MessageLevel.Critical)
    assert any(reason in m for m in critical)


def test_plugin_modules_never_import_the_backend_or_torch() -> None:
    import subprocess

    code = (
        f"import sys; sys.path.insert(0, {str(ROOT)!r})\n"
        "import heritage_qgis.plugin, heritage_qgis.algorithms, heritage_qgis.dialog\n"
        "heritage_qgis.algorithms.all_algorithms()\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('heritage', 'torch'))\n"
        "print(bad); sys.exit(1 if bad else 0)\n"
    )
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_basemap_is_optional_off_by_default_and_added_once_at_the_bottom(
    qgis_app, qgis_iface, qgis_new_project
) -> None:
    _on_path()
    from qgis.core import QgsVectorLayer

    from heritage_qgis.dialog import SurveyDialog
    from heritage_qgis.results import OSM_NAME, add_basemap

    assert not SurveyDialog(qgis_iface).basemap.isChecked()  # no network assumed
    points = QgsVectorLayer("Point?crs=EPSG:4326", "points", "memory")
    qgis_new_project.addMapLayer(points)
    layer = add_basemap(qgis_new_project)
    assert layer is not None and layer.isValid() and layer.providerType() == "wms"
    assert add_basemap(qgis_new_project) is layer
    names = [n.name() for n in qgis_new_project.layerTreeRoot().children()]
    assert names == ["points", OSM_NAME]


def test_photo_action_opens_the_feature_form_of_the_identified_feature(
    qgis_app, qgis_iface, qgis_new_project, monkeypatch
) -> None:
    """The action Identify lists under each observation: its code, with the layer and
    feature filled in, opens that feature's form (photo next to overlay)."""
    _on_path()
    import qgis.utils
    from qgis.core import (
        QgsExpression,
        QgsExpressionContext,
        QgsExpressionContextUtils,
        QgsFeature,
        QgsVectorLayer,
    )

    from heritage_qgis.layers import PHOTO_ACTION, add_photo_action

    layer = QgsVectorLayer("Point?crs=EPSG:4326&field=file_name:string", "obs", "memory")
    feature = QgsFeature(layer.fields())
    feature["file_name"] = "a.jpg"
    layer.dataProvider().addFeatures([feature])
    qgis_new_project.addMapLayer(layer)
    add_photo_action(layer)
    add_photo_action(layer)  # once only
    actions = layer.actions().actions()
    assert [a.name() for a in actions] == [PHOTO_ACTION]
    saved = next(layer.getFeatures())
    context = QgsExpressionContext(QgsExpressionContextUtils.globalProjectLayerScopes(layer))
    context.setFeature(saved)
    code = QgsExpression.replaceExpressionText(actions[0].command(), context)
    opened = []
    monkeypatch.setattr(qgis.utils, "iface", qgis_iface)
    monkeypatch.setattr(
        qgis_iface,
        "openFeatureForm",
        lambda lay, f, *a: opened.append((lay, f.id())),
        raising=False,
    )
    exec(compile(code, "action", "exec"), {})
    assert opened == [(layer, saved.id())]
