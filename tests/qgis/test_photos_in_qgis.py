"""The GeoPackage written by `heritage photos` opens in QGIS (3.22 on Debian 12)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from heritage.survey.photos import import_photos

pytestmark = pytest.mark.qgis


@pytest.fixture(scope="module")
def photos_gpkg(exif_gps: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("qgis_photos") / "survey.gpkg"
    summary = import_photos([exif_gps], out)
    assert summary.imported == 17
    return out


def test_photos_layer_loads_in_qgis(qgis_app, qgis_new_project, photos_gpkg: Path) -> None:
    from qgis.core import QgsProject, QgsVectorLayer, QgsWkbTypes

    layer = QgsVectorLayer(f"{photos_gpkg}|layername=photos", "photos", "ogr")
    assert layer.isValid(), layer.error().summary()
    assert layer.featureCount() == 17
    assert layer.crs().authid() == "EPSG:4326"
    assert layer.geometryType() == QgsWkbTypes.PointGeometry
    assert QgsWkbTypes.hasZ(layer.wkbType())
    names = layer.fields().names()
    for name in ("path", "file_name", "sha256", "latitude", "longitude", "altitude", "heading"):
        assert name in names
    by_name = {f["file_name"]: f for f in layer.getFeatures()}
    dscn = by_name["DSCN0010.jpg"]
    point = dscn.geometry().constGet()
    assert point.x() == pytest.approx(11.8851267, abs=1e-6)
    assert point.y() == pytest.approx(43.4674483, abs=1e-6)
    assert math.isnan(point.z())  # no altitude in that photo
    iphone = by_name["iphone_hdr_NO.jpg"].geometry().constGet()
    assert iphone.z() == pytest.approx(639.588, abs=1e-3)
    assert (photos_gpkg.parent / dscn["path"]).is_file()  # path relative to the GeoPackage
    assert QgsProject.instance().addMapLayer(layer) is not None


def test_invalid_photos_table_loads_in_qgis(qgis_app, photos_gpkg: Path) -> None:
    from qgis.core import QgsVectorLayer, QgsWkbTypes

    table = QgsVectorLayer(f"{photos_gpkg}|layername=invalid_photos", "invalid_photos", "ogr")
    assert table.isValid(), table.error().summary()
    assert table.featureCount() == 19
    assert table.geometryType() == QgsWkbTypes.NullGeometry
    reasons = {f["reason"] for f in table.getFeatures()}
    assert reasons == {"no_gps"}
