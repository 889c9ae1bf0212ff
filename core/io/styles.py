"""Default QGIS styles stored inside a survey GeoPackage (table ``layer_styles``).

QGIS loads the row of ``layer_styles`` marked ``useAsDefault`` for a layer when the
layer is opened, so the survey opens styled: observations coloured by priority
category with a map tip (thumbnail next to the Grad-CAM overlay), buildings filled
by category, the route as a line with arrows and leg numbers.

The table is created exactly as QGIS 3.22 creates it (``saveStyleToDatabase`` on a
GeoPackage; same columns, types and default, registered in ``gpkg_contents`` as an
attribute table, with OGR's feature-count triggers when the GeoPackage has
``gpkg_ogr_contents``). The QML texts come from ``heritage/io/qml/<layer>.qml``
(``core/io/qml`` in the source tree; package data, so an installed wheel has them),
generated once with PyQGIS by ``scripts/make_styles.py``. Standard library only: the
core never imports QGIS.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from heritage.kernel.errors import OutputNotWritableError

logger = logging.getLogger(__name__)

STYLES_DIR = Path(__file__).resolve().parent / "qml"
#: the layers that get a default style (QML file name = layer name)
STYLED_LAYERS = ("observations", "flagged_buildings", "inspection_route")
STYLE_TABLE = "layer_styles"

#: the CREATE TABLE statement of QGIS 3.22 (copied from a GeoPackage it wrote)
CREATE_LAYER_STYLES = (
    'CREATE TABLE "layer_styles" ( "id" INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, '
    '"f_table_catalog" TEXT(256), "f_table_schema" TEXT(256), "f_table_name" TEXT(256), '
    '"f_geometry_column" TEXT(256), "styleName" TEXT(30), "styleQML" TEXT, "styleSLD" TEXT, '
    '"useAsDefault" BOOLEAN, "description" TEXT, "owner" TEXT(30), "ui" TEXT(30), '
    "\"update_time\" DATETIME DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')))"
)
_TRIGGERS = (
    'CREATE TRIGGER "trigger_insert_feature_count_layer_styles" AFTER INSERT ON '
    '"layer_styles" BEGIN UPDATE gpkg_ogr_contents SET feature_count = feature_count + 1 '
    "WHERE lower(table_name) = lower('layer_styles'); END",
    'CREATE TRIGGER "trigger_delete_feature_count_layer_styles" AFTER DELETE ON '
    '"layer_styles" BEGIN UPDATE gpkg_ogr_contents SET feature_count = feature_count - 1 '
    "WHERE lower(table_name) = lower('layer_styles'); END",
)


def style_qml(layer: str, styles_dir: Path = STYLES_DIR) -> str:
    """The QML text of ``layer``'s default style (``heritage/io/qml/<layer>.qml``)."""
    path = styles_dir / f"{layer}.qml"
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise FileNotFoundError(
            f"style {path} is missing; regenerate it with scripts/make_styles.py"
        ) from exc


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + "000Z"


def ensure_style_table(con: sqlite3.Connection) -> None:
    """Create ``layer_styles`` (and its GeoPackage registration) as QGIS does, if missing."""
    exists = con.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (STYLE_TABLE,)
    ).fetchone()
    if exists:
        return
    con.execute(CREATE_LAYER_STYLES)
    con.execute(
        "INSERT INTO gpkg_contents (table_name, data_type, identifier, description, "
        "last_change, srs_id) VALUES (?, 'attributes', ?, '', ?, 0)",
        (STYLE_TABLE, STYLE_TABLE, _now()),
    )
    has_ogr = con.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'gpkg_ogr_contents'"
    ).fetchone()
    if has_ogr:
        con.execute(
            "INSERT INTO gpkg_ogr_contents (table_name, feature_count) VALUES (?, 0)",
            (STYLE_TABLE,),
        )
        for trigger in _TRIGGERS:
            con.execute(trigger)


def _geometry_column(con: sqlite3.Connection, table: str) -> str | None:
    row = con.execute(
        "SELECT column_name FROM gpkg_geometry_columns WHERE table_name = ?", (table,)
    ).fetchone()
    return str(row[0]) if row else None


def write_default_styles(
    gpkg: str | Path,
    layers: Iterable[str] = STYLED_LAYERS,
    styles_dir: Path = STYLES_DIR,
) -> list[str]:
    """Store each layer's QML as its default style in ``gpkg``; returns the layers styled.

    Layers absent from the GeoPackage are skipped. An earlier style row of the same
    layer and name is replaced; other styles of the layer lose ``useAsDefault``. One
    transaction.
    """
    gpkg = Path(gpkg)
    done: list[str] = []
    try:
        con = sqlite3.connect(gpkg)
        with con:
            ensure_style_table(con)
            for layer in layers:
                geom = _geometry_column(con, layer)
                if geom is None:
                    continue
                qml = style_qml(layer, styles_dir)
                con.execute(
                    f'UPDATE "{STYLE_TABLE}" SET useAsDefault = 0 WHERE f_table_name = ?',
                    (layer,),
                )
                con.execute(
                    f'DELETE FROM "{STYLE_TABLE}" WHERE f_table_name = ? AND styleName = ?',
                    (layer, layer),
                )
                con.execute(
                    f'INSERT INTO "{STYLE_TABLE}" (f_table_catalog, f_table_schema, '
                    "f_table_name, f_geometry_column, styleName, styleQML, styleSLD, "
                    "useAsDefault, description, owner, ui, update_time) "
                    "VALUES ('', '', ?, ?, ?, ?, '', 1, ?, '', NULL, ?)",
                    (layer, geom, layer, qml, f"heritage default style for {layer}", _now()),
                )
                done.append(layer)
        con.close()
    except sqlite3.Error as exc:
        from heritage.io.surveyfile import write_failure

        hint = (
            "is it open for editing elsewhere? Close it there"
            if "locked" in str(exc).lower()
            else "check the file and the free disk space"
        )
        raise OutputNotWritableError(
            write_failure(gpkg, exc)
            or f"cannot store the layer styles in {gpkg}: {exc}; {hint}, then run again"
        ) from exc
    logger.debug("default styles written for %s", done)
    return done
