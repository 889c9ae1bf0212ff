"""The plugin object QGIS creates: registers the Processing provider, toolbar and menu."""

from __future__ import annotations

from qgis.core import Qgis, QgsApplication, QgsMessageLog

LOG_TAG = "Heritage"


def log(message: str, level: Qgis.MessageLevel = Qgis.MessageLevel.Info) -> None:
    """Write to the "Heritage" tab of the QGIS message log."""
    QgsMessageLog.logMessage(message, LOG_TAG, level)


class HeritagePlugin:
    """Plugin entry point (initGui/unload are called by QGIS)."""

    def __init__(self, iface) -> None:
        self.iface = iface
        self.provider = None

    def initProcessing(self) -> None:
        """Register the Heritage Processing provider (also used by qgis_process)."""
        from .provider import HeritageProvider

        self.provider = HeritageProvider()
        QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self) -> None:
        """Create GUI elements; QGIS calls this once after loading the plugin."""
        self.initProcessing()
        log("Heritage plugin loaded")

    def unload(self) -> None:
        """Remove everything the plugin added."""
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
