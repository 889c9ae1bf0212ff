"""The inspection atlas: a QGIS print layout with one page per flagged building.

:func:`create_atlas_layout` adds (or replaces) a layout in the project whose atlas runs
over ``flagged_buildings`` in visiting order. Each page holds a title with the stop,
the building and its priority, a map of the building (atlas-driven, with a scale bar
and a north arrow), an overview map of the whole round with the route and a frame
around the page's building, and the building's three strongest flagged photos, each
with its Grad-CAM overlay and a caption. The layout is saved with the project, so the
analyst can adjust it in the layout designer; :func:`export_atlas` writes the PDF
through QGIS' own :class:`QgsLayoutExporter`.

Photo paths come from expressions on the ``observations`` layer (an ``aggregate`` over
the atlas building's photos), relative to the GeoPackage's folder, so the layout
follows the survey when it moves with its overlay folder.
"""

from __future__ import annotations

import math
from pathlib import Path

from qgis.core import (
    QgsApplication,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsLayout,
    QgsLayoutExporter,
    QgsLayoutItem,
    QgsLayoutItemLabel,
    QgsLayoutItemMap,
    QgsLayoutItemMapOverview,
    QgsLayoutItemPage,
    QgsLayoutItemPicture,
    QgsLayoutItemScaleBar,
    QgsLayoutObject,
    QgsLayoutPoint,
    QgsLayoutSize,
    QgsPrintLayout,
    QgsProject,
    QgsProperty,
    QgsRectangle,
    QgsScaleBarSettings,
    QgsUnitTypes,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import QCoreApplication
from qgis.PyQt.QtGui import QColor, QFont

#: photos (with their overlays) shown per building page
PHOTOS_PER_PAGE = 3
MM = QgsUnitTypes.LayoutMillimeters


def tr(text: str) -> str:
    """Translate ``text`` (context "Heritage")."""
    return QCoreApplication.translate("Heritage", text)


def layout_name(gpkg: str | Path) -> str:
    """The layout's name in the project: ``Heritage inspection atlas: <survey>``."""
    return tr("Heritage inspection atlas: {0}").format(Path(gpkg).stem)


def _photo_expr(obs: QgsVectorLayer, expression: str, k: int) -> str:
    """Expression: ``expression`` over the k-th (0-based) flagged photo of the atlas
    building, strongest first (NULL when the building has fewer)."""
    return (
        f"array_get(aggregate(layer:='{obs.id()}', aggregate:='array_agg', "
        f"expression:={expression}, "
        'filter:="building_id" = attribute(@parent, \'building_id\') AND "flagged", '
        f'order_by:=-"priority_score"), {k})'
    )


def _path_expr(obs: QgsVectorLayer, column: str, k: int) -> str:
    folder = f"file_path(layer_property('{obs.id()}', 'path'))"
    quoted = f'"{column}"'
    return f"{folder} || '/' || {_photo_expr(obs, quoted, k)}"


#: the caption of a photo on the atlas page
CAPTION = (
    "\"file_name\" || '  ·  ' || \"priority_category\" || ' ' || "
    'format_number("priority_score", 1) || \'  ·  p \' || format_number("p_final", 3) || '
    "coalesce('  ·  ' || \"taken_at\", '') || "
    "coalesce('  ·  heading ' || format_number(\"heading\", 0) || '°', '')"
)


def _label(layout: QgsLayout, text: str, x: float, y: float, w: float, h: float, size: float,
           bold: bool = False) -> QgsLayoutItemLabel:  # fmt: skip
    label = QgsLayoutItemLabel(layout)
    label.setText(text)
    font = QFont("DejaVu Sans", 1)
    font.setPointSizeF(size)
    font.setBold(bold)
    label.setFont(font)
    layout.addLayoutItem(label)
    label.attemptMove(QgsLayoutPoint(x, y, MM))
    label.attemptResize(QgsLayoutSize(w, h, MM))
    return label


def _picture(layout: QgsLayout, expr: str, x: float, y: float, w: float, h: float):
    """A picture whose file is ``expr``; left out of the page when ``expr`` is NULL."""
    pic = QgsLayoutItemPicture(layout)
    pic.setResizeMode(QgsLayoutItemPicture.Zoom)
    props = pic.dataDefinedProperties()
    props.setProperty(QgsLayoutObject.PictureSource, QgsProperty.fromExpression(expr))
    props.setProperty(
        QgsLayoutObject.ExcludeFromExports, QgsProperty.fromExpression(f"({expr}) IS NULL")
    )
    pic.setDataDefinedProperties(props)
    pic.setPictureAnchor(QgsLayoutItem.Middle)
    pic.setFrameEnabled(True)
    pic.setFrameStrokeColor(QColor("#999999"))
    layout.addLayoutItem(pic)
    pic.attemptMove(QgsLayoutPoint(x, y, MM))
    pic.attemptResize(QgsLayoutSize(w, h, MM))
    return pic


def _north_arrow_svg() -> str | None:
    for folder in QgsApplication.svgPaths():
        path = Path(folder) / "arrows" / "NorthArrow_02.svg"
        if path.is_file():
            return str(path)
    return None


def metric_crs(layer: QgsVectorLayer) -> QgsCoordinateReferenceSystem:
    """The WGS84 UTM zone of the centre of ``layer`` (maps and scale bars in metres)."""
    to_wgs84 = QgsCoordinateTransform(
        layer.crs(), QgsCoordinateReferenceSystem("EPSG:4326"), QgsProject.instance()
    )
    centre = to_wgs84.transform(layer.extent().center())
    zone = min(60, max(1, math.floor((centre.x() + 180.0) / 6.0) + 1))
    return QgsCoordinateReferenceSystem(f"EPSG:{(32600 if centre.y() >= 0 else 32700) + zone}")


def _extent_in(layer: QgsVectorLayer, crs: QgsCoordinateReferenceSystem) -> QgsRectangle:
    tr_ = QgsCoordinateTransform(layer.crs(), crs, QgsProject.instance())
    return tr_.transformBoundingBox(layer.extent())


def _fit(item: QgsLayoutItemMap, extent: QgsRectangle, w: float, h: float) -> None:
    """Show ``extent`` in a ``w`` x ``h`` mm map item (zoomToExtent alone gives an empty
    extent on a new item in QGIS 3.22; setExtent alone resizes the item)."""
    item.setExtent(extent)
    item.attemptResize(QgsLayoutSize(w, h, MM))
    item.zoomToExtent(extent)


def create_atlas_layout(
    project: QgsProject,
    buildings: QgsVectorLayer,
    observations: QgsVectorLayer,
    route: QgsVectorLayer | None,
    name: str,
    survey_name: str = "",
) -> QgsPrintLayout:
    """A landscape A4 atlas layout over ``buildings`` (visiting order), added to
    ``project``'s layout manager (a layout of the same name is replaced)."""
    manager = project.layoutManager()
    old = manager.layoutByName(name)
    if old is not None:
        manager.removeLayout(old)
    layout = QgsPrintLayout(project)
    layout.initializeDefaults()
    layout.setName(name)
    page = layout.pageCollection().page(0)
    page.setPageSize("A4", QgsLayoutItemPage.Landscape)

    layers = [lyr for lyr in (route, observations, buildings) if lyr is not None]
    crs = metric_crs(buildings)

    atlas = layout.atlas()
    atlas.setCoverageLayer(buildings)
    atlas.setEnabled(True)
    atlas.setSortFeatures(True)
    atlas.setSortExpression('"visit_order"')
    atlas.setSortAscending(True)
    atlas.setPageNameExpression("'stop ' || \"visit_order\" || ', building ' || \"building_id\"")
    atlas.setFilenameExpression("'stop_' || lpad(\"visit_order\", 3, '0')")

    _label(
        layout,
        "[% 'Stop ' || \"visit_order\" || ' of ' || @atlas_totalfeatures || ':  building ' "
        "|| \"building_id\" || '  ·  priority ' || \"priority_category\" || '  ·  score ' "
        "|| format_number(\"priority_score\", 1) %]",
        10, 7, 277, 9, 14, True,
    )  # fmt: skip
    leg = (
        "coalesce('leg ' || format_number(aggregate(layer:='" + route.id() + "', "
        'aggregate:=\'max\', expression:="leg_m", filter:="to_id" = '
        "to_string(attribute(@parent, 'building_id'))), 0) || ' m from the previous stop', "
        "'first stop')"
        if route is not None
        else "'no route'"
    )
    _label(
        layout,
        f"[% \"n_flagged\" || ' of ' || \"n_photos\" || ' photo(s) flagged  ·  ' || {leg} %]",
        10, 16, 277, 6, 9,
    )  # fmt: skip

    main = QgsLayoutItemMap(layout)
    main.setLayers(layers)
    main.setKeepLayerSet(True)
    main.setCrs(crs)
    main.setFrameEnabled(True)
    layout.addLayoutItem(main)
    main.attemptMove(QgsLayoutPoint(10, 24, MM))
    main.attemptResize(QgsLayoutSize(140, 112, MM))
    main.setAtlasDriven(True)
    main.setAtlasScalingMode(QgsLayoutItemMap.Auto)
    main.setAtlasMargin(1.5)
    _fit(main, _extent_in(buildings, crs), 140, 112)

    bar = QgsLayoutItemScaleBar(layout)
    bar.setStyle("Single Box")
    bar.setLinkedMap(main)
    bar.setUnits(QgsUnitTypes.DistanceMeters)
    bar.setUnitLabel("m")
    bar.setNumberOfSegments(2)
    bar.setNumberOfSegmentsLeft(0)
    bar.setSegmentSizeMode(QgsScaleBarSettings.SegmentSizeFitWidth)
    bar.setMinimumBarWidth(20)
    bar.setMaximumBarWidth(45)
    layout.addLayoutItem(bar)
    bar.attemptMove(QgsLayoutPoint(12, 124, MM))

    svg = _north_arrow_svg()
    if svg is not None:
        arrow = QgsLayoutItemPicture(layout)
        arrow.setPicturePath(svg)
        arrow.setLinkedMap(main)
        layout.addLayoutItem(arrow)
        arrow.attemptMove(QgsLayoutPoint(139, 26, MM))
        arrow.attemptResize(QgsLayoutSize(9, 12, MM))

    overview = QgsLayoutItemMap(layout)
    overview.setLayers(layers)
    overview.setKeepLayerSet(True)
    overview.setCrs(crs)
    overview.setFrameEnabled(True)
    layout.addLayoutItem(overview)
    overview.attemptMove(QgsLayoutPoint(10, 140, MM))
    overview.attemptResize(QgsLayoutSize(140, 62, MM))
    extent = _extent_in(buildings, crs)
    if route is not None and route.featureCount():
        extent.combineExtentWith(_extent_in(route, crs))
    extent.scale(1.15)
    _fit(overview, extent, 140, 62)
    frame = QgsLayoutItemMapOverview(tr("page's building"), overview)
    frame.setLinkedMap(main)
    overview.overviews().addOverview(frame)

    x0, w, h, row = 156, 64.0, 44.0, 59.0
    for k in range(PHOTOS_PER_PAGE):
        y = 24 + k * row
        _picture(layout, _path_expr(observations, "thumbnail_path", k), x0, y, w, h)
        _picture(layout, _path_expr(observations, "overlay_path", k), x0 + w + 3, y, w, h)
        caption = f"[% coalesce({_photo_expr(observations, CAPTION, k)}, '') %]"
        _label(layout, caption, x0, y + h + 0.5, 2 * w + 3, 8, 7)
    _label(
        layout,
        "[% 'photo (left) and Grad-CAM overlay (right) of the strongest flagged photos  ·  page '"
        " || @atlas_featurenumber || ' of ' || @atlas_totalfeatures || '  ·  survey "
        + Path(survey_name).name.replace("'", "''")
        + "' %]",
        10, 203, 277, 5, 7,
    )  # fmt: skip
    manager.addLayout(layout)
    return layout


def export_atlas(layout: QgsPrintLayout, pdf: str | Path, dpi: float = 150.0) -> int:
    """Export the atlas of ``layout`` to one PDF through QgsLayoutExporter; returns its
    page count. Raises RuntimeError with QGIS' message on failure."""
    atlas = layout.atlas()
    settings = QgsLayoutExporter.PdfExportSettings()
    settings.dpi = dpi
    settings.rasterizeWholeImage = False
    settings.forceVectorOutput = False
    Path(pdf).parent.mkdir(parents=True, exist_ok=True)
    result, error = QgsLayoutExporter.exportToPdf(atlas, str(pdf), settings)
    if result != QgsLayoutExporter.Success:
        raise RuntimeError(
            error or tr("the layout could not be exported (code {0})").format(result)
        )
    return atlas.count()


def survey_layers_in(project: QgsProject, gpkg: str | Path) -> dict[str, QgsVectorLayer]:
    """The survey layers of ``gpkg`` already in ``project`` (``{layer name: layer}``)."""
    target = Path(gpkg).resolve()
    found: dict[str, QgsVectorLayer] = {}
    for layer in project.mapLayers().values():
        if not isinstance(layer, QgsVectorLayer) or layer.providerType() != "ogr":
            continue
        parts = layer.source().split("|")
        name = next((p.split("=", 1)[1] for p in parts[1:] if p.startswith("layername=")), None)
        if name and Path(parts[0]).resolve() == target:
            found.setdefault(name, layer)
    return found


def create_inspection_atlas(
    project: QgsProject, gpkg: str | Path, pdf: str | Path | None = None
) -> tuple[QgsPrintLayout, int]:
    """Build the atlas layout of the survey ``gpkg`` in ``project`` (its layers are
    loaded, styled, when the project does not hold them yet) and, with ``pdf``,
    export it. Returns the layout and its number of pages (one per flagged building).

    Raises ValueError when the survey has no flagged building.
    """
    from .results import load_survey

    layers = survey_layers_in(project, gpkg)
    if not {"observations", "flagged_buildings"} <= set(layers):
        layers = load_survey(gpkg, project)
    buildings = layers.get("flagged_buildings")
    observations = layers.get("observations")
    if buildings is None or observations is None:
        raise ValueError(
            tr("{0} is not a classified survey (no observations or flagged_buildings layer)")
            .format(gpkg)
        )  # fmt: skip
    if buildings.featureCount() == 0:
        raise ValueError(tr("The survey has no flagged building: there is nothing to inspect."))
    layout = create_atlas_layout(
        project,
        buildings,
        observations,
        layers.get("inspection_route"),
        layout_name(gpkg),
        survey_name=Path(gpkg).name,
    )
    pages = export_atlas(layout, pdf) if pdf is not None else layout.atlas().count()
    return layout, pages
