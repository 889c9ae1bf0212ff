"""The plugin's toolbar button, menu entry and provider come and go with the plugin;
the survey dialog validates its input and turns a map click into lon,lat."""

from __future__ import annotations

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
    monkeypatch.setattr(qgis_iface, "addPluginToMenu", add_menu)
    monkeypatch.setattr(qgis_iface, "removePluginMenu", remove_menu)
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
        add_menu.assert_called_once_with("&Heritage", action)
        provider = QgsApplication.processingRegistry().providerById("heritage")
        assert provider is not None
        assert {a.name() for a in provider.algorithms()} == {
            "importphotos",
            "classifysurvey",
            "classifyraster",
            "groupbuildings",
            "planroute",
            "trainmodel",
        }
        toolbar = plugin.toolbar
    finally:
        assert qgis.utils.unloadPlugin("heritage_qgis")
    remove_menu.assert_called_once_with("&Heritage", action)
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
