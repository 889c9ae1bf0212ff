"""Generate the default QGIS styles of a survey GeoPackage (core/io/qml/*.qml).

Run once with PyQGIS (QGIS 3.22) and commit the result:

    QT_QPA_PLATFORM=offscreen .venv/bin/python scripts/make_styles.py

The core (``heritage.io.styles``) only copies these QML texts into the GeoPackage's
``layer_styles`` table; it never imports QGIS.

* ``observations``: points categorised on ``priority_category`` (A dark red ... F
  light grey, ``none`` small grey; a hollow square where ``decision`` is
  ``not_assessable``), labelled with the review (a check mark for confirmed, a cross
  for a false alarm, + for a missed defect, ? for unsure), map tip =
  ``resources/maptip.html`` (thumbnail next to the Grad-CAM overlay);
* ``flagged_buildings``: polygons filled by ``priority_category``, labelled with
  ``visit_order``;
* ``inspection_route``: a dark line with arrows along each leg, labelled with the leg
  ``order``.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "core" / "io" / "qml"
MAPTIP = ROOT / "resources" / "maptip.html"

#: category -> (fill colour, legend label); matches heritage.survey.priority.CATEGORY_LABELS
CATEGORY_STYLE = {
    "A": ("#67000d", "A - Immediate risk"),
    "B": ("#c62828", "B - High risk"),
    "C": ("#ef6c00", "C - Slow decay, widespread"),
    "D": ("#f9a825", "D - Slow decay, localised"),
    "E": ("#fff176", "E - Minor signs"),
    "F": ("#cfcfcf", "F - Weak evidence"),
    "none": ("#8c8c8c", "Not flagged"),
}


#: the observations' symbol class: the priority category, or not_assessable (scene mode)
NOT_ASSESSABLE = "not_assessable"
CATEGORY_EXPRESSION = (
    f"if(\"decision\" = '{NOT_ASSESSABLE}', '{NOT_ASSESSABLE}', \"priority_category\")"
)


#: the label of a reviewed photo (heritage.io.reviews verdicts); NULL (no label) otherwise
REVIEW_LABEL = (
    "CASE WHEN \"review\" = 'confirmed' THEN '\u2714' WHEN \"review\" = 'false_alarm' "
    "THEN '\u2718' WHEN \"review\" = 'missed' THEN '+' WHEN \"review\" = 'unsure' "
    "THEN '?' END"
)


def _memory_layer(geometry: str, fields: dict[str, str], name: str):
    from qgis.core import QgsVectorLayer

    spec = "&".join(f"field={k}:{v}" for k, v in fields.items())
    layer = QgsVectorLayer(f"{geometry}?crs=EPSG:4326&{spec}", name, "memory")
    assert layer.isValid(), f"cannot build the memory layer {name}"
    return layer


def _labels(
    layer,
    expression: str,
    size: float = 9.0,
    placement=None,
    priority: int = 5,
    distance_mm: float = 0.0,
) -> None:
    """Buffered black labels; ``priority`` 0-10 (10 placed first), obstacles on, so the
    labels of one layer avoid the features and labels of the others."""
    from qgis.core import (
        QgsPalLayerSettings,
        QgsTextBufferSettings,
        QgsTextFormat,
        QgsVectorLayerSimpleLabeling,
    )
    from qgis.PyQt.QtGui import QColor

    settings = QgsPalLayerSettings()
    settings.fieldName = expression
    settings.isExpression = True
    if placement is not None:
        settings.placement = placement
    settings.priority = priority
    settings.dist = distance_mm
    settings.obstacleSettings().setIsObstacle(True)
    fmt = QgsTextFormat()
    fmt.setSize(size)
    fmt.setColor(QColor("black"))
    buffer = QgsTextBufferSettings()
    buffer.setEnabled(True)
    buffer.setSize(1.0)
    buffer.setColor(QColor("white"))
    fmt.setBuffer(buffer)
    settings.setFormat(fmt)
    layer.setLabeling(QgsVectorLayerSimpleLabeling(settings))
    layer.setLabelsEnabled(True)


def _blocking(layer) -> None:
    """No labels of its own, but other layers' labels avoid the features (QGIS'
    "Blocking" labelling mode)."""
    from qgis.core import QgsPalLayerSettings, QgsVectorLayerSimpleLabeling

    settings = QgsPalLayerSettings()
    settings.drawLabels = False
    settings.obstacleSettings().setIsObstacle(True)
    layer.setLabeling(QgsVectorLayerSimpleLabeling(settings))
    layer.setLabelsEnabled(True)


def observations_style():
    from qgis.core import (
        QgsCategorizedSymbolRenderer,
        QgsMarkerSymbol,
        QgsRendererCategory,
    )

    layer = _memory_layer(
        "Point",
        {
            "file_name": "string",
            "decision": "string",
            "priority_category": "string",
            "priority_score": "double",
            "p_final": "double",
            "thumbnail_path": "string",
            "overlay_path": "string",
            "review": "string",
        },
        "observations",
    )
    cats = []
    for code, (colour, label) in CATEGORY_STYLE.items():
        size = "2.4" if code == "none" else "4.2"
        symbol = QgsMarkerSymbol.createSimple(
            {"name": "circle", "color": colour, "outline_color": "#222222",
             "outline_width": "0.3", "size": size}
        )  # fmt: skip
        cats.append(QgsRendererCategory(code, symbol, label))
    # scene mode's "no wall surface in view": a hollow square, apart from "not flagged"
    unjudged = QgsMarkerSymbol.createSimple(
        {"name": "square", "color": "255,255,255,0", "outline_color": "#5a5a5a",
         "outline_width": "0.4", "size": "2.6"}
    )  # fmt: skip
    cats.append(QgsRendererCategory(NOT_ASSESSABLE, unjudged, "Not assessable (no wall in view)"))
    other = QgsMarkerSymbol.createSimple({"name": "circle", "color": "#ffffff", "size": "2"})
    cats.append(QgsRendererCategory(None, other, "not prioritised yet"))
    renderer = QgsCategorizedSymbolRenderer(CATEGORY_EXPRESSION, cats)
    layer.setRenderer(renderer)
    layer.setMapTipTemplate(MAPTIP.read_text(encoding="utf-8"))
    layer.setDisplayExpression('"file_name"')
    # the reviewer's verdict beside the point; unreviewed photos carry no label
    _labels(layer, REVIEW_LABEL, 11.0, priority=1, distance_mm=0.6)
    return layer


def buildings_style():
    from qgis.core import (
        QgsCategorizedSymbolRenderer,
        QgsFillSymbol,
        QgsPalLayerSettings,
        QgsRendererCategory,
    )

    layer = _memory_layer(
        "MultiPolygon",
        {
            "building_id": "integer",
            "priority_category": "string",
            "visit_order": "integer",
            "site": "integer",
        },
        "flagged_buildings",
    )
    cats = []
    for code, (colour, label) in CATEGORY_STYLE.items():
        symbol = QgsFillSymbol.createSimple(
            {"color": colour, "outline_color": "#333333", "outline_width": "0.4",
             "style": "solid"}
        )  # fmt: skip
        symbol.setOpacity(0.55)
        cats.append(QgsRendererCategory(code, symbol, label))
    layer.setRenderer(QgsCategorizedSymbolRenderer("priority_category", cats))
    # the visit number is the one number of a building: label, map tip, table
    _labels(
        layer,
        "'#' || \"visit_order\" || ' ' || \"priority_category\"",
        10.0,
        QgsPalLayerSettings.AroundPoint,
        priority=10,
        distance_mm=1.5,
    )
    layer.setMapTipTemplate(
        '<b>Visit #[% "visit_order" %]</b> (site [% "site" %]) &mdash; priority '
        '[% "priority_category" %] ([% round("priority_score", 0) %]), building '
        '[% "building_id" %]<br/>[% "n_flagged" %] of [% "n_photos" %] photo(s) flagged: '
        '[% "flagged_file_names" %]'
    )
    layer.setDisplayExpression("'#' || \"visit_order\" || ' ' || \"priority_category\"")
    return layer


def route_style():
    from qgis.core import (
        QgsArrowSymbolLayer,
        QgsLineSymbol,
        QgsPalLayerSettings,
        QgsSingleSymbolRenderer,
    )
    from qgis.PyQt.QtGui import QColor

    layer = _memory_layer(
        "LineString",
        {
            "order": "integer",
            "leg_m": "double",
            "cumulative_m": "double",
            "site": "integer",
            "to_visit": "integer",
            "to_id": "string",
        },
        "inspection_route",
    )
    symbol = QgsLineSymbol()
    arrow = QgsArrowSymbolLayer()
    arrow.setIsCurved(False)
    arrow.setIsRepeated(True)
    arrow.setArrowWidth(0.6)
    arrow.setArrowStartWidth(0.6)
    arrow.setHeadLength(2.5)
    arrow.setHeadThickness(1.8)
    arrow.subSymbol().setColor(QColor("#1f3b73"))
    symbol.changeSymbolLayer(0, arrow)
    layer.setRenderer(QgsSingleSymbolRenderer(symbol))
    # legs say how far, not a second numbering: the buildings carry the visit numbers
    _labels(
        layer,
        "format_number(\"leg_m\", 0) || ' m'",
        7.5,
        QgsPalLayerSettings.Line,
        priority=2,
        distance_mm=0.8,
    )
    layer.setMapTipTemplate(
        '<b>To visit #[% "to_visit" %]</b> (site [% "site" %]): '
        '[% format_number("leg_m", 0) %] m, [% format_number("cumulative_m", 0) %] m '
        "from the site's first stop"
    )
    layer.setDisplayExpression("'to #' || \"to_visit\"")
    return layer


def main() -> int:
    from qgis.core import QgsApplication

    app = QgsApplication([], False)
    app.initQgis()
    try:
        OUT.mkdir(parents=True, exist_ok=True)
        for make in (observations_style, buildings_style, route_style):
            layer = make()
            path = OUT / f"{layer.name()}.qml"
            message, ok = layer.saveNamedStyle(str(path))
            if not ok:
                print(f"cannot write {path}: {message}", file=sys.stderr)
                return 1
            print(f"wrote {path.relative_to(ROOT)}")
    finally:
        app.exitQgis()
    return 0


if __name__ == "__main__":
    sys.exit(main())
