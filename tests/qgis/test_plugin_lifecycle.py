"""The plugin loads, starts and unloads cleanly through qgis.utils in a headless QGIS."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.qgis


def test_plugin_loads_starts_and_unloads(qgis_app, qgis_iface):
    import qgis.utils
    from qgis.core import QgsApplication

    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    qgis.utils.iface = qgis_iface
    # In the source tree metadata.txt sits at the repository root (the packaging step puts it
    # inside the plugin zip), so QGIS' folder scan cannot discover the plugin: declare it.
    if "heritage_qgis" not in qgis.utils.available_plugins:
        qgis.utils.available_plugins.append("heritage_qgis")
    assert qgis.utils.loadPlugin("heritage_qgis")
    assert qgis.utils.startPlugin("heritage_qgis")
    try:
        assert "heritage_qgis" in qgis.utils.active_plugins
        registry = QgsApplication.processingRegistry()
        assert registry.providerById("heritage") is not None
    finally:
        assert qgis.utils.unloadPlugin("heritage_qgis")
    assert "heritage_qgis" not in qgis.utils.active_plugins
    assert QgsApplication.processingRegistry().providerById("heritage") is None
