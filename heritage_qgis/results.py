"""The one way survey results reach a QGIS project.

The survey dialog and every Processing algorithm (through its layer post-processor)
call :func:`present_layer` for each layer of a survey GeoPackage, so a layer looks the
same whichever way it was produced: the default style stored in the GeoPackage (the
plugin's copy when there is none), labels and map tips from that style, forms and
attribute table (:mod:`heritage_qgis.layers`), a name with counts, a place in the
group named after the GeoPackage (an older copy of the same layer is replaced), and a
projected project CRS (the local UTM zone) when the project is still geographic.
"""

from __future__ import annotations

import contextlib
import math
import statistics
from pathlib import Path

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsLayerTreeGroup,
    QgsLayerTreeLayer,
    QgsMapLayer,
    QgsProject,
    QgsRectangle,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import QCoreApplication

from .layers import SURVEY_LAYERS, configure_layer, display_names, existing_layers, style_file

#: survey layers in layer-tree order, top first (layers of other names go below)
LAYER_ORDER = (
    "inspection_route",
    "observations",
    "flagged_buildings",
    "photos",
    "raster_defects",
    "invalid_photos",
)
#: layers whose points say where the survey is (first present one wins)
LOCATION_LAYERS = ("observations", "photos", "flagged_buildings", "raster_defects")
WGS84 = "EPSG:4326"


def tr(text: str) -> str:
    """Translate ``text`` (context "Heritage")."""
    return QCoreApplication.translate("Heritage", text)


def group_name(gpkg: str | Path) -> str:
    """The layer-tree group of a survey GeoPackage: ``Heritage survey: <stem>``."""
    return tr("Heritage survey: {0}").format(Path(gpkg).stem)


def layer_uri(gpkg: str | Path, layer_name: str) -> str:
    """The OGR source of one layer of ``gpkg``."""
    return f"{gpkg}|layername={layer_name}"


def style_layer(layer: QgsVectorLayer, layer_name: str, gpkg: str | Path) -> None:
    """Default style (stored in the GeoPackage, else the plugin's QML), forms, table
    and the display name with counts."""
    ok = False
    with contextlib.suppress(Exception):
        _, ok = layer.loadDefaultStyle()
    fallback = style_file(layer_name)
    if not ok and fallback is not None:  # a GeoPackage from before styles were stored
        layer.loadNamedStyle(str(fallback))
    configure_layer(layer, layer_name, gpkg)
    name = display_names(gpkg).get(layer_name)
    if name:
        layer.setName(name)


def _same_source(a: str, b: str) -> bool:
    def norm(uri: str) -> tuple[str, str]:
        path, _, rest = uri.partition("|")
        with contextlib.suppress(OSError):
            path = str(Path(path).resolve())
        return path, rest

    return norm(a) == norm(b)


def _rank(layer_name: str) -> int:
    return LAYER_ORDER.index(layer_name) if layer_name in LAYER_ORDER else len(LAYER_ORDER)


def place_layer(
    project: QgsProject,
    layer: QgsMapLayer,
    layer_name: str,
    gpkg: str | Path,
    group: str | None = None,
) -> QgsLayerTreeGroup:
    """Put ``layer`` (added to ``project`` here if needed) into the survey's group
    (``group``, default :func:`group_name`) at its place in :data:`LAYER_ORDER`; other
    layers of the project with the same source (an earlier load) are removed."""
    root = project.layerTreeRoot()
    name = group or group_name(gpkg)
    group = root.findGroup(name)
    if group is None:
        group = root.insertGroup(0, name)
    stale = [
        other.id()
        for other in project.mapLayers().values()
        if other.id() != layer.id() and _same_source(other.source(), layer.source())
    ]
    if stale:
        project.removeMapLayers(stale)
    if project.mapLayer(layer.id()) is None:
        project.addMapLayer(layer, False)
    node = root.findLayer(layer.id())
    layer.setCustomProperty("heritage/layer", layer_name)
    position = 0
    for child in group.children():
        if child is node:
            continue
        other = child.layer() if isinstance(child, QgsLayerTreeLayer) else None
        key = other.customProperty("heritage/layer", "") if other is not None else ""
        if _rank(str(key)) <= _rank(layer_name):
            position += 1
    if node is None:
        group.insertLayer(position, layer)
    elif node.parent() is not group or group.children().index(node) != position:
        clone = node.clone()
        parent = node.parent()
        group.insertChildNode(position, clone)
        parent.removeChildNode(node)
    return group


def survey_lon_lat(gpkg: str | Path) -> tuple[float, float] | None:
    """The median longitude and latitude of the survey's located features (robust to
    a few far-away photos), or None when nothing is located."""
    present = existing_layers(gpkg)
    for name in LOCATION_LAYERS:
        if name not in present:
            continue
        layer = QgsVectorLayer(layer_uri(gpkg, name), name, "ogr")
        if not layer.isValid():
            continue
        wgs = QgsCoordinateReferenceSystem(WGS84)
        xform = None
        if layer.crs().isValid() and layer.crs() != wgs:
            xform = QgsCoordinateTransform(layer.crs(), wgs, QgsProject.instance())
        lons, lats = [], []
        for feature in layer.getFeatures():
            geom = feature.geometry()
            if geom is None or geom.isNull() or geom.isEmpty():
                continue
            pt = geom.centroid().asPoint()
            if xform is not None:
                pt = xform.transform(pt)
            lons.append(pt.x())
            lats.append(pt.y())
        if lons:
            return statistics.median(lons), statistics.median(lats)
    return None


def utm_crs(lon: float, lat: float) -> QgsCoordinateReferenceSystem:
    """The WGS84 UTM zone of ``(lon, lat)`` (EPSG:326xx north, 327xx south)."""
    zone = min(60, max(1, math.floor((lon + 180.0) / 6.0) + 1))
    return QgsCoordinateReferenceSystem(f"EPSG:{(32600 if lat >= 0 else 32700) + zone}")


def use_projected_crs(project: QgsProject, gpkg: str | Path) -> QgsCoordinateReferenceSystem:
    """Give ``project`` the local UTM zone of the survey unless it is already projected;
    returns the project's CRS."""
    crs = project.crs()
    if crs.isValid() and not crs.isGeographic():
        return crs
    where = survey_lon_lat(gpkg)
    if where is not None and -80.0 <= where[1] <= 84.0:
        utm = utm_crs(*where)
        if utm.isValid():
            project.setCrs(utm)
    return project.crs()


def present_layer(
    layer: QgsVectorLayer,
    layer_name: str,
    gpkg: str | Path,
    project: QgsProject | None = None,
    group: str | None = None,
) -> QgsVectorLayer:
    """Everything a survey layer needs in a project (see the module docstring)."""
    project = project or QgsProject.instance()
    style_layer(layer, layer_name, gpkg)
    place_layer(project, layer, layer_name, gpkg, group)
    use_projected_crs(project, gpkg)
    return layer


def load_survey(
    gpkg: str | Path,
    project: QgsProject | None = None,
    names: tuple[str, ...] = SURVEY_LAYERS,
    group_name: str | None = None,
) -> dict[str, QgsVectorLayer]:
    """Open the layers ``names`` of ``gpkg`` that exist and present them (in the group
    ``group_name``, default ``Heritage survey: <stem>``); returns ``{layer name:
    layer}``. Loading again replaces the earlier layers."""
    project = project or QgsProject.instance()
    present = existing_layers(gpkg)
    loaded: dict[str, QgsVectorLayer] = {}
    for name in names:
        if name not in present:
            continue
        layer = QgsVectorLayer(layer_uri(gpkg, name), name, "ogr")
        if layer.isValid():
            loaded[name] = present_layer(layer, name, gpkg, project, group_name)
    return loaded


def survey_extent(
    layers: list[QgsMapLayer], crs: QgsCoordinateReferenceSystem, project: QgsProject
) -> QgsRectangle:
    """The extent of ``layers`` in ``crs`` (grown by 10 %), empty when they have none."""
    extent = QgsRectangle()
    for layer in layers:
        if not layer.isValid() or layer.extent().isEmpty():
            continue
        xform = QgsCoordinateTransform(layer.crs(), crs, project)
        with contextlib.suppress(Exception):
            extent.combineExtentWith(xform.transformBoundingBox(layer.extent()))
    if not extent.isEmpty():
        extent.grow(max(extent.width(), extent.height(), 50.0) * 0.1)
    return extent


def zoom_to(canvas, layers: list[QgsMapLayer], project: QgsProject | None = None) -> None:
    """Zoom ``canvas`` (if any) to ``layers``."""
    if canvas is None:
        return
    project = project or QgsProject.instance()
    extent = survey_extent(layers, canvas.mapSettings().destinationCrs(), project)
    if not extent.isEmpty():
        canvas.setExtent(extent)
        canvas.refresh()


#: OpenStreetMap's standard tiles (XYZ), as QGIS' own "OpenStreetMap" XYZ entry
OSM_URI = "type=xyz&url=https://tile.openstreetmap.org/{z}/{x}/{y}.png&zmax=19&zmin=0&crs=EPSG3857"
OSM_NAME = "OpenStreetMap"


def add_basemap(project: QgsProject | None = None) -> QgsMapLayer | None:
    """Add the OpenStreetMap basemap at the bottom of the layer tree (once); needs the
    network when drawn, so it is only added when the user asks."""
    from qgis.core import QgsRasterLayer

    project = project or QgsProject.instance()
    for layer in project.mapLayersByName(OSM_NAME):
        return layer
    layer = QgsRasterLayer(OSM_URI, OSM_NAME, "wms")
    if not layer.isValid():
        return None
    layer.setAttribution("\u00a9 OpenStreetMap contributors")
    project.addMapLayer(layer, False)
    project.layerTreeRoot().insertLayer(-1, layer)
    return layer


def iface_canvas():
    """The QGIS desktop's map canvas, or None (qgis_process, tests without an iface)."""
    try:
        from qgis.utils import iface
    except ImportError:
        return None
    return iface.mapCanvas() if iface is not None else None
