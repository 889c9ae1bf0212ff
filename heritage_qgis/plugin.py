"""The plugin object QGIS creates: registers the Processing provider, toolbar and menu."""

from __future__ import annotations

from qgis.core import QgsApplication
from qgis.PyQt.QtCore import QCoreApplication
from qgis.PyQt.QtGui import QIcon
from qgis.PyQt.QtWidgets import QAction

from .common import icon_path, log


class HeritagePlugin:
    """Plugin entry point (initGui/unload are called by QGIS)."""

    MENU = "&Heritage"

    def __init__(self, iface) -> None:
        self.iface = iface
        self.provider = None
        self.action: QAction | None = None
        self.toolbar = None
        self.dialog = None
        self.options_factory = None
        self.settings_action: QAction | None = None
        self.review_action: QAction | None = None
        self.review_dock = None

    @staticmethod
    def tr(text: str) -> str:
        """Translate ``text`` (context "Heritage")."""
        return QCoreApplication.translate("Heritage", text)

    def initProcessing(self) -> None:
        """Register the Heritage Processing provider (also used by qgis_process)."""
        from .provider import HeritageProvider

        if self.provider is None:
            self.provider = HeritageProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self) -> None:
        """Create GUI elements; QGIS calls this once after loading the plugin."""
        self.initProcessing()
        self.action = QAction(
            QIcon(icon_path()), self.tr("Classify a photo survey..."), self.iface.mainWindow()
        )
        self.action.setObjectName("heritageSurveyAction")
        self.action.setToolTip(
            self.tr("Heritage: classify survey photos and map the buildings that need conservation")
        )
        self.action.triggered.connect(self.show_dialog)
        self.toolbar = self.iface.addToolBar(self.tr("Heritage"))
        self.toolbar.setObjectName("HeritageToolbar")
        self.toolbar.addAction(self.action)
        self.iface.addPluginToMenu(self.MENU, self.action)
        self.review_action = QAction(self.tr("Review findings..."), self.iface.mainWindow())
        self.review_action.setObjectName("heritageReviewAction")
        self.review_action.setToolTip(
            self.tr("Heritage: confirm or reject each finding of a survey, add missed defects")
        )
        self.review_action.triggered.connect(self.show_review)
        self.toolbar.addAction(self.review_action)
        self.iface.addPluginToMenu(self.MENU, self.review_action)
        from .options import PAGE_TITLE, HeritageOptionsFactory

        self.options_factory = HeritageOptionsFactory(QIcon(icon_path()))
        self.iface.registerOptionsWidgetFactory(self.options_factory)
        self.settings_action = QAction(self.tr("Backend settings..."), self.iface.mainWindow())
        self.settings_action.setObjectName("heritageSettingsAction")
        self.settings_action.triggered.connect(
            lambda: self.iface.showOptionsDialog(self.iface.mainWindow(), currentPage=PAGE_TITLE)
        )
        self.iface.addPluginToMenu(self.MENU, self.settings_action)
        log("Heritage plugin loaded")

    def show_dialog(self) -> None:
        """Open (or raise) the survey dialog."""
        from .dialog import SurveyDialog

        if self.dialog is None:
            self.dialog = SurveyDialog(self.iface, self.iface.mainWindow())
        self.dialog.show()
        self.dialog.raise_()
        self.dialog.activateWindow()

    def show_review(self) -> None:
        """Open (or raise) the review panel, on the survey of the active layer if any."""
        from qgis.PyQt.QtCore import Qt

        from .review import ReviewDock

        if self.review_dock is None:
            self.review_dock = ReviewDock(self.iface, self.iface.mainWindow())
            self.iface.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.review_dock)
        layer = self.iface.activeLayer()
        source = layer.source().split("|", 1)[0] if layer is not None else ""
        if source.lower().endswith(".gpkg") and source != self.review_dock.gpkg:
            self.review_dock.open_survey(source)
        self.review_dock.show()
        self.review_dock.raise_()

    def unload(self) -> None:
        """Remove everything the plugin added."""
        if self.review_dock is not None:
            if self.review_dock.task is not None:
                self.review_dock.task.cancel()
            self.iface.removeDockWidget(self.review_dock)
            self.review_dock.deleteLater()
            self.review_dock = None
        if self.review_action is not None:
            self.iface.removePluginMenu(self.MENU, self.review_action)
            if self.toolbar is not None:
                self.toolbar.removeAction(self.review_action)
            self.review_action.deleteLater()
            self.review_action = None
        if self.settings_action is not None:
            self.iface.removePluginMenu(self.MENU, self.settings_action)
            self.settings_action.deleteLater()
            self.settings_action = None
        if self.options_factory is not None:
            self.iface.unregisterOptionsWidgetFactory(self.options_factory)
            self.options_factory = None
        if self.action is not None:
            self.iface.removePluginMenu(self.MENU, self.action)
            if self.toolbar is not None:
                self.toolbar.removeAction(self.action)
            self.action.deleteLater()
            self.action = None
        if self.toolbar is not None:
            self.toolbar.hide()
            self.toolbar.setParent(None)
            self.toolbar.deleteLater()
            self.toolbar = None
        if self.dialog is not None:
            if self.dialog.task is not None:
                self.dialog.task.cancel()
            self.dialog.close()
            self.dialog.deleteLater()
            self.dialog = None
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
