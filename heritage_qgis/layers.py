"""Survey GeoPackage layers in a QGIS project: names with counts, styles, image forms."""

from __future__ import annotations

import sqlite3
from collections import Counter
from pathlib import Path

from qgis.core import (
    QgsAttributeEditorContainer,
    QgsAttributeEditorField,
    QgsEditFormConfig,
    QgsEditorWidgetSetup,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import QCoreApplication, Qt, QVariant

#: survey layers, top of the layer tree first
SURVEY_LAYERS = ("inspection_route", "observations", "flagged_buildings", "invalid_photos")
#: image columns of the observations (paths relative to the GeoPackage's folder)
IMAGE_FIELDS = ("thumbnail_path", "overlay_path", "heatmap_path")
SCORE_FIELDS = (
    "file_name",
    "decision",
    "priority_category",
    "priority_score",
    "p_final",
    "building_id",
    "visit_order",
    "stage1_label",
    "p_stage1",
    "p_stage2",
    "defect_area_fraction",
    "cam_method",
    "model_id",
    "model_version",
    "threshold",
    "status",
    "message",
    "review",
)
#: the first columns of each layer's attribute table (what the analyst reads first),
#: the rest follow in their stored order; and the sort of the table
TABLE_ORDER = {
    "observations": (
        ("file_name", "decision", "priority_category", "priority_score", "p_final",
         "building_id", "visit_order", "review", "stage1_label", "defect_area_fraction",
         "status"),
        '"priority_score"', False,
    ),
    "flagged_buildings": (
        ("visit_order", "priority_category", "priority_score", "n_flagged", "n_photos",
         "site", "building_id", "flagged_file_names"),
        '"visit_order"', True,
    ),
    "inspection_route": (
        ("order", "to_visit", "site", "leg_m", "cumulative_m", "from_id", "to_id"),
        '"order"', True,
    ),
    "invalid_photos": (("file_name", "reason", "message", "path"), '"file_name"', True),
}  # fmt: skip
#: decimals shown for numeric fields (the stored values keep full precision)
PRECISION = {
    "p_final": 3,
    "p_stage1": 3,
    "p_stage2": 3,
    "stage1_score": 3,
    "defect_area_fraction": 3,
    "threshold": 3,
    "priority_score": 1,
    "mean_priority_score": 1,
    "leg_m": 0,
    "cumulative_m": 0,
    "altitude": 1,
    "heading": 0,
    "lon": 6,
    "lat": 6,
}
#: pixels of the photo and overlay in the feature form: two side by side plus the
#: scores fit a 1366 x 768 screen
FORM_IMAGE_PX = (320, 240)


def tr(text: str) -> str:
    """Translate ``text`` (context "Heritage")."""
    return QCoreApplication.translate("Heritage", text)


def _connect(gpkg: str | Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{Path(gpkg).as_posix()}?mode=ro", uri=True)


def existing_layers(gpkg: str | Path) -> dict[str, str]:
    """``{table: data_type}`` of the GeoPackage's contents ({} when it is unreadable)."""
    if not Path(gpkg).is_file():
        return {}
    try:
        con = _connect(gpkg)
        try:
            rows = con.execute("SELECT table_name, data_type FROM gpkg_contents").fetchall()
        finally:
            con.close()
    except sqlite3.Error:
        return {}
    return {str(name): str(kind) for name, kind in rows}


def _query(gpkg: str | Path, sql: str) -> list[tuple]:
    try:
        con = _connect(gpkg)
        try:
            return con.execute(sql).fetchall()
        finally:
            con.close()
    except sqlite3.Error:
        return []


def skipped_reasons(gpkg: str | Path) -> Counter:
    """How many files ``invalid_photos`` lists per reason."""
    if "invalid_photos" not in existing_layers(gpkg):
        return Counter()
    rows = _query(gpkg, 'SELECT reason, COUNT(*) FROM "invalid_photos" GROUP BY reason')
    return Counter({str(r): int(n) for r, n in rows})


def skipped_label(reasons: Counter) -> str:
    """``"Skipped photos (4): no_gps 3, unreadable 1"``."""
    total = sum(reasons.values())
    label = tr("Skipped photos ({0})").format(total)
    if total:
        label += ": " + ", ".join(f"{r} {n}" for r, n in reasons.most_common())
    return label


def display_names(gpkg: str | Path) -> dict[str, str]:
    """Layer-tree names with counts for every survey layer of ``gpkg``."""
    present = existing_layers(gpkg)
    names = {
        "observations": tr("Observations"),
        "flagged_buildings": tr("Flagged buildings"),
        "inspection_route": tr("Inspection route"),
        "photos": tr("Photos"),
        "invalid_photos": skipped_label(skipped_reasons(gpkg)),
    }
    if "observations" in present:
        rows = _query(
            gpkg,
            "SELECT COUNT(*), COALESCE(SUM(flagged), 0), "
            "COALESCE(SUM(status = 'no_location'), 0) FROM \"observations\"",
        )
        if rows:
            n, flagged, no_loc = rows[0]
            label = tr("Observations ({0} photos, {1} flagged)").format(n, flagged)
            if no_loc:
                label += tr(", {0} without position").format(no_loc)
            names["observations"] = label
    if "flagged_buildings" in present:
        rows = _query(gpkg, 'SELECT COUNT(*) FROM "flagged_buildings"')
        if rows:
            names["flagged_buildings"] = tr("Flagged buildings ({0})").format(rows[0][0])
    if "inspection_route" in present:
        rows = _query(gpkg, 'SELECT COALESCE(SUM(leg_m), 0) FROM "inspection_route"')
        sites = _query(gpkg, 'SELECT COUNT(DISTINCT site) FROM "flagged_buildings"')
        if rows and rows[0][0] is not None:
            metres = float(rows[0][0])
            n_sites = int(sites[0][0]) if sites and sites[0][0] else 1
            names["inspection_route"] = (
                tr("Inspection routes ({0} sites, {1:.0f} m)").format(n_sites, metres)
                if n_sites > 1
                else tr("Inspection route ({0:.0f} m)").format(metres)
            )
    if "photos" in present:
        rows = _query(gpkg, 'SELECT COUNT(*) FROM "photos"')
        if rows:
            names["photos"] = tr("Photos ({0})").format(rows[0][0])
    return names


def configure_observations(layer: QgsVectorLayer, gpkg: str | Path) -> None:
    """Image widgets (relative to the GeoPackage's folder) and a two-column form:
    photo next to the Grad-CAM overlay, then scores, priority and model version."""
    fields = layer.fields()
    for name, alias in (
        ("thumbnail_path", tr("Photo")),
        ("overlay_path", tr("Grad-CAM overlay")),
        ("heatmap_path", tr("Grad-CAM heat map")),
        ("p_final", tr("P(conservation needed)")),
        ("priority_category", tr("Priority")),
    ):
        idx = fields.indexOf(name)
        if idx >= 0:
            layer.setFieldAlias(idx, alias)
    config = layer.editFormConfig()
    config.setLayout(QgsEditFormConfig.EditorLayout.TabLayout)
    root = config.invisibleRootContainer()
    root.clear()
    # first tab: the photo next to its overlay, and the scores under them
    first = QgsAttributeEditorContainer(tr("Photo, Grad-CAM and priority"), root)
    first.setIsGroupBox(False)  # a tab (a new container is a group box by default)
    images = QgsAttributeEditorContainer(tr("Photo and Grad-CAM"), first)
    images.setIsGroupBox(True)
    images.setColumnCount(2)
    for name in ("thumbnail_path", "overlay_path"):
        idx = fields.indexOf(name)
        if idx >= 0:
            images.addChildElement(QgsAttributeEditorField(name, idx, images))
    first.addChildElement(images)
    scores = QgsAttributeEditorContainer(tr("Scores, priority and model"), first)
    scores.setIsGroupBox(True)
    scores.setColumnCount(2)
    for name in SCORE_FIELDS:
        idx = fields.indexOf(name)
        if idx >= 0:
            scores.addChildElement(QgsAttributeEditorField(name, idx, scores))
    first.addChildElement(scores)
    root.addChildElement(first)
    others = QgsAttributeEditorContainer(tr("All attributes"), root)
    others.setIsGroupBox(False)
    others.setColumnCount(2)  # ~25 fields: two columns keep the tab on a laptop screen
    shown = {"thumbnail_path", "overlay_path", *SCORE_FIELDS}
    for idx, f in enumerate(fields):
        if f.name() not in shown:
            others.addChildElement(QgsAttributeEditorField(f.name(), idx, others))
    root.addChildElement(others)
    layer.setEditFormConfig(config)
    # after setEditFormConfig, which would reset the widgets set before it
    root_dir = str(Path(gpkg).resolve().parent)
    for name in IMAGE_FIELDS:
        idx = fields.indexOf(name)
        if idx < 0:
            continue
        layer.setEditorWidgetSetup(
            idx,
            QgsEditorWidgetSetup(
                "ExternalResource",
                {
                    "DocumentViewer": 1,  # image
                    "DocumentViewerHeight": FORM_IMAGE_PX[1],
                    "DocumentViewerWidth": FORM_IMAGE_PX[0],
                    "FileWidget": True,
                    "FileWidgetButton": False,
                    "RelativeStorage": 2,  # relative to DefaultRoot
                    "DefaultRoot": root_dir,
                    "StorageMode": 0,
                    "UseLink": False,
                    "FullUrl": False,
                },
            ),
        )
    layer.setDisplayExpression('"file_name"')
    add_photo_action(layer)


#: name of the feature action that opens the photo next to its Grad-CAM overlay
PHOTO_ACTION = "Photo and Grad-CAM"
_PHOTO_ACTION_CODE = (
    "from qgis.core import QgsProject\n"
    "from qgis.utils import iface\n"
    "layer = QgsProject.instance().mapLayer('[% @layer_id %]')\n"
    "iface.openFeatureForm(layer, layer.getFeature([% $id %]), False, False)\n"
)


def add_photo_action(layer: QgsVectorLayer) -> None:
    """A feature action that opens the form with the photo next to its overlay: QGIS'
    Identify results list it under each feature, so the photo is one click away."""
    from qgis.core import QgsAction

    manager = layer.actions()
    for action in manager.actions():
        if action.name() == tr(PHOTO_ACTION):
            return
    action = QgsAction(
        QgsAction.ActionType.GenericPython,
        tr(PHOTO_ACTION),
        _PHOTO_ACTION_CODE,
        "",
        False,
        tr("Photo"),
        {"Feature", "Canvas"},
    )
    manager.addAction(action)


def configure_table(layer: QgsVectorLayer, layer_name: str) -> None:
    """Attribute table: the analyst's columns first (:data:`TABLE_ORDER`), sorted, and
    numbers shown with :data:`PRECISION` decimals (read-only formatting)."""
    fields = layer.fields()
    for name, decimals in PRECISION.items():
        idx = fields.indexOf(name)
        if idx < 0 or fields.at(idx).type() not in (QVariant.Double,):
            continue
        layer.setEditorWidgetSetup(
            idx,
            QgsEditorWidgetSetup(
                "Range",
                {"Precision": decimals, "Style": "SpinBox", "AllowNull": True,
                 "Min": -1e12, "Max": 1e12, "Step": 10.0 ** -decimals},
            ),
        )  # fmt: skip
    if layer_name not in TABLE_ORDER:
        return
    first, sort, ascending = TABLE_ORDER[layer_name]
    config = layer.attributeTableConfig()
    columns = config.columns()
    by_name = {c.name: c for c in columns}
    ordered = [by_name[n] for n in first if n in by_name]
    ordered += [c for c in columns if c.name not in first]
    config.setColumns(ordered)
    config.setSortExpression(sort)
    config.setSortOrder(Qt.SortOrder.AscendingOrder if ascending else Qt.SortOrder.DescendingOrder)
    layer.setAttributeTableConfig(config)


def configure_layer(layer: QgsVectorLayer, layer_name: str, gpkg: str | Path) -> None:
    """Everything the stored default style cannot hold (forms need the GeoPackage folder)."""
    if layer_name == "observations":
        configure_observations(layer, gpkg)
    configure_table(layer, layer_name)


def style_file(layer_name: str) -> Path | None:
    """The plugin's copy of a layer's default style (``resources/styles/<layer>.qml``):
    inside the installed plugin, else in the source tree (``core/io/qml``, the backend's
    copy that the plugin zip carries)."""
    here = Path(__file__).resolve().parent
    for folder in (here / "resources" / "styles", here.parent / "core" / "io" / "qml"):
        path = folder / f"{layer_name}.qml"
        if path.is_file():
            return path
    return None
