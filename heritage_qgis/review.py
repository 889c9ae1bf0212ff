"""The review panel: step through a survey's findings and record the conservator's verdict.

A dock widget over one survey GeoPackage. It shows, for one observation at a time, the
photo (with the model's strongest tile box), the Grad-CAM overlay and the heat map side
by side (mouse wheel zooms, drag pans), the model's decision and scores; one click or
one key records **confirmed** (C), **false alarm** (F), **unsure** (U) or, on a photo
the model did not flag, **missed defect** (M), with a defect type and a free note; N / P
step to the next / previous photo. The map pans to the photo.

Adapter only: a verdict is written by the backend (``heritage review``, which owns the
``reviews`` table and its rules); the map follows by ``heritage group`` run in the
background (debounced after each review, or with "Update the map"), after which the
survey's layers in the project are reloaded. The list is read from the observations
(their ``review`` column holds each photo's current review, computed by the backend).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from qgis.core import (
    QgsApplication,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsPointXY,
    QgsProject,
    QgsSettings,
)
from qgis.gui import QgsDockWidget, QgsFileWidget
from qgis.PyQt.QtCore import QCoreApplication, QEventLoop, QRectF, Qt, QTimer, pyqtSignal
from qgis.PyQt.QtGui import QColor, QImage, QImageReader, QKeySequence, QPainter, QPen, QPixmap
from qgis.PyQt.QtWidgets import (
    QAction,
    QApplication,
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGraphicsScene,
    QGraphicsView,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QSplitter,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from . import backend
from .task import BackendTask

#: QGIS setting holding the reviewer's name (asked once)
REVIEWER_KEY = "heritage/reviewer"
#: verdict -> (button text, key)
VERDICTS = {
    "confirmed": ("Confirmed", "C"),
    "false_alarm": ("False alarm", "F"),
    "unsure": ("Unsure", "U"),
    "missed": ("Missed defect", "M"),
}
#: defect types of heritage.io.reviews.DEFECT_TYPES (code, label)
DEFECT_TYPES = (
    ("crack", "Crack"),
    ("salt", "Salt / efflorescence"),
    ("biological_growth", "Biological growth"),
    ("crust_soiling", "Crust or soiling"),
    ("loss_of_material", "Loss of material / spalling"),
    ("other", "Other"),
)
#: list orders: key -> (label, WHERE, ORDER BY)
ORDERS = {
    "visit": (
        "Flagged, in visiting order",
        "flagged = 1",
        "visit_order IS NULL, visit_order, priority_score DESC, file_name",
    ),
    "priority": ("Flagged, by priority", "flagged = 1", "priority_score DESC, file_name"),
    "all": ("All photos", "1 = 1", "visit_order IS NULL, visit_order, file_name"),
}
COLUMNS = (
    "fid", "sha256", "file_name", "path", "flagged", "decision", "p_final", "p_stage1",
    "p_stage2", "stage1_label", "defect_area_fraction", "priority_score", "priority_category",
    "building_id", "visit_order", "n_wall_tiles", "n_flagged_tiles", "best_box_left",
    "best_box_top", "best_box_right", "best_box_bottom", "overlay_path", "heatmap_path",
    "longitude", "latitude", "review", "inference_mode",
)  # fmt: skip
#: longer side of the photo shown (a 24-megapixel photo stays quick to draw)
PHOTO_MAX_PX = 1600
#: milliseconds without a new review before the map is updated
UPDATE_DELAY_MS = 1500


def tr(text: str) -> str:
    """Translate ``text`` (context "Heritage")."""
    return QCoreApplication.translate("Heritage", text)


def read_observations(gpkg: str | Path, order: str = "visit") -> list[dict[str, Any]]:
    """The observations of ``gpkg`` to review, in ``order`` (a key of :data:`ORDERS`)."""
    _label, where, order_by = ORDERS[order]
    con = sqlite3.connect(f"{Path(gpkg).resolve().as_uri()}?mode=ro", uri=True)
    try:
        con.row_factory = sqlite3.Row
        have = {r[1] for r in con.execute('PRAGMA table_info("observations")')}
        sel = ", ".join(f'"{c}"' if c in have else f'NULL AS "{c}"' for c in COLUMNS)
        sql = f'SELECT {sel} FROM "observations" WHERE {where} ORDER BY {order_by}'
        return [dict(r) for r in con.execute(sql)]
    finally:
        con.close()


def load_photo(path: Path, box: tuple[int, int, int, int] | None) -> QImage:
    """The photo, EXIF orientation applied, at most :data:`PHOTO_MAX_PX`, with ``box``
    (photo pixels) drawn in."""
    reader = QImageReader(str(path))
    reader.setAutoTransform(True)
    image = reader.read()
    if image.isNull():
        return image
    full_w = image.width()
    if max(image.width(), image.height()) > PHOTO_MAX_PX:
        image = image.scaled(
            PHOTO_MAX_PX, PHOTO_MAX_PX, Qt.AspectRatioMode.KeepAspectRatio,
            Qt.TransformationMode.SmoothTransformation,
        )  # fmt: skip
    if box is not None:
        f = image.width() / full_w
        image = image.convertToFormat(QImage.Format.Format_RGB32)
        painter = QPainter(image)
        pen = QPen(QColor("#00e5ff"))
        pen.setWidth(max(2, round(image.width() / 300)))
        painter.setPen(pen)
        left, top, right, bottom = box
        painter.drawRect(QRectF(left * f, top * f, (right - left) * f, (bottom - top) * f))
        painter.end()
    return image


class ImageView(QGraphicsView):
    """One zoomable image: wheel zooms around the pointer, drag pans, double click fits."""

    def __init__(self, title: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.title = title
        self.setScene(QGraphicsScene(self))
        self.setDragMode(QGraphicsView.DragMode.ScrollHandDrag)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setMinimumSize(160, 120)
        self.setToolTip(tr("{0}: wheel to zoom, drag to pan, double click to fit").format(title))
        self.item = None
        self.zoom = 1.0

    def set_image(self, image: QImage | None, missing: str = "") -> None:
        """Show ``image`` fitted to the view (or the text ``missing``)."""
        self.scene().clear()
        self.item = None
        self.resetTransform()
        self.zoom = 1.0
        if image is None or image.isNull():
            self.scene().addText(missing or tr("no image"))
            return
        self.item = self.scene().addPixmap(QPixmap.fromImage(image))
        self.scene().setSceneRect(QRectF(image.rect()))
        self.fit()

    def has_image(self) -> bool:
        """True when an image is shown."""
        return self.item is not None

    def fit(self) -> None:
        """Fit the whole image in the view."""
        if self.item is not None:
            self.fitInView(self.item, Qt.AspectRatioMode.KeepAspectRatio)
            self.zoom = 1.0

    def zoom_by(self, factor: float) -> None:
        """Zoom in (``factor`` > 1) or out, between the fitted view and 40x."""
        new = min(max(self.zoom * factor, 1.0), 40.0)
        if new != self.zoom:
            self.scale(new / self.zoom, new / self.zoom)
            self.zoom = new

    def wheelEvent(self, event) -> None:
        self.zoom_by(1.25 if event.angleDelta().y() > 0 else 0.8)

    def mouseDoubleClickEvent(self, event) -> None:
        self.fit()

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        if self.zoom == 1.0:
            self.fit()


class ReviewDock(QgsDockWidget):
    """The review panel (module docstring). ``canvas``: the map to pan (default: the
    QGIS desktop's)."""

    reviewRecorded = pyqtSignal(dict)
    mapUpdated = pyqtSignal(dict)

    def __init__(self, iface: Any = None, parent: QWidget | None = None, canvas=None) -> None:
        super().__init__(tr("Heritage review"), parent)
        self.setObjectName("HeritageReviewDock")
        self.iface = iface
        self.canvas = canvas if canvas is not None else (iface.mapCanvas() if iface else None)
        self.gpkg = ""
        self.rows: list[dict[str, Any]] = []
        self.index = -1
        self.task: BackendTask | None = None
        self.update_pending = False
        self.last_summary: dict[str, Any] = {}
        self.update_timer = QTimer(self)
        self.update_timer.setSingleShot(True)
        self.update_timer.setInterval(UPDATE_DELAY_MS)
        self.update_timer.timeout.connect(self.update_map)
        self._build()

    # ----------------------------------------------------------- layout

    def _build(self) -> None:
        body = QWidget()
        layout = QVBoxLayout(body)
        top = QHBoxLayout()
        self.survey = QgsFileWidget()
        self.survey.setFilter(tr("Survey GeoPackage (*.gpkg)"))
        self.survey.fileChanged.connect(lambda path: self.open_survey(path) if path else None)
        self.order = QComboBox()
        for key, (label, _w, _o) in ORDERS.items():
            self.order.addItem(tr(label), key)
        self.order.currentIndexChanged.connect(lambda _i: self.reload(keep=False))
        top.addWidget(QLabel(tr("Survey")))
        top.addWidget(self.survey, 1)
        top.addWidget(self.order)
        layout.addLayout(top)

        self.photo = ImageView(tr("Photo"))
        self.overlay = ImageView(tr("Grad-CAM overlay"))
        self.heatmap = ImageView(tr("Heat map"))
        views = QSplitter(Qt.Orientation.Horizontal)
        for view in (self.photo, self.overlay, self.heatmap):
            views.addWidget(view)
        layout.addWidget(views, 1)

        self.info = QLabel()
        self.info.setWordWrap(True)
        self.info.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.info)

        form = QFormLayout()
        self.defect_type = QComboBox()
        self.defect_type.addItem(tr("(type)"), None)
        for code, label in DEFECT_TYPES:
            self.defect_type.addItem(tr(label), code)
        self.note = QLineEdit()
        self.note.setPlaceholderText(tr("note (optional)"))
        row = QHBoxLayout()
        row.addWidget(self.defect_type)
        row.addWidget(self.note, 1)
        form.addRow(tr("Defect"), row)
        layout.addLayout(form)

        buttons = QHBoxLayout()
        self.actions: dict[str, QAction] = {}
        self.action_previous = self._action(tr("Previous"), "P", lambda: self.step(-1))
        buttons.addWidget(self._button(self.action_previous))
        for verdict, (text, key) in VERDICTS.items():
            action = self._action(
                f"{tr(text)} ({key})", key, lambda _c=False, v=verdict: self.record(v)
            )
            action.setObjectName(f"heritageReview_{verdict}")
            self.actions[verdict] = action
            buttons.addWidget(self._button(action))
        self.action_next = self._action(tr("Next"), "N", lambda: self.step(1))
        buttons.addWidget(self._button(self.action_next))
        layout.addLayout(buttons)

        bottom = QHBoxLayout()
        self.auto_update = QCheckBox(tr("Update the map after each review"))
        self.auto_update.setChecked(True)
        self.footprints = QgsFileWidget()
        self.footprints.setFilter(tr("Vector files (*.gpkg *.shp *.geojson *.json);;All files (*)"))
        self.footprints.setToolTip(
            tr("The building footprints the survey was grouped with (empty: clusters)")
        )
        self.action_update = self._action(tr("Update the map"), "R", self.update_map)
        bottom.addWidget(self.auto_update)
        bottom.addWidget(QLabel(tr("Footprints")))
        bottom.addWidget(self.footprints, 1)
        bottom.addWidget(self._button(self.action_update))
        layout.addLayout(bottom)
        self.status = QLabel()
        self.status.setWordWrap(True)
        layout.addWidget(self.status)
        self.setWidget(body)
        self._refresh_actions()

    def _action(self, text: str, key: str, slot) -> QAction:
        action = QAction(text, self)
        action.setShortcut(QKeySequence(key))
        action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        action.triggered.connect(slot)
        self.addAction(action)
        return action

    def _button(self, action: QAction) -> QToolButton:
        button = QToolButton()
        button.setDefaultAction(action)
        button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        return button

    # ----------------------------------------------------------- the list

    def open_survey(self, gpkg: str | Path) -> int:
        """Review ``gpkg``; returns the number of photos in the list."""
        gpkg = str(Path(gpkg))
        if self.survey.filePath() != gpkg:
            self.survey.blockSignals(True)
            self.survey.setFilePath(gpkg)
            self.survey.blockSignals(False)
        self.gpkg = gpkg
        n = self.reload(keep=False)
        try:
            ready = backend.has_command("review")
        except backend.BackendError as exc:
            self.status.setText(str(exc))
        else:
            if not ready:
                self.status.setText(
                    tr("The heritage backend has no `heritage review` command yet: update it "
                       "(Settings > Options > Heritage > Install the backend).")
                )  # fmt: skip
        return n

    def set_order(self, key: str) -> None:
        """Show the list in order ``key`` (``visit``, ``priority`` or ``all``)."""
        self.order.setCurrentIndex(self.order.findData(key))

    def reload(self, keep: bool = True) -> int:
        """Read the list again (``keep``: stay on the same photo)."""
        if not self.gpkg:
            return 0
        sha = self.current()["sha256"] if keep and self.current() else None
        try:
            self.rows = read_observations(self.gpkg, self.order.currentData() or "visit")
        except sqlite3.Error as exc:
            self.rows = []
            self.status.setText(tr("Cannot read {0}: {1}").format(self.gpkg, exc))
        index = next((i for i, r in enumerate(self.rows) if r["sha256"] == sha), 0)
        self.show_index(index if self.rows else -1)
        return len(self.rows)

    def current(self) -> dict[str, Any] | None:
        """The observation shown (None when the list is empty)."""
        return self.rows[self.index] if 0 <= self.index < len(self.rows) else None

    def step(self, delta: int) -> None:
        """Show the next (``delta`` 1) or previous (-1) photo."""
        if self.rows:
            self.show_index(min(max(self.index + delta, 0), len(self.rows) - 1))

    def show_sha(self, sha256: str) -> bool:
        """Show the photo with this sha256 when it is in the list."""
        for i, row in enumerate(self.rows):
            if row["sha256"] == sha256:
                self.show_index(i)
                return True
        return False

    def show_index(self, index: int) -> None:
        """Show the ``index``-th photo of the list: images, scores, map position."""
        self.index = index
        row = self.current()
        self._refresh_actions()
        if row is None:
            for view in (self.photo, self.overlay, self.heatmap):
                view.set_image(None, tr("nothing to review"))
            self.info.setText(tr("No photo to review in this list."))
            return
        base = Path(self.gpkg).parent
        box = _box(row)
        photo = base / str(row["path"] or "")
        self.photo.set_image(
            load_photo(photo, box) if photo.is_file() else None,
            tr("photo not found: {0}").format(photo),
        )
        for view, col in ((self.overlay, "overlay_path"), (self.heatmap, "heatmap_path")):
            path = base / str(row[col] or "")
            view.set_image(QImage(str(path)) if row[col] and path.is_file() else None)
        self.info.setText(self.describe(row))
        self.defect_type.setCurrentIndex(0)
        self.note.clear()
        self.pan_to(row)

    def describe(self, row: dict[str, Any]) -> str:
        """The observation's decision, scores, tile counts and review, as rich text."""

        def num(v: Any, fmt: str = "{:.3f}") -> str:
            return "-" if v is None else fmt.format(v)

        box = _box(row)
        parts = [
            f"<b>{self.index + 1} / {len(self.rows)}</b> &nbsp; {row['file_name']}",
            tr("decision: <b>{0}</b>").format(row["decision"] or "-"),
            f"p_final {num(row['p_final'])} (stage 1 {num(row['p_stage1'])}, "
            f"stage 2 {num(row['p_stage2'])}, {row['stage1_label'] or '-'})",
            tr("priority {0} {1}").format(
                row["priority_category"] or "-", num(row["priority_score"], "{:.1f}")
            ),
            tr("visit {0}").format(row["visit_order"] or "-"),
        ]
        if row["n_wall_tiles"] is not None:
            parts.append(
                tr("{0} of {1} wall tiles flagged").format(
                    row["n_flagged_tiles"] or 0, row["n_wall_tiles"]
                )
            )
        if box:
            parts.append(tr("strongest tile {0}").format(",".join(str(v) for v in box)))
        parts.append(tr("review: <b>{0}</b>").format(row.get("review") or tr("not reviewed")))
        return " &middot; ".join(parts)

    def pan_to(self, row: dict[str, Any]) -> None:
        """Centre the map on the photo (when it has a position)."""
        if self.canvas is None or row["longitude"] is None or row["latitude"] is None:
            return
        xform = QgsCoordinateTransform(
            QgsCoordinateReferenceSystem("EPSG:4326"),
            self.canvas.mapSettings().destinationCrs(),
            QgsProject.instance(),
        )
        try:
            point = xform.transform(QgsPointXY(float(row["longitude"]), float(row["latitude"])))
        except Exception:
            return
        self.canvas.setCenter(point)
        self.canvas.refresh()

    def _refresh_actions(self) -> None:
        row = self.current()
        flagged = bool(row and row["flagged"])
        self.actions["confirmed"].setEnabled(flagged)
        self.actions["false_alarm"].setEnabled(flagged)
        self.actions["unsure"].setEnabled(row is not None)
        self.actions["missed"].setEnabled(row is not None and not flagged)
        self.action_previous.setEnabled(self.index > 0)
        self.action_next.setEnabled(0 <= self.index < len(self.rows) - 1)
        self.action_update.setEnabled(bool(self.gpkg))

    # ----------------------------------------------------------- reviewing

    def reviewer(self) -> str:
        """The reviewer's name from the QGIS settings; asked once when missing."""
        name = str(QgsSettings().value(REVIEWER_KEY, "") or "").strip()
        if not name:
            name, ok = QInputDialog.getText(
                self, tr("Reviewer"), tr("Your name (kept with each review you record):")
            )
            name = name.strip() if ok else ""
            if name:
                QgsSettings().setValue(REVIEWER_KEY, name)
        return name

    def record(self, verdict: str) -> dict[str, Any] | None:
        """Record ``verdict`` on the photo shown (``heritage review``), then show the next
        photo and schedule the map update. Returns the review written (None on failure)."""
        row = self.current()
        if row is None or not self.actions[verdict].isEnabled():
            return None
        name = self.reviewer()
        if not name:
            self.status.setText(tr("Give your name to record reviews."))
            return None
        self.wait_for_update()
        args = ["review", self.gpkg, "--photo", row["sha256"], "--verdict", verdict]
        args += ["--reviewer", name, "--json"]
        if (kind := self.defect_type.currentData()) and verdict in ("confirmed", "missed"):
            args += ["--type", kind]
        if note := self.note.text().strip():
            args += ["--note", note]
        QApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)
        try:
            result = backend.run_backend(args)
        except backend.BackendError as exc:
            self.status.setText(tr("The review was not recorded: {0}").format(exc))
            return None
        finally:
            QApplication.restoreOverrideCursor()
        written = next((e for e in result.events if e.get("event") == "review"), {})
        row["review"] = verdict
        self.status.setText(
            tr("{0}: {1} by {2}").format(row["file_name"], verdict.replace("_", " "), name)
        )
        self.reviewRecorded.emit(written)
        if self.auto_update.isChecked():
            self.update_timer.start()
        if self.index < len(self.rows) - 1:
            self.step(1)
        else:
            self.info.setText(self.describe(row))
        return written

    # ----------------------------------------------------------- the map

    def update_map(self) -> BackendTask | None:
        """Re-group, re-score and re-route the survey in the background
        (``heritage group``); the survey's layers are reloaded when it ends."""
        self.update_timer.stop()
        if not self.gpkg:
            return None
        if self.task is not None:
            self.update_pending = True
            return self.task
        args = ["group", self.gpkg, "--json-progress"]
        if footprints := self.footprints.filePath():
            args += ["--footprints", footprints]
        self.update_pending = False
        self.task = BackendTask(tr("Heritage: update the map"), args, self._updated)
        self.status.setText(tr("Updating priorities, buildings and route..."))
        QgsApplication.taskManager().addTask(self.task)
        return self.task

    def _updated(self, task: BackendTask) -> None:
        self.task = None
        if task.error is not None:
            self.status.setText(tr("The map was not updated: {0}").format(task.error))
        else:
            summary = (task.result.summary if task.result else None) or {}
            self.last_summary = summary
            self.status.setText(summary_text(summary))
            reload_layers(self.gpkg)
            self.reload(keep=True)
            self.mapUpdated.emit(summary)
        if self.update_pending:
            self.update_map()

    def busy(self) -> bool:
        """True while a map update runs or waits to run."""
        return self.task is not None or self.update_timer.isActive() or self.update_pending

    def wait_for_update(self, timeout_s: float = 600.0) -> None:
        """Let a running map update finish (it holds the survey's lock) before writing."""
        if self.task is None:
            return
        self.status.setText(tr("Waiting for the map update to finish..."))
        loop = QEventLoop()
        poll = QTimer()
        poll.timeout.connect(lambda: loop.quit() if self.task is None else None)
        poll.start(50)
        QTimer.singleShot(int(timeout_s * 1000), loop.quit)
        for action in self.actions.values():
            action.setEnabled(False)
        loop.exec()
        poll.stop()
        self._refresh_actions()


def _box(row: dict[str, Any]) -> tuple[int, int, int, int] | None:
    vals = [row.get(f"best_box_{k}") for k in ("left", "top", "right", "bottom")]
    if any(v is None for v in vals):
        return None
    return tuple(int(v) for v in vals)  # type: ignore[return-value]


def summary_text(summary: dict[str, Any]) -> str:
    """The status line after a map update: the backend's own summary (``heritage group``'s
    lines: buildings, route, sites, reviews); its counts from a backend older than that."""
    if lines := summary.get("lines"):
        return "\n".join(str(line) for line in lines)
    return tr("{0} building(s), route {1:.0f} m").format(
        summary.get("buildings", 0), float(summary.get("route_m") or 0.0)
    )


def reload_layers(gpkg: str | Path, project: QgsProject | None = None) -> int:
    """Reload every layer of the project read from ``gpkg`` (after the backend rewrote
    it); returns how many."""
    project = project or QgsProject.instance()
    target = str(Path(gpkg).resolve())
    n = 0
    for layer in project.mapLayers().values():
        source = layer.source().split("|", 1)[0]
        try:
            same = str(Path(source).resolve()) == target
        except OSError:
            same = False
        if same:
            layer.dataProvider().reloadData()
            layer.triggerRepaint()
            n += 1
    return n
