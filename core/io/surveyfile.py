"""Opening a survey GeoPackage to change it: the one place for checks, lock and repair.

Every command that writes a survey (``photos``, ``classify``, ``group``, ``route``)
goes through :func:`open_survey`, which

1. checks the file before any work: a GeoPackage (not text, an image, a plain SQLite
   database, an empty or truncated file), writable, and holding the layers and
   columns the command needs; each problem is one line that says what to do;
2. takes the **single-writer lock** ``.<name>.gpkg.lock`` beside it (an OS file lock,
   released when the process ends, even by a kill): a second command writing the
   same GeoPackage at the same time stops at once with :class:`SurveyBusyError`
   instead of storing every photo twice;
3. **repairs duplicates**: rows of ``observations`` or ``photos`` with the sha256 of
   an earlier row (left by two runs at once before this lock existed) are deleted,
   keeping the first, with a warning; the layers' unique index on ``sha256``
   (:class:`heritage.io.gpkg.LayerSchema` ``unique``) then keeps the file that way;
4. turns a failed write (full disk, read-only file) into one line that says what to do.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from heritage.io.gpkg import connect_gpkg, ensure_writable, geopackage_problem, is_writable
from heritage.kernel.errors import (
    DataError,
    HeritageError,
    InputNotFoundError,
    OutputNotWritableError,
)

logger = logging.getLogger(__name__)

#: layers whose rows are one photo each, unique by content
UNIQUE_BY_SHA256 = ("observations", "photos")
_RERUN = "run the same command again (everything committed before is kept)"


class SurveyBusyError(OutputNotWritableError):
    """Another process is writing the same survey GeoPackage."""


def lock_path(path: str | Path) -> Path:
    """The lock file of a GeoPackage: ``.<name>.lock`` beside it."""
    path = Path(path)
    return path.with_name(f".{path.name}.lock")


def check_survey(
    path: str | Path, required: Mapping[str, Sequence[str]] | None = None, *, write: bool = True
) -> Path:
    """An existing survey GeoPackage with the ``required`` layers (name -> columns).

    Raises :class:`InputNotFoundError`, :class:`DataError` (not a usable GeoPackage,
    a layer or column missing) or :class:`OutputNotWritableError` (read-only, when
    ``write``), each with what to do.
    """
    path = Path(path).expanduser().absolute()
    if not path.exists():
        raise InputNotFoundError(
            f"survey GeoPackage not found: {path}; give the .gpkg written by 'heritage classify'"
        )
    if path.is_dir():
        raise DataError(f"{path} is a folder; give the .gpkg written by 'heritage classify'")
    if problem := geopackage_problem(path):
        raise DataError(f"{path} {problem}; give the .gpkg written by 'heritage classify'")
    if write and not is_writable(path):
        raise OutputNotWritableError(
            f"{path} is read-only; make it writable (e.g. chmod u+w) or work on a copy"
        )
    for layer, columns in (required or {}).items():
        have = _columns(path, layer)
        if have is None:
            raise DataError(
                f"{path} has no '{layer}' layer; run 'heritage classify' on the photos first"
            )
        missing = [c for c in columns if c not in have]
        if missing:
            raise DataError(
                f"layer '{layer}' of {path} has no column(s) {', '.join(missing)}: it was not "
                "written by 'heritage classify'; classify the photos into a new GeoPackage"
            )
    return path


def _columns(path: Path, layer: str) -> set[str] | None:
    con = sqlite3.connect(path)
    try:
        known = con.execute("SELECT 1 FROM gpkg_contents WHERE table_name = ?", (layer,)).fetchone()
        if known is None:
            return None
        return {r[1] for r in con.execute(f'PRAGMA table_info("{layer}")')}
    finally:
        con.close()


def _discard_if_empty(path: Path) -> None:
    """Remove an output that holds nothing: a 0-byte file, or an SQLite file without
    ``gpkg_contents`` whose tables are at most GeoPackage/SQLite metadata (what a run
    killed while creating the GeoPackage can leave), together with its rollback journal,
    so that the same command starts it again."""
    if not path.is_file():
        return
    size = path.stat().st_size
    if size:
        with open(path, "rb") as fh:
            if not fh.read(16).startswith(b"SQLite format 3"):
                return
        try:
            con = sqlite3.connect(path)
            try:
                names = [r[0] for r in con.execute("SELECT name FROM sqlite_master")]
                if "gpkg_contents" in names or any(
                    not n.startswith(("gpkg_", "sqlite_")) for n in names
                ):
                    return
            finally:
                con.close()
        except sqlite3.Error:
            return
    logger.info("%s holds nothing (an interrupted start?): it is created again", path)
    path.unlink()
    path.with_name(path.name + "-journal").unlink(missing_ok=True)


def repair_duplicates(path: str | Path, layers: Sequence[str] = UNIQUE_BY_SHA256) -> list[str]:
    """Delete rows whose sha256 an earlier row (lower fid) of the layer already has.

    Returns one warning per layer repaired (also logged); one transaction per layer.
    """
    path = Path(path)
    warnings: list[str] = []
    if not path.exists():
        return warnings
    con = connect_gpkg(path)
    try:
        for layer in layers:
            cols = _columns(path, layer)
            if cols is None or "sha256" not in cols:
                continue
            with con:
                dup = (
                    f'SELECT fid FROM "{layer}" WHERE sha256 IS NOT NULL AND fid NOT IN '
                    f'(SELECT MIN(fid) FROM "{layer}" WHERE sha256 IS NOT NULL GROUP BY sha256)'
                )
                fids = [r[0] for r in con.execute(dup)]
                if fids:
                    con.executemany(f'DELETE FROM "{layer}" WHERE fid = ?', [(f,) for f in fids])
            if fids:
                msg = (
                    f"removed {len(fids)} duplicate row(s) of '{layer}' in {path.name} (the "
                    "same photo, same sha256, stored twice, e.g. by two runs at once); the "
                    "first copy of each photo is kept"
                )
                logger.warning(msg)
                warnings.append(msg)
    finally:
        con.close()
    return warnings


@contextmanager
def open_survey(
    path: str | Path,
    required: Mapping[str, Sequence[str]] | None = None,
    *,
    create: bool = False,
    repairs: list[str] | None = None,
) -> Iterator[Path]:
    """Check, lock and repair a survey GeoPackage for the time of the ``with`` block.

    ``create``: the file may not exist yet (``classify``, ``photos``); otherwise it
    must (``group``, ``route``). The warnings of :func:`repair_duplicates` are
    appended to ``repairs``. Yields the absolute path.
    """
    from filelock import FileLock, Timeout

    if create:
        _discard_if_empty(Path(path).expanduser().absolute())
        path = ensure_writable(path)
        if path.exists():
            check_survey(path, required)
    else:
        path = check_survey(path, required)
    lock = FileLock(lock_path(path), timeout=0)
    try:
        lock.acquire()
    except Timeout as exc:
        raise SurveyBusyError(
            f"another heritage command is writing {path} right now; wait until it has "
            "finished, then run this one again (or write to another GeoPackage)"
        ) from exc
    except OSError as exc:
        raise OutputNotWritableError(
            f"cannot create the lock file {lock_path(path)} ({exc.strerror or exc}); "
            "make the folder writable or choose another output"
        ) from exc
    try:
        found = repair_duplicates(path)
        if repairs is not None:
            repairs.extend(found)
        yield path
    except HeritageError:
        raise
    except (sqlite3.Error, OSError, RuntimeError) as exc:
        if (message := write_failure(path, exc)) is None:
            raise
        raise OutputNotWritableError(message) from exc
    finally:
        lock.release()


def write_failure(path: Path, exc: BaseException) -> str | None:
    """The one-line message for a write to ``path`` that failed with ``exc`` because the
    disk is full or the file is read-only; ``None`` for any other failure."""
    import errno

    text = str(exc)
    low = text.lower()
    if (isinstance(exc, OSError) and exc.errno == errno.ENOSPC) or any(
        s in low for s in ("disk is full", "no space left", "disk full")
    ):
        return f"the disk holding {path} is full ({text.strip()}); free some space, then {_RERUN}"
    if "failed to commit transaction" in low:
        return (
            f"could not commit a write to {path} (GDAL: {text.strip()}): usually a full disk; "
            f"check the free space, then {_RERUN}"
        )
    if "readonly database" in low or "read-only" in low:
        return f"{path} cannot be written (read-only); make it writable, then {_RERUN}"
    return None
