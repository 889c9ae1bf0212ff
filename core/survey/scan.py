"""Which files of the photo folders are input: the one folder walk of heritage.

:func:`scan_photo_files` walks the photo folders (sorted, recursive) and returns the
image files plus every folder it did not read, each with the reason, so that callers
list them in ``invalid_photos`` (reason ``skipped_folder``) instead of skipping them in
silence:

- a folder that cannot be listed (permission denied, I/O error);
- a symbolic link to a folder (not followed: it may loop or leave the survey);
- a hidden folder (``.git``, ``.thumbnails``...);
- an **output folder of heritage**: one holding the marker file
  :data:`OUTPUT_MARKER` (written by :func:`mark_output_folder` into every folder the
  tool fills, e.g. the ``<stem>_overlays/`` of a survey), a ``<stem>_overlays/``
  beside a ``<stem>.gpkg`` (written before the marker existed), or a folder the
  caller names in ``exclude``. Overlays, heat maps and thumbnails are never read
  back as photos, wherever the output is.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from heritage.kernel.errors import InputNotFoundError
from heritage.kernel.records import SkippedFile, SkipReason

#: extensions imported as photos (compared lower-case)
PHOTO_SUFFIXES = frozenset({".jpg", ".jpeg", ".jpe", ".png", ".tif", ".tiff", ".heic", ".heif"})
#: image extensions we recognise but do not import (listed as unsupported_format)
UNSUPPORTED_SUFFIXES = frozenset(
    {".gif", ".bmp", ".webp", ".avif", ".jxl", ".jp2", ".psd", ".svg", ".dng", ".cr2", ".cr3",
     ".nef", ".arw", ".orf", ".rw2", ".raf", ".srw", ".pef"}
)  # fmt: skip
#: file that marks a folder written by heritage (never read as input)
OUTPUT_MARKER = ".heritage-output"
_MARKER_TEXT = (
    "This folder was written by heritage (overlays, heat maps, thumbnails...).\n"
    "heritage never reads it as input. Do not put photos here.\n"
)


@dataclass(frozen=True, slots=True)
class PhotoScan:
    """The image files found (sorted, absolute) and the folders not read, with why."""

    files: list[Path] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)


def mark_output_folder(folder: str | Path) -> Path:
    """Create ``folder`` (and parents) and mark it as an output folder of heritage."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / OUTPUT_MARKER
    if not marker.exists():
        marker.write_text(_MARKER_TEXT, encoding="utf-8")
    return folder


def output_folder_reason(folder: Path, exclude: Iterable[Path] = ()) -> str:
    """Why ``folder`` is an output folder of heritage; empty when it is not one."""
    if (folder / OUTPUT_MARKER).is_file():
        return "output folder written by heritage (it holds the marker file .heritage-output)"
    if folder.name.endswith("_overlays"):
        gpkg = folder.with_name(folder.name[: -len("_overlays")] + ".gpkg")
        if gpkg.is_file():
            return f"overlays, heat maps and thumbnails of {gpkg.name}"
    resolved = _resolved(folder)
    if any(resolved == _resolved(Path(e)) for e in exclude):
        return "output folder of this run"
    return ""


def _resolved(path: Path) -> Path:
    try:
        return path.expanduser().resolve()
    except OSError:
        return path.expanduser().absolute()


def _skipped_folder(path: Path, why: str) -> SkippedFile:
    return SkippedFile(str(path), SkipReason.SKIPPED_FOLDER, why)


def scan_photo_files(dirs: Iterable[str | Path], exclude: Iterable[Path] = ()) -> PhotoScan:
    """Every photo or recognised image file under ``dirs`` and every folder not read.

    Raises :class:`InputNotFoundError` for a folder of ``dirs`` that does not exist.
    ``exclude``: output folders of the calling run (also skipped when they do not
    carry the marker yet). AppleDouble files (``._name``) and files of other kinds are
    ignored (they are not photos).
    """
    exclude = [Path(e) for e in exclude]
    wanted = PHOTO_SUFFIXES | UNSUPPORTED_SUFFIXES
    found: set[Path] = set()
    skipped: dict[Path, SkippedFile] = {}

    def unreadable(err: OSError) -> None:
        where = Path(err.filename) if err.filename else None
        if where is not None:
            why = err.strerror or type(err).__name__
            skipped[where] = _skipped_folder(
                where, f"cannot read the folder ({why}); fix its permissions and run again"
            )

    for d in dirs:
        root = Path(d).expanduser().absolute()
        if not root.is_dir():
            what = "is not a folder" if root.exists() else "does not exist"
            raise InputNotFoundError(f"photo folder {root} {what}; give a folder of photos")
        if why := output_folder_reason(root, exclude):
            skipped[root] = _skipped_folder(root, f"{why}; not read as photos")
            continue
        for base, subdirs, files in os.walk(root, onerror=unreadable):
            keep = []
            for name in sorted(subdirs):
                sub = Path(base, name)
                if why := _folder_skip_reason(sub, name, exclude):
                    skipped[sub] = _skipped_folder(sub, why)
                else:
                    keep.append(name)
            subdirs[:] = keep
            for name in files:
                if Path(name).suffix.lower() in wanted and not name.startswith("._"):
                    found.add(Path(base, name))
    return PhotoScan(sorted(found), [skipped[k] for k in sorted(skipped)])


def _folder_skip_reason(sub: Path, name: str, exclude: list[Path]) -> str:
    if sub.is_symlink():
        return (
            "symbolic link to a folder, not followed; give the folder it points to as a "
            "photo folder to include it"
        )
    if name.startswith("."):
        return "hidden folder, not read; rename it to include its photos"
    if why := output_folder_reason(sub, exclude):
        return f"{why}; not read as photos"
    return ""


def find_photo_files(dirs: Iterable[str | Path], exclude: Iterable[Path] = ()) -> list[Path]:
    """The image files of :func:`scan_photo_files` (sorted, absolute)."""
    return scan_photo_files(dirs, exclude).files
