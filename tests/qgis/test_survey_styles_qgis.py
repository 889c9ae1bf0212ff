"""A survey GeoPackage opens in headless QGIS 3.22 with its default styles."""

from __future__ import annotations

from pathlib import Path

import pytest
from factories import tiny_model_dir
from helpers import arezzo_survey

pytestmark = pytest.mark.qgis

CATEGORIES = {"A", "B", "C", "D", "E", "F", "none"}


@pytest.fixture(scope="module")
def survey_gpkg(exif_gps: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("qgis_survey")
    model = tiny_model_dir(
        tmp / "m",
        model_id="tiny-qgis",
        labels=("crack", "no_crack", "salt"),
        positives=("crack",),
        threshold=0.0,  # every photo flagged: buildings and a route for sure
    )
    return arezzo_survey(tmp, tmp / "survey.gpkg", exif_gps, model)


def _layer(gpkg: Path, name: str):
    from qgis.core import QgsVectorLayer

    layer = QgsVectorLayer(f"{gpkg}|layername={name}", name, "ogr")
    assert layer.isValid(), layer.error().summary()
    return layer


def test_observations_open_with_categorised_style_and_map_tip(
    qgis_app, qgis_new_project, survey_gpkg: Path
) -> None:
    from qgis.core import QgsExpression, QgsExpressionContext, QgsExpressionContextUtils

    layer = _layer(survey_gpkg, "observations")
    assert layer.featureCount() == 9
    renderer = layer.renderer()
    assert renderer.type() == "categorizedSymbol"
    # the priority category, or not_assessable when scene mode saw no wall
    assert renderer.classAttribute() == (
        "if(\"decision\" = 'not_assessable', 'not_assessable', \"priority_category\")"
    )
    values = {c.value() for c in renderer.categories()}
    assert values >= CATEGORIES | {"not_assessable"}
    colours = {c.value(): c.symbol().color().name() for c in renderer.categories()}
    assert colours["A"] == "#67000d" and colours["none"] == "#8c8c8c"
    tip = layer.mapTipTemplate()
    assert "thumbnail_path" in tip and "overlay_path" in tip
    # the path expression of the map tip resolves to the thumbnail file of a feature
    feature = next(layer.getFeatures())
    ctx = QgsExpressionContext(QgsExpressionContextUtils.globalProjectLayerScopes(layer))
    ctx.setFeature(feature)
    expr = QgsExpression("file_path(layer_property(@layer,'path')) || '/' || \"thumbnail_path\"")
    path = Path(expr.evaluate(ctx))
    assert not expr.hasEvalError(), expr.evalErrorString()
    assert path.is_file() and path.suffix == ".jpg"
    html = QgsExpression.replaceExpressionText(tip, ctx)
    assert str(path) in html and "_overlay.jpg" in html


def test_buildings_and_route_open_styled(qgis_app, survey_gpkg: Path) -> None:
    buildings = _layer(survey_gpkg, "flagged_buildings")
    assert buildings.featureCount() >= 2
    assert buildings.renderer().type() == "categorizedSymbol"
    assert buildings.renderer().classAttribute() == "priority_category"
    assert buildings.labelsEnabled()
    route = _layer(survey_gpkg, "inspection_route")
    assert route.featureCount() == buildings.featureCount() - 1
    symbol_layer = route.renderer().symbol().symbolLayer(0)
    assert symbol_layer.layerType() == "ArrowLine"
    assert route.labelsEnabled()
    assert {"order", "cumulative_m"} <= set(route.fields().names())
