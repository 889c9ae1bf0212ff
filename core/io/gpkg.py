"""Reusable GeoPackage helpers: typed layers written in small appended batches.

Every batch is one ``pyogrio`` write in append mode, i.e. one SQLite transaction: a
process killed between batches leaves a valid GeoPackage holding every earlier batch,
and one killed inside a batch leaves a hot journal that SQLite rolls back on the next
open (the batch is lost, nothing else). Files are GeoPackage 1.2 (QGIS 3.22 warns on
1.4). Works for point layers (``photos``, ``observations``) and attribute-only tables
(``geometry_type=None``, e.g. ``invalid_photos``).

pyogrio and shapely are imported inside the functions (light CLI start-up).
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from heritage.kernel.errors import DataError, OutputNotWritableError

logger = logging.getLogger(__name__)

# pyogrio logs "Created N records" at INFO for every write; one per batch is noise.
_PYOGRIO_LOGGER = logging.getLogger("pyogrio")
if _PYOGRIO_LOGGER.level == logging.NOTSET:
    _PYOGRIO_LOGGER.setLevel(logging.WARNING)

GPKG_VERSION = "1.2"

#: schema type name -> numpy dtype used for the column
_DTYPES = {"str": "object", "int": "int64", "float": "float64", "bool": "bool"}


@dataclass(frozen=True, slots=True)
class Field:
    """One attribute column: ``type`` is ``"str"``, ``"int"``, ``"float"`` or ``"bool"``."""

    name: str
    type: str = "str"

    def __post_init__(self) -> None:
        if self.type not in _DTYPES:
            raise ValueError(f"field {self.name!r}: unknown type {self.type!r}")


@dataclass(frozen=True, slots=True)
class LayerSchema:
    """A layer's name, columns, geometry type and CRS.

    ``geometry_type`` is an OGR name (``"Point"``, ``"Point Z"``, ``"Polygon"``...) or
    ``None`` for an attribute-only table (no CRS then). ``added_later`` names columns a
    layer written by an older version may lack: they are added (NULL in older rows)
    instead of refusing the file. ``unique``: columns whose values are unique in the
    layer, kept so by a unique index that :class:`BatchWriter` creates with the layer
    (a duplicate makes the write fail).
    """

    name: str
    fields: tuple[Field, ...]
    geometry_type: str | None = "Point"
    crs: str | None = "EPSG:4326"
    added_later: tuple[str, ...] = ()
    unique: tuple[str, ...] = ()

    @property
    def field_names(self) -> list[str]:
        """The column names, in order."""
        return [f.name for f in self.fields]

    @property
    def has_z(self) -> bool:
        """True for a 3D geometry type."""
        return bool(self.geometry_type) and self.geometry_type.upper().endswith("Z")


def ensure_writable(path: str | Path) -> Path:
    """Check ``path`` can be created or updated as a GeoPackage; create its folder.

    Raises :class:`OutputNotWritableError` with what to do otherwise.
    """
    path = Path(path).expanduser().absolute()
    if path.suffix.lower() != ".gpkg":
        raise OutputNotWritableError(f"{path}: the output must be a GeoPackage ending in .gpkg")
    if path.is_dir():
        raise OutputNotWritableError(f"{path} is a folder; give a .gpkg file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputNotWritableError(
            f"cannot create the folder {path.parent} ({exc.strerror}); choose another output"
        ) from exc
    if path.exists():
        if problem := geopackage_problem(path):
            raise OutputNotWritableError(
                f"{path} exists but {problem}; remove it or choose another output"
            )
        if not is_writable(path):
            raise OutputNotWritableError(
                f"{path} is read-only; make it writable (e.g. chmod u+w) or choose another output"
            )
    elif not os.access(path.parent, os.W_OK | os.X_OK):
        raise OutputNotWritableError(
            f"cannot write in {path.parent} (permission denied); choose another output folder"
        )
    return path


SQLITE_MAGIC = b"SQLite format 3\x00"
_MAGICS = {
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"II*\x00": "a TIFF file",
    b"MM\x00*": "a TIFF file",
    b"PK\x03\x04": "a ZIP archive",
    b"%PDF": "a PDF document",
}


def geopackage_problem(path: str | Path) -> str:
    """Empty when ``path`` looks like a complete GeoPackage; else what it is instead
    (a phrase that follows the file name: "is an empty file (0 bytes)").

    Cheap: reads the 100-byte SQLite header (file kind, truncation against the page
    count it records) and the table list (a plain SQLite database has no
    ``gpkg_contents``). Opening the file rolls back a hot journal left by a kill.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(100)
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if size == 0:
        return "is an empty file (0 bytes), not a GeoPackage"
    if not head.startswith(SQLITE_MAGIC):
        kind = next((k for m, k in _MAGICS.items() if head.startswith(m)), None)
        if kind is None:
            kind = "a text file" if _looks_like_text(head) else "not an SQLite file"
        return f"is not a GeoPackage (it is {kind})"
    if len(head) < 100:
        return "is truncated (shorter than an SQLite header), not a usable GeoPackage"
    page_size = int.from_bytes(head[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(head[28:32], "big")
    if head[24:28] == head[92:96] and pages and size < pages * page_size:
        return (
            f"is truncated ({size} of {pages * page_size} bytes): an incomplete copy or "
            "download, not a usable GeoPackage"
        )
    try:
        con = sqlite3.connect(path)
        try:
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master")}
        finally:
            con.close()
    except sqlite3.Error as exc:
        return f"is a damaged SQLite file ({exc}), not a usable GeoPackage"
    if "gpkg_contents" not in tables:
        return "is an SQLite database but not a GeoPackage (it has no gpkg_contents table)"
    return ""


def _looks_like_text(head: bytes) -> bool:
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def is_writable(path: str | Path) -> bool:
    """False when the file is read-only: no write permission for this user, or no write
    bit set at all (respected even by root, who could write it anyway)."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return os.access(path, os.W_OK) and bool(mode & 0o222)


def list_layers(path: str | Path) -> dict[str, str | None]:
    """Layer name -> geometry type (``None`` for attribute tables); empty when no file."""
    if not Path(path).exists():
        return {}
    import pyogrio

    return {str(name): (str(g) if g else None) for name, g in pyogrio.list_layers(str(path))}


def layer_geometry_type(path: str | Path, layer: str) -> str | None:
    """The geometry type of ``layer`` (``None`` for attribute tables or a missing layer)."""
    return list_layers(path).get(layer)


def count_features(path: str | Path, layer: str) -> int:
    """Number of rows in ``layer`` (0 when the file or layer does not exist)."""
    if layer not in list_layers(path):
        return 0
    import pyogrio

    return int(pyogrio.read_info(str(path), layer=layer)["features"])


def read_rows(path: str | Path, layer: str, columns: Sequence[str]) -> list[dict[str, Any]]:
    """The values of ``columns`` for every row of ``layer`` (no geometry).

    Empty when the file or layer does not exist. Null numbers come back as ``None``.
    """
    if layer not in list_layers(path):
        return []
    from pyogrio import raw

    _meta, _fids, _geom, data = raw.read(
        str(path), layer=layer, columns=list(columns), read_geometry=False
    )
    names = list(_meta["fields"])
    out: list[dict[str, Any]] = []
    for i in range(len(data[0]) if data else 0):
        row = {}
        for name, col in zip(names, data, strict=True):
            value = col[i]
            if isinstance(value, float) and value != value:  # NaN -> None
                value = None
            elif hasattr(value, "item"):
                value = value.item()
            row[name] = value
        out.append(row)
    return out


def _columns(schema: LayerSchema, rows: Sequence[Mapping[str, Any]]) -> tuple[list[Any], list[Any]]:
    import numpy as np

    data, masks = [], []
    for field in schema.fields:
        values = [row.get(field.name) for row in rows]
        missing = np.array([v is None for v in values], dtype=bool)
        if field.type == "str":
            col = np.array([None if v is None else str(v) for v in values], dtype=object)
            mask = None
        elif field.type == "float":
            col = np.array([np.nan if v is None else float(v) for v in values], dtype="float64")
            mask = None  # NaN is written as NULL
        else:
            fill = False if field.type == "bool" else 0
            conv = bool if field.type == "bool" else int
            col = np.array(
                [fill if v is None else conv(v) for v in values], dtype=_DTYPES[field.type]
            )
            mask = missing if missing.any() else None
        data.append(col)
        masks.append(mask)
    return data, masks


def _check_existing(path: Path, schema: LayerSchema) -> bool:
    """True when the layer exists already (and matches ``schema``'s columns)."""
    layers = list_layers(path)
    if schema.name not in layers:
        return False
    import pyogrio

    have_order = [str(n) for n in pyogrio.read_info(str(path), layer=schema.name)["fields"]]
    have = set(have_order)
    missing = [f for f in schema.fields if f.name not in have]
    if not missing:
        _check_order(path, schema, have_order)
        return True
    if any(f.name not in schema.added_later for f in missing):
        raise DataError(
            f"layer {schema.name!r} in {path} has no column(s) "
            f"{', '.join(f.name for f in missing)}; it was written by another tool or "
            "version: write to a new GeoPackage"
        )
    _add_columns(path, schema.name, missing)
    _check_order(path, schema, [*have_order, *(f.name for f in missing)])
    return True


def _check_order(path: Path, schema: LayerSchema, have_order: list[str]) -> None:
    """Rows are appended column by column in the schema's order: a layer whose columns
    come in another order would get values in the wrong columns, so it is refused."""
    ours = [n for n in have_order if n in set(schema.field_names)]
    if ours != schema.field_names:
        raise DataError(
            f"layer {schema.name!r} in {path} has this version's columns in another order; "
            "it was written by another tool or version: write to a new GeoPackage"
        )


_SQLITE_TYPES = {"str": "TEXT", "int": "INTEGER", "float": "REAL", "bool": "BOOLEAN"}


def _add_columns(path: Path, layer: str, fields: Sequence[Field]) -> None:
    """Add nullable ``fields`` to a layer written by an older version (one transaction);
    its rows keep every value and get NULL in the new columns."""
    import sqlite3

    con = sqlite3.connect(str(path))
    try:
        with con:
            for f in fields:
                con.execute(f'ALTER TABLE "{layer}" ADD COLUMN "{f.name}" {_SQLITE_TYPES[f.type]}')
    except sqlite3.Error as exc:
        raise DataError(
            f"cannot add the column(s) {', '.join(f.name for f in fields)} to {path}|{layer} "
            f"({exc}); close it in other programs or write to a new GeoPackage"
        ) from exc
    finally:
        con.close()
    logger.warning(
        "%s|%s: added the column(s) %s of this version (older rows keep NULL there)",
        path, layer, ", ".join(f.name for f in fields),
    )  # fmt: skip


def append_batch(
    path: str | Path,
    schema: LayerSchema,
    rows: Sequence[Mapping[str, Any]],
    geometries: Sequence[Any] | None = None,
) -> int:
    """Append ``rows`` (and their shapely ``geometries``) to the layer in one transaction.

    Creates the GeoPackage (version 1.2) and the layer on first use, also when
    ``rows`` is empty, so that an empty result still has its layer. Checks that an
    existing layer has the schema's columns (:class:`DataError` otherwise). Returns
    the number of rows written.
    """
    path = Path(path)
    exists = path.exists() and _check_existing(path, schema)
    if exists and not rows:
        return 0
    return _write(path, schema, rows, geometries)


def _write(
    path: Path,
    schema: LayerSchema,
    rows: Sequence[Mapping[str, Any]],
    geometries: Sequence[Any] | None,
) -> int:
    import numpy as np
    from pyogrio import raw

    if schema.geometry_type is not None:
        if geometries is None or len(geometries) != len(rows):
            raise ValueError(f"layer {schema.name!r} needs one geometry per row")
        import shapely

        wkb = shapely.to_wkb(
            np.asarray(list(geometries), dtype=object), output_dimension=3 if schema.has_z else 2
        )
        wkb = np.asarray(wkb, dtype=object)
    else:
        wkb = None
    data, masks = _columns(schema, rows)
    kwargs: dict[str, Any] = {}
    if not path.exists():
        kwargs["dataset_options"] = {"VERSION": GPKG_VERSION}
    raw.write(
        str(path),
        wkb,
        data,
        schema.field_names,
        field_mask=masks,
        layer=schema.name,
        driver="GPKG",
        geometry_type=schema.geometry_type,
        crs=schema.crs if schema.geometry_type else None,
        append=path.exists(),
        **kwargs,
    )
    logger.debug("wrote %d row(s) to %s|%s", len(rows), path, schema.name)
    return len(rows)


class BatchWriter:
    """Collects rows and appends them to a layer every ``batch_size`` rows.

    Use as a context manager; leaving the block (also by an exception, not by a
    kill) writes what is pending. ``written`` counts rows committed so far.
    """

    def __init__(self, path: str | Path, schema: LayerSchema, batch_size: int = 50) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.path = Path(path)
        self.schema = schema
        self.batch_size = batch_size
        self.written = 0
        self._checked = False  # layer existence and columns checked once, on first write
        self._rows: list[Mapping[str, Any]] = []
        self._geoms: list[Any] = []

    @property
    def pending(self) -> int:
        """Rows collected but not written yet."""
        return len(self._rows)

    def add(self, row: Mapping[str, Any], geometry: Any = None) -> None:
        """Queue one row; writes the batch when it is full."""
        self._rows.append(row)
        self._geoms.append(geometry)
        if len(self._rows) >= self.batch_size:
            self.flush()

    def extend(self, items: Iterable[tuple[Mapping[str, Any], Any]]) -> None:
        """Queue several ``(row, geometry)`` pairs."""
        for row, geom in items:
            self.add(row, geom)

    def flush(self) -> int:
        """Write the pending rows now (one transaction); returns how many."""
        self.ensure_layer()
        rows, geoms = self._rows, self._geoms
        self._rows, self._geoms = [], []
        n = append_batch(self.path, self.schema, rows, geoms if self.schema.geometry_type else None)
        self.written += n
        return n

    def ensure_layer(self) -> None:
        """Create the (empty) layer now if it does not exist yet."""
        if not self._checked:
            append_batch(self.path, self.schema, [], [] if self.schema.geometry_type else None)
            ensure_unique_index(self.path, self.schema)
            self._checked = True

    def __enter__(self) -> BatchWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._rows:
            try:
                self.flush()
            except Exception:
                if exc is None:
                    raise
                logger.exception("could not write the last batch to %s", self.path)


def _gpkg_envelope(blob: bytes | None) -> tuple[bool, tuple[float, float, float, float] | None]:
    """(is_empty, (minx, maxx, miny, maxy)) of a GeoPackage geometry blob."""
    import shapely

    if blob is None or len(blob) < 8 or blob[:2] != b"GP":
        return True, None
    flags = blob[3]
    if flags & 0x10:
        return True, None
    env = (flags >> 1) & 0x07
    header = 8 + {0: 0, 1: 32, 2: 48, 3: 48, 4: 64}.get(env, 0)
    geom = shapely.from_wkb(bytes(blob[header:]))
    if geom is None or geom.is_empty:
        return True, None
    minx, miny, maxx, maxy = geom.bounds
    return False, (minx, maxx, miny, maxy)


def connect_gpkg(path: str | Path) -> sqlite3.Connection:
    """A sqlite3 connection to a GeoPackage with the ``ST_*`` functions its R-tree
    triggers call (``ST_IsEmpty``, ``ST_MinX``...), so that UPDATEs can run without
    SpatiaLite."""
    con = sqlite3.connect(path)
    con.create_function("ST_IsEmpty", 1, lambda b: int(_gpkg_envelope(b)[0]), deterministic=True)
    for i, name in enumerate(("ST_MinX", "ST_MaxX", "ST_MinY", "ST_MaxY")):

        def bound(b: bytes | None, i: int = i) -> float | None:
            box = _gpkg_envelope(b)[1]
            return None if box is None else box[i]

        con.create_function(name, 1, bound, deterministic=True)
    return con


def ensure_unique_index(path: str | Path, schema: LayerSchema) -> None:
    """Create the unique index of ``schema.unique`` on the layer when it is missing.

    Raises :class:`DataError` when the layer already holds duplicates (see
    :func:`heritage.io.surveyfile.repair_duplicates`).
    """
    if not schema.unique:
        return
    cols = ", ".join(f'"{c}"' for c in schema.unique)
    name = f"{schema.name}_{'_'.join(schema.unique)}_unique"
    con = sqlite3.connect(path)
    try:
        with con:
            con.execute(f'CREATE UNIQUE INDEX IF NOT EXISTS "{name}" ON "{schema.name}" ({cols})')
    except sqlite3.IntegrityError as exc:
        raise DataError(
            f"layer {schema.name!r} of {path} holds duplicate {', '.join(schema.unique)} values; "
            "open it with 'heritage classify' or 'heritage photos' to repair it"
        ) from exc
    finally:
        con.close()
