"""What every part of the plugin uses: the "Heritage" message log and the plugin icon."""

from __future__ import annotations

from pathlib import Path

from qgis.core import Qgis, QgsMessageLog

LOG_TAG = "Heritage"
PLUGIN_DIR = Path(__file__).resolve().parent


def log(message: str, level: Qgis.MessageLevel = Qgis.MessageLevel.Info) -> None:
    """Write to the "Heritage" tab of the QGIS message log."""
    QgsMessageLog.logMessage(message, LOG_TAG, level)


def icon_path() -> str:
    """The plugin icon: ``icon.svg`` in the installed plugin, else the source tree's."""
    for path in (
        PLUGIN_DIR / "icon.svg",
        PLUGIN_DIR.parent / "resources" / "icons" / "heritage.svg",
    ):
        if path.is_file():
            return str(path)
    return ""
