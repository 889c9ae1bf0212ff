"""The survey dialog: photo folder -> classified, styled survey layers in the project."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qgis.core import (
    Qgis,
    QgsApplication,
    QgsCoordinateReferenceSystem,
    QgsMessageLog,
    QgsPointXY,
    QgsProcessingContext,
    QgsProject,
)
from qgis.gui import QgsFileWidget, QgsMapToolEmitPoint
from qgis.PyQt.QtCore import QCoreApplication
from qgis.PyQt.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from . import backend
from .alg_survey import ClassifySurveyAlgorithm, summary_lines
from .params import format_lon_lat, to_wgs84
from .results import add_basemap, load_survey, zoom_to
from .task import LOG_TAG, BackendTask


def tr(text: str) -> str:
    """Translate ``text`` (context "Heritage")."""
    return QCoreApplication.translate("Heritage", text)


class SurveyDialog(QDialog):
    """Photo folder, footprints, start point (typed or picked), model, output; Run/Cancel."""

    def __init__(self, iface: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.iface = iface
        self.task: BackendTask | None = None
        self.loaded: dict = {}
        self.gpkg = ""
        self._map_tool: QgsMapToolEmitPoint | None = None
        self._previous_tool = None
        self.setWindowTitle(tr("Heritage: classify a photo survey"))
        self.photos = self._file_widget(QgsFileWidget.StorageMode.GetDirectory)
        self.footprints = self._file_widget(QgsFileWidget.StorageMode.GetFile)
        self.footprints.setFilter(tr("Vector files (*.gpkg *.shp *.geojson *.json);;All files (*)"))
        self.start = QLineEdit()
        self.start.setPlaceholderText(tr("lon,lat (empty: the highest-priority building)"))
        self.pick = QPushButton(tr("Pick on map"))
        self.pick.setToolTip(tr("Click the route's start on the map"))
        self.pick.clicked.connect(self.pick_start)
        start_row = QHBoxLayout()
        start_row.addWidget(self.start)
        start_row.addWidget(self.pick)
        self.model = self._file_widget(QgsFileWidget.StorageMode.GetDirectory)
        self.model.lineEdit().setPlaceholderText(tr("empty: the shipped model"))
        self.output = self._file_widget(QgsFileWidget.StorageMode.SaveFile)
        self.output.setFilter(tr("GeoPackage (*.gpkg)"))
        self.by_priority = QCheckBox(tr("Visit category A first, then B..."))
        self.basemap = QCheckBox(tr("Add an OpenStreetMap basemap (needs the internet)"))
        self.basemap.setChecked(False)  # off: surveys are often processed offline

        form = QFormLayout()
        form.addRow(tr("Photo folder"), self.photos)
        form.addRow(tr("Building footprints (optional)"), self.footprints)
        form.addRow(tr("Route start"), start_row)
        form.addRow(tr("Model folder (optional)"), self.model)
        form.addRow(tr("Output GeoPackage"), self.output)
        form.addRow("", self.by_priority)
        form.addRow("", self.basemap)

        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setValue(0)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.buttons = QDialogButtonBox()
        self.run_button = self.buttons.addButton(tr("Run"), QDialogButtonBox.ButtonRole.AcceptRole)
        self.cancel_button = self.buttons.addButton(
            tr("Cancel"), QDialogButtonBox.ButtonRole.RejectRole
        )
        self.close_button = self.buttons.addButton(QDialogButtonBox.StandardButton.Close)
        self.cancel_button.setEnabled(False)
        self.run_button.clicked.connect(self.start_run)
        self.cancel_button.clicked.connect(self.cancel_run)
        self.close_button.clicked.connect(self.close)

        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(self.buttons)
        self.resize(620, 300)

    @staticmethod
    def _file_widget(mode) -> QgsFileWidget:
        widget = QgsFileWidget()
        widget.setStorageMode(mode)
        return widget

    # ----------------------------------------------------------- start point

    def pick_start(self) -> None:
        """Arm a map tool; the next click on the canvas fills the start as lon,lat."""
        canvas = self.iface.mapCanvas()
        self._map_tool = QgsMapToolEmitPoint(canvas)
        self._map_tool.canvasClicked.connect(self._start_picked)
        self._previous_tool = canvas.mapTool()
        canvas.setMapTool(self._map_tool)
        self.status.setText(tr("Click the start of the route on the map."))

    def _start_picked(self, point: QgsPointXY, button=None) -> None:
        canvas = self.iface.mapCanvas()
        crs = canvas.mapSettings().destinationCrs()
        self.set_start(point, crs)
        if self._previous_tool is not None:
            canvas.setMapTool(self._previous_tool)
        else:
            canvas.unsetMapTool(self._map_tool)
        self.status.setText("")

    def set_start(self, point: QgsPointXY, crs: QgsCoordinateReferenceSystem) -> None:
        """Show ``point`` (in ``crs``) as WGS84 ``lon,lat`` in the start field."""
        wgs = to_wgs84(point, crs)
        self.start.setText(format_lon_lat(wgs.x(), wgs.y()))

    # ----------------------------------------------------------- running

    def parameters(self) -> dict[str, Any]:
        """The dialog's values as parameters of ``heritage:classifysurvey``."""
        return {
            "INPUT": self.photos.filePath(),
            "FOOTPRINTS": self.footprints.filePath() or None,
            "START": self.start.text().strip() or None,
            "MODEL": self.model.filePath() or None,
            "BY_PRIORITY": self.by_priority.isChecked(),
            "OUTPUT": self.output.filePath(),
        }

    def start_run(self) -> BackendTask | None:
        """Validate like the Processing algorithm, then start the background task."""
        alg = ClassifySurveyAlgorithm()
        alg.initAlgorithm()
        context = QgsProcessingContext()
        context.setProject(QgsProject.instance())
        params = self.parameters()
        ok, msg = alg.checkParameterValues(params, context)
        if not ok:
            self.status.setText(msg)
            self._bar(msg, Qgis.MessageLevel.Warning)
            return None
        args = alg.build_args(params, context)
        self.gpkg = alg.parameterAsFileOutput(params, "OUTPUT", context)
        self.task = BackendTask(tr("Heritage: classify photo survey"), args, self._done)
        self.task.progressChanged.connect(self._progress_changed)
        self.task.statusChanged.connect(self._status_changed)
        self.progress.setValue(0)
        self.status.setText(tr("Starting the backend... (details in the Heritage tab of the log)"))
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        QgsApplication.taskManager().addTask(self.task)
        return self.task

    def cancel_run(self) -> None:
        """Stop the backend: it finishes the photos being classified, then groups the
        buildings and plans the route over what it kept (shown with the time left)."""
        if self.task is not None:
            self.status.setText(tr("Stopping..."))
            self.cancel_button.setEnabled(False)
            self.task.cancel()

    def showEvent(self, event) -> None:
        """A message of an earlier attempt (e.g. a backend since installed) goes."""
        if self.task is None:
            self.status.setText("")
        super().showEvent(event)

    def _progress_changed(self, percent: float) -> None:
        self.progress.setValue(int(percent))

    def _status_changed(self, text: str) -> None:
        if self.task is not None:
            self.status.setText(text)

    def _done(self, task: BackendTask) -> None:
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        self.task = None
        if isinstance(task.error, backend.BackendCancelled):
            kept = task.error.result.summary if task.error.result is not None else None
            lines = summary_lines(kept or {})
            head = tr("Canceled. Kept in {0}: the photos classified so far").format(self.gpkg)
            if kept:
                head += tr(", {0} building(s) to inspect and their route").format(
                    kept.get("buildings", 0)
                )
            head += tr("; run again to classify the rest.")
            self.status.setText("\n".join([head, *lines]))
            self._bar(head, Qgis.MessageLevel.Info)
            self._load()
            return
        if task.error is not None:
            text = tr("Classification failed: {0}").format(task.error)
            self.status.setText(text)
            self._bar(text, Qgis.MessageLevel.Critical)
            return
        self.progress.setValue(100)
        lines = summary_lines(task.result.summary or {}) if task.result else []
        for line in lines:
            QgsMessageLog.logMessage(line, LOG_TAG, Qgis.MessageLevel.Info)
        self._load()
        self.status.setText("\n".join(lines) or tr("Done."))
        self._bar(tr("Survey classified: {0}").format(self.gpkg), Qgis.MessageLevel.Success)

    def _load(self) -> None:
        if Path(self.gpkg).is_file():
            self.loaded = load_survey(self.gpkg, QgsProject.instance())
            if self.basemap.isChecked():
                add_basemap(QgsProject.instance())
            layer = self.loaded.get("observations")
            if layer is not None and layer.featureCount() > 0:
                zoom_to(self.iface.mapCanvas(), [layer])

    def _bar(self, text: str, level: Qgis.MessageLevel) -> None:
        QgsMessageLog.logMessage(text, LOG_TAG, level)
        bar = getattr(self.iface, "messageBar", None)
        if bar is not None:
            bar().pushMessage(tr("Heritage"), text, level, 10)
