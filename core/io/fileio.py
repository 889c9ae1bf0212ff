"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Every file the backend writes whole (JSON, CSV, PNG, checkpoints, GeoTIFF, GeoPackage)
goes through :func:`atomic_path`: the writer fills a temporary file beside the target
(same folder, so the final rename cannot cross file systems), which is renamed over the
target only when the writer finished; on any error or interruption it is removed.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def partial_name(path: str | Path, suffix: str | None = None) -> Path:
    """A temporary name beside ``path``: ``.<stem>.partial-<pid>-<random><suffix>``.

    ``suffix`` defaults to the target's own (so that libraries that pick the format from
    the file name, e.g. GDAL, write the same format); hidden, so that file browsers and
    glob patterns of the target's kind do not show it half-written.
    """
    path = Path(path)
    suffix = path.suffix if suffix is None else suffix
    return path.with_name(f".{path.stem}.partial-{os.getpid()}-{secrets.token_hex(3)}{suffix}")


@contextmanager
def atomic_path(path: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path to write ``path``'s new content to; renamed over ``path``
    when the block ends normally, removed when it raises (the old ``path`` stays).

    The folder is created when missing; the temporary file does not exist yet when the
    block starts (see :func:`partial_name` for its name and ``suffix``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_name(path, suffix)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` in UTF-8, atomically (see :func:`atomic_path`)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON (non-JSON values via ``str``), atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, default=str) + "\n")
