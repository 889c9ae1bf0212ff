"""Parameter helpers shared by the algorithms and the survey dialog (QGIS only, no backend)."""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsPointXY,
    QgsProcessingContext,
    QgsProcessingUtils,
    QgsReferencedPointXY,
    QgsVectorFileWriter,
    QgsVectorLayer,
)

WGS84 = "EPSG:4326"
_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_POINT_RE = re.compile(rf"^\s*({_NUMBER})\s*,\s*({_NUMBER})\s*(?:\[\s*([^\]]*)\s*\])?\s*$")
START_HINT = "give it as lon,lat in degrees, longitude first (e.g. 11.8851,43.4674)"


def parse_lon_lat(text: str) -> tuple[float, float]:
    """``"lon,lat"`` or Processing's ``"x,y [EPSG:xxxx]"`` -> (lon, lat) in WGS84.

    Raises ValueError with a message a user can act on.
    """
    m = _POINT_RE.match(text or "")
    if not m:
        raise ValueError(f"Start point {text!r} is not a coordinate: {START_HINT}.")
    x, y = float(m.group(1)), float(m.group(2))
    authid = (m.group(3) or "").strip()
    if authid and authid.upper() != WGS84:
        crs = QgsCoordinateReferenceSystem(authid)
        if not crs.isValid():
            raise ValueError(f"Start point {text!r}: unknown coordinate system {authid!r}.")
        pt = to_wgs84(QgsPointXY(x, y), crs)
        x, y = pt.x(), pt.y()
    check_lon_lat(x, y, text)
    return x, y


def check_lon_lat(lon: float, lat: float, text: str = "") -> None:
    """ValueError unless ``lon`` in [-180, 180] and ``lat`` in [-90, 90]."""
    if not (-180.0 <= lon <= 180.0 and -90.0 <= lat <= 90.0):
        shown = text or f"{lon},{lat}"
        raise ValueError(
            f"Start point {shown!r} is outside the world in WGS84 degrees: {START_HINT}."
        )


def to_wgs84(point: QgsPointXY, crs: QgsCoordinateReferenceSystem) -> QgsPointXY:
    """``point`` (in ``crs``) in WGS84 lon/lat."""
    target = QgsCoordinateReferenceSystem(WGS84)
    if not crs.isValid() or crs == target:
        return QgsPointXY(point)
    from qgis.core import QgsProject

    xform = QgsCoordinateTransform(crs, target, QgsProject.instance().transformContext())
    return xform.transform(point)


def start_value_to_lon_lat(value: object) -> tuple[float, float] | None:
    """A START parameter value (None/"", text, QgsPointXY, QgsReferencedPointXY) -> lon/lat."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, QgsReferencedPointXY):
        pt = to_wgs84(QgsPointXY(value), value.crs())
        check_lon_lat(pt.x(), pt.y())
        return pt.x(), pt.y()
    if isinstance(value, QgsPointXY):
        check_lon_lat(value.x(), value.y())
        return value.x(), value.y()
    return parse_lon_lat(str(value))


def format_lon_lat(lon: float, lat: float) -> str:
    """``"lon,lat"`` with 7 decimals (about 1 cm)."""
    return f"{lon:.7f},{lat:.7f}"


def is_gpkg(path: str) -> bool:
    """True for a ``.gpkg`` path (case-insensitive)."""
    return Path(path).suffix.lower() == ".gpkg"


def check_folder(path: str, what: str) -> str | None:
    """A message when ``path`` is not an existing folder, else None."""
    if not path:
        return f"{what}: no folder given."
    if not os.path.isdir(path):
        return f"{what} not found: {path} (choose an existing folder)."
    return None


def check_gpkg_output(path: str, what: str = "Output") -> str | None:
    """A message when ``path`` is not a .gpkg in an existing, writable folder, else None."""
    if not path:
        return f"{what}: no file given."
    if not is_gpkg(path):
        return f"{what} must be a GeoPackage file ending in .gpkg, not {Path(path).name!r}."
    folder = Path(path).parent
    if not folder.is_dir():
        return f"{what}: the folder {folder} does not exist."
    if not os.access(folder, os.W_OK):
        return f"{what}: the folder {folder} is not writable."
    return None


def vector_file(layer: QgsVectorLayer, context: QgsProcessingContext) -> str:
    """A file the backend can read holding exactly ``layer``'s features.

    A plain OGR file layer (one layer, no filter) is passed as is; anything else
    (memory layers, a layer of a multi-layer GeoPackage, a filtered layer, a database)
    is written to a temporary GeoPackage first.
    """
    if layer.providerType() == "ogr" and not layer.subsetString():
        source = layer.source()
        path = source.split("|")[0]
        options = source.split("|")[1:]
        extra = [o for o in options if not o.startswith("layerid=0")]
        if os.path.isfile(path) and not extra:
            return path
    out = os.path.join(QgsProcessingUtils.tempFolder(), f"heritage_{uuid.uuid4().hex}.gpkg")
    opts = QgsVectorFileWriter.SaveVectorOptions()
    opts.driverName = "GPKG"
    opts.layerName = "features"
    err, msg, *_ = QgsVectorFileWriter.writeAsVectorFormatV3(
        layer, out, context.transformContext(), opts
    )
    if err != QgsVectorFileWriter.WriterError.NoError:
        raise OSError(f"cannot write {layer.name()} to {out}: {msg}")
    return out
