"""File names as text: the one place that turns a path into a string to store or show.

On POSIX a file name is bytes; Python keeps bytes that are not UTF-8 as lone
surrogates (``\\udcff``), which cannot be written to a GeoPackage, to JSON read by
other tools, or to a UTF-8 terminal. :func:`path_text` shows such bytes as ``\\xff``
escapes instead, so every name can be stored and read, and :func:`name_problem` says
that the stored text is not the exact name on disk.
"""

from __future__ import annotations

import os
from pathlib import Path


def path_text(path: str | os.PathLike[str]) -> str:
    """``path`` as valid Unicode text: bytes of the name that are not UTF-8 become
    ``\\xNN`` escapes (``x\\xff.jpg``); a valid name comes back unchanged."""
    text = os.fspath(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(text).decode("utf-8", "backslashreplace")
    return text


def name_text(path: str | os.PathLike[str]) -> str:
    """The last component of ``path`` as :func:`path_text` shows it."""
    return path_text(Path(path).name)


def name_problem(path: str | os.PathLike[str]) -> str:
    """Empty when ``path`` is valid text; else why its stored name differs from the file's."""
    text = os.fspath(path)
    if path_text(text) == text:
        return ""
    return (
        f"the file name is not valid UTF-8 and is stored as {name_text(text)} (bytes "
        "that are not UTF-8 as \\xNN); rename the file to open it from this record"
    )
