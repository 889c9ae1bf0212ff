"""Import geotagged photos into a GeoPackage: layer ``photos`` + table ``invalid_photos``.

One pass over the files, in sorted order. For each file: sha256, duplicate check,
a cheap Pillow readability check (:func:`check_image`), EXIF through
:mod:`heritage.io.exif`. Geotagged photos become points, everything else a row of
``invalid_photos`` with a :class:`~heritage.kernel.records.SkipReason`. Rows are appended in
small batches (:mod:`heritage.io.gpkg`), each its own transaction, so an interrupted run
keeps every batch written before it, and a re-run adds only what is missing.

Decisions:

- **Geometry**: one type per layer. A new ``photos`` layer is ``Point Z`` when any
  photo of the scan has a GPS altitude (a quick EXIF-only look before the import,
  stopping at the first altitude), else ``Point``. In a ``Point Z`` layer photos
  without altitude get Z = NaN (QGIS' own "no Z"), never a fake 0. The altitude is
  also the ``altitude`` field (NULL when unknown). Appending to an existing layer
  keeps its type (a 2D layer keeps altitudes in the field only).
- **File kinds**: ``.jpg .jpeg .jpe .png .tif .tiff .heic .heif`` (any case) are
  imported; other image extensions (GIF, BMP, WebP, camera raw...) are listed as
  ``unsupported_format``; other files (CSV, Markdown...) are ignored and not counted.
  A file with a supported extension that is not an image at all (text named ``.jpg``)
  is ``unreadable_image``; a real image of another format under such a name (a GIF
  named ``.jpg``) is ``unsupported_format``. Folders that are not read (unreadable,
  symbolic links, hidden, output folders of heritage: :mod:`heritage.survey.scan`) are rows
  with reason ``skipped_folder``.
- **Readability**: JPEG is decoded at 1/8 scale (``draft``), which catches truncated
  files cheaply; PNG is verified (chunk CRCs); TIFF and HEIF headers are read. Images
  above the pixel limit (Pillow's ``Image.MAX_IMAGE_PIXELS`` unless configured) are
  refused before any decoding (``unreadable_image``, "refused as too large").
- **Width/height** are the stored pixel size (before the EXIF orientation is applied).
- **Duplicates**: a second file with the sha256 of an earlier one in the scan, or of
  a photo already in the GeoPackage under another path, is ``duplicate``. A photo
  already in the GeoPackage under the same path is counted ``already_imported``.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import struct
import time
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from heritage.io.exif import read_exif
from heritage.io.filenames import name_problem, name_text, path_text
from heritage.io.gpkg import BatchWriter, Field, LayerSchema, layer_geometry_type, read_rows
from heritage.kernel.progress import NullProgress, Progress
from heritage.kernel.records import Photo, SkippedFile, SkipReason
from heritage.survey.scan import (  # noqa: F401  (re-exported: the photo file kinds are defined there)
    PHOTO_SUFFIXES,
    UNSUPPORTED_SUFFIXES,
    PhotoScan,
    find_photo_files,
    scan_photo_files,
)

logger = logging.getLogger(__name__)

#: Pillow formats accepted for import
PILLOW_FORMATS = frozenset({"JPEG", "MPO", "PNG", "TIFF", "HEIF"})

PHOTOS_LAYER = "photos"
INVALID_LAYER = "invalid_photos"

PHOTO_FIELDS: tuple[Field, ...] = (
    Field("path"),
    Field("file_name"),
    Field("sha256"),
    Field("latitude", "float"),
    Field("longitude", "float"),
    Field("altitude", "float"),
    Field("heading", "float"),
    Field("heading_source"),
    Field("taken_at"),
    Field("taken_at_source"),
    Field("camera"),
    Field("orientation", "int"),
    Field("width", "int"),
    Field("height", "int"),
    Field("file_format"),
)
INVALID_FIELDS: tuple[Field, ...] = (
    Field("path"),
    Field("file_name"),
    Field("sha256"),
    Field("reason"),
    Field("message"),
)


def photos_schema(with_z: bool, name: str = PHOTOS_LAYER) -> LayerSchema:
    """The ``photos`` point layer (EPSG:4326), ``Point Z`` when ``with_z``."""
    return LayerSchema(
        name, PHOTO_FIELDS, "Point Z" if with_z else "Point", "EPSG:4326", unique=("sha256",)
    )


def invalid_schema(name: str = INVALID_LAYER) -> LayerSchema:
    """The attribute-only ``invalid_photos`` table."""
    return LayerSchema(name, INVALID_FIELDS, None, None)


@dataclass(frozen=True, slots=True)
class ImportConfig:
    """How :func:`import_photos` works.

    ``batch_size``: rows per transaction (a kill loses at most one batch).
    ``max_pixels``: refuse larger images; ``None`` uses ``PIL.Image.MAX_IMAGE_PIXELS``.
    """

    batch_size: int = 50
    max_pixels: int | None = None
    layer: str = PHOTOS_LAYER
    invalid_layer: str = INVALID_LAYER


@dataclass(frozen=True, slots=True)
class ImageCheck:
    """The result of :func:`check_image`: size and format, or why the image is unusable."""

    width: int | None = None
    height: int | None = None
    file_format: str | None = None
    problem: SkipReason | None = None
    message: str = ""


@dataclass(frozen=True, slots=True)
class ImportSummary:
    """What one :func:`import_photos` run did.

    ``skipped`` counts every skipped file of this scan by reason (also those already
    listed in ``invalid_photos`` by an earlier run); ``invalid_written`` the new rows.
    """

    output: str
    found: int
    imported: int
    already_imported: int
    skipped: dict[str, int] = field(default_factory=dict)
    invalid_written: int = 0
    geometry_type: str = "Point"
    seconds: float = 0.0

    @property
    def skipped_total(self) -> int:
        """Number of skipped files."""
        return sum(self.skipped.values())

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {**asdict(self), "skipped_total": self.skipped_total}

    def lines(self) -> list[str]:
        """The summary as lines of text for a terminal."""
        already = f", {self.already_imported} already in the GeoPackage"
        see = " (see table invalid_photos)" if self.skipped_total else ""
        out = [
            f"GeoPackage: {self.output} (layer {PHOTOS_LAYER}: {self.geometry_type})",
            f"found {self.found} image file(s) in {self.seconds:.1f} s",
            f"imported {self.imported} geotagged photo(s)"
            + (already if self.already_imported else ""),
            f"skipped {self.skipped_total} file(s){see}",
        ]
        out += [f"  {reason}: {n}" for reason, n in sorted(self.skipped.items())]
        return out


# --------------------------------------------------------------------------- files


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """The hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


_HEIF_READY: bool | None = None


def _register_heif() -> bool:
    global _HEIF_READY
    if _HEIF_READY is None:
        try:
            import pillow_heif

            pillow_heif.register_heif_opener()
            _HEIF_READY = True
        except ImportError:  # pragma: no cover - pillow_heif is a dependency
            logger.warning("pillow-heif is not installed: HEIC/HEIF photos cannot be read")
            _HEIF_READY = False
    return _HEIF_READY


def check_image(
    path: str | Path, max_pixels: int | None = None, *, decode_check: bool = True
) -> ImageCheck:
    """Open ``path`` with Pillow and check it is a usable image, without a full decode.

    Refuses images above ``max_pixels`` (default ``PIL.Image.MAX_IMAGE_PIXELS``) from
    the header alone, and catches Pillow's own decompression-bomb error/warning.
    ``decode_check`` also decodes a JPEG at 1/8 scale (or verifies a PNG) to catch
    broken or truncated data; a caller that decodes every image right afterwards and
    handles a failed decode itself (``heritage classify``) turns it off.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    heif_ok = _register_heif()
    if path.suffix.lower() in UNSUPPORTED_SUFFIXES:
        return ImageCheck(
            problem=SkipReason.UNSUPPORTED_FORMAT,
            message=f"{path.suffix} files are not imported (use JPEG, PNG, TIFF or HEIC)",
        )
    if path.suffix.lower() in {".heic", ".heif"} and not heif_ok:
        return ImageCheck(
            problem=SkipReason.UNSUPPORTED_FORMAT,
            message="HEIC/HEIF needs the pillow-heif package, which is not installed",
        )
    limit = max_pixels if max_pixels is not None else Image.MAX_IMAGE_PIXELS
    try:
        with warnings.catch_warnings():
            # our own limit below decides; Pillow's warning must not leak to the user
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with open(path, "rb") as fh, Image.open(fh) as im:
                fmt = im.format
                width, height = im.size
                if limit and width * height > limit:
                    return ImageCheck(width, height, fmt, *_too_large(width, height, limit))
                if fmt not in PILLOW_FORMATS:
                    return ImageCheck(
                        width,
                        height,
                        fmt,
                        SkipReason.UNSUPPORTED_FORMAT,
                        f"the file is a {fmt} image despite its name; not imported",
                    )
                if decode_check and fmt in {"JPEG", "MPO"}:
                    im.draft("RGB", (max(1, width // 8), max(1, height // 8)))
                    im.load()
                elif decode_check and fmt == "PNG":
                    im.verify()
    except Image.DecompressionBombError as exc:
        return ImageCheck(
            problem=SkipReason.UNREADABLE_IMAGE,
            message=f"refused as too large (decompression-bomb protection): {exc}",
        )
    except UnidentifiedImageError:
        kind = "empty file (0 bytes)" if path.stat().st_size == 0 else "not an image file"
        return ImageCheck(
            problem=SkipReason.UNREADABLE_IMAGE,
            message=f"{kind}: Pillow cannot identify it",
        )
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error) as exc:
        return ImageCheck(
            problem=SkipReason.UNREADABLE_IMAGE,
            message=f"the image data is broken or truncated ({exc})",
        )
    return ImageCheck(width, height, fmt)


def _too_large(width: int, height: int, limit: int) -> tuple[SkipReason, str]:
    return (
        SkipReason.UNREADABLE_IMAGE,
        f"refused as too large: {width}x{height} = {width * height / 1e6:.0f} megapixels is "
        f"above the limit of {limit / 1e6:.0f} megapixels (decompression-bomb protection; "
        "raise the limit, e.g. --max-megapixels, to accept it)",
    )


def inspect_photo(
    path: str | Path,
    sha256: str | None = None,
    *,
    max_pixels: int | None = None,
    decode_check: bool = True,
) -> Photo | SkippedFile:
    """Everything the file says about itself: a :class:`Photo` or a :class:`SkippedFile`.

    Does not look for duplicates (that needs the whole scan, see :func:`import_photos`).
    ``decode_check``: see :func:`check_image`. A photo without a usable position is a
    :class:`SkippedFile` here; see :func:`inspect_photo_keeping_unlocated` for callers
    that still want it.
    """
    result, unlocated = inspect_photo_keeping_unlocated(
        path, sha256, max_pixels=max_pixels, decode_check=decode_check
    )
    return unlocated or result


def inspect_photo_keeping_unlocated(
    path: str | Path,
    sha256: str | None = None,
    *,
    max_pixels: int | None = None,
    decode_check: bool = True,
) -> tuple[Photo | SkippedFile, SkippedFile | None]:
    """Like :func:`inspect_photo`, reading the file's header once, but a readable photo
    without a usable position (no GPS, zero coordinates, corrupt EXIF) is still a
    :class:`Photo` with ``position=None``; the second item then says why it has none.
    """
    path = Path(path).absolute()
    try:
        size = path.stat().st_size
        sha256 = sha256 or sha256_file(path)
    except OSError as exc:
        skipped = SkippedFile(
            str(path), SkipReason.UNREADABLE_IMAGE, f"cannot read the file ({exc.strerror})"
        )
        return skipped, None
    if size == 0:
        return SkippedFile(
            str(path), SkipReason.UNREADABLE_IMAGE, "empty file (0 bytes)", sha256
        ), None
    image = check_image(path, max_pixels, decode_check=decode_check)
    if image.problem is not None:
        return SkippedFile(str(path), image.problem, image.message, sha256), None
    try:
        info = read_exif(path)
    except OSError as exc:
        skipped = SkippedFile(
            str(path), SkipReason.UNREADABLE_IMAGE, f"cannot read the file ({exc})", sha256
        )
        return skipped, None
    for warning in info.warnings:
        logger.info("%s: %s", path.name, warning)
    photo = Photo(
        path=str(path),
        sha256=sha256,
        width=image.width,
        height=image.height,
        position=info.position,
        heading=info.heading,
        heading_source=info.heading_source,
        taken_at=info.taken_at,
        taken_at_source=info.taken_at_source,
        camera=info.camera,
        orientation=info.orientation,
        file_format=image.file_format,
    )
    if info.position is None:
        reason = info.problem or SkipReason.NO_GPS
        return photo, SkippedFile(str(path), reason, info.message or "no GPS", sha256)
    return photo, None


# ----------------------------------------------------------------------- GeoPackage


def relative_path(path: str | Path, base: str | Path) -> str:
    """``path`` relative to folder ``base`` with forward slashes (absolute if impossible),
    as text that can be stored (:func:`heritage.io.filenames.path_text`)."""
    try:
        rel = Path(os.path.relpath(Path(path).absolute(), Path(base).absolute())).as_posix()
    except ValueError:  # another drive on Windows
        rel = Path(path).absolute().as_posix()
    return path_text(rel)


def photo_row(photo: Photo, base: str | Path) -> dict[str, Any]:
    """The ``photos`` attributes of ``photo``, its path relative to folder ``base``."""
    pos = photo.position
    return {
        "path": relative_path(photo.path, base),
        "file_name": name_text(photo.path),
        "sha256": photo.sha256,
        "latitude": pos.lat if pos else None,
        "longitude": pos.lon if pos else None,
        "altitude": pos.alt if pos else None,
        "heading": photo.heading,
        "heading_source": photo.heading_source,
        "taken_at": photo.taken_at,
        "taken_at_source": photo.taken_at_source,
        "camera": photo.camera,
        "orientation": photo.orientation,
        "width": photo.width,
        "height": photo.height,
        "file_format": photo.file_format,
    }


def skipped_row(skipped: SkippedFile, base: str | Path) -> dict[str, Any]:
    """The ``invalid_photos`` attributes of ``skipped``."""
    return {
        "path": relative_path(skipped.path, base),
        "file_name": name_text(skipped.path),
        "sha256": skipped.sha256,
        "reason": str(skipped.reason),
        "message": skipped.message,
    }


def _point(photo: Photo, with_z: bool) -> Any:
    import shapely

    pos = photo.position
    assert pos is not None
    if with_z:
        return shapely.Point(pos.lon, pos.lat, math.nan if pos.alt is None else pos.alt)
    return shapely.Point(pos.lon, pos.lat)


def any_altitude(files: Sequence[Path]) -> bool:
    """True when some file's EXIF has a valid position with an altitude (stops early)."""
    for path in files:
        if path.suffix.lower() not in PHOTO_SUFFIXES:
            continue
        try:
            info = read_exif(path)
        except OSError:
            continue
        if info.position is not None and info.position.alt is not None:
            return True
    return False


def import_photos(
    dirs: Sequence[str | Path],
    output: str | Path,
    config: ImportConfig = ImportConfig(),
    progress: Progress | None = None,
) -> ImportSummary:
    """Scan ``dirs`` and append their photos to the GeoPackage ``output``.

    Raises :class:`~heritage.kernel.errors.InputNotFoundError` for a missing folder and
    :class:`~heritage.kernel.errors.OutputNotWritableError` for an output that cannot be
    written. A cancel through ``progress`` keeps everything written so far.
    """
    from heritage.io.surveyfile import open_survey

    scan = scan_photo_files(dirs)
    with open_survey(output, create=True) as out:  # checks, single-writer lock, repair
        return _import(scan, out, config, progress or NullProgress())


def _import(scan: PhotoScan, out: Path, config: ImportConfig, progress: Progress) -> ImportSummary:
    started = time.perf_counter()
    files = scan.files
    base = out.parent

    existing_type = layer_geometry_type(out, config.layer)
    with_z = existing_type.upper().endswith("Z") if existing_type else any_altitude(files)
    photo_schema = photos_schema(with_z, config.layer)
    bad_schema = invalid_schema(config.invalid_layer)
    known_photos = {
        r["sha256"]: r["path"] for r in read_rows(out, config.layer, ["sha256", "path"])
    }
    known_invalid = {
        (r["path"], r["sha256"]): r["reason"]
        for r in read_rows(out, config.invalid_layer, ["path", "sha256", "reason"])
    }
    logger.info(
        "%d file(s) found; %d photo(s) and %d invalid row(s) already in %s",
        len(files), len(known_photos), len(known_invalid), out,
    )  # fmt: skip

    seen: dict[str, str] = {}
    skipped: Counter[str] = Counter()
    imported = already = 0
    progress.start("Importing photos", total=len(files))
    with (
        BatchWriter(out, photo_schema, config.batch_size) as photo_writer,
        BatchWriter(out, bad_schema, config.batch_size) as invalid_writer,
    ):
        photo_writer.ensure_layer()
        invalid_writer.ensure_layer()
        for folder in scan.skipped:  # folders not read: listed, never silently skipped
            skipped[str(folder.reason)] += 1
            key = (relative_path(folder.path, base), folder.sha256)
            if key not in known_invalid:
                invalid_writer.add(skipped_row(folder, base))
                known_invalid[key] = str(folder.reason)
        for path in files:
            progress.check_cancelled()
            rel = relative_path(path, base)
            if problem := name_problem(path):
                logger.warning("%s: %s", rel, problem)
            result, status = _classify(path, rel, seen, known_photos, config)
            if result is None:
                already += 1
            elif isinstance(result, Photo):
                photo_writer.add(photo_row(result, base), _point(result, with_z))
                imported += 1
            else:
                skipped[str(result.reason)] += 1
                key = (rel, result.sha256)
                if key in known_invalid:
                    status = f"{result.reason} (already listed)"
                else:
                    invalid_writer.add(skipped_row(result, base))
                    known_invalid[key] = str(result.reason)
            progress.step(1, file=rel, status=status)
    return ImportSummary(
        output=str(out),
        found=len(files),
        imported=imported,
        already_imported=already,
        skipped=dict(skipped),
        invalid_written=invalid_writer.written,
        geometry_type=photo_schema.geometry_type or "",
        seconds=time.perf_counter() - started,
    )


def _classify(
    path: Path,
    rel: str,
    seen: dict[str, str],
    known_photos: dict[str, str],
    config: ImportConfig,
) -> tuple[Photo | SkippedFile | None, str]:
    """One file -> (Photo | SkippedFile | None when already imported, status text)."""
    try:
        size = path.stat().st_size
        sha = sha256_file(path)
    except OSError as exc:
        msg = f"cannot read the file ({exc.strerror})"
        return SkippedFile(str(path), SkipReason.UNREADABLE_IMAGE, msg), "unreadable_image"
    if size > 0:  # all empty files share one hash: they are unreadable, not duplicates
        if sha in known_photos:
            if known_photos[sha] == rel:
                return None, "already_imported"
            msg = f"same content as {known_photos[sha]}, already in the GeoPackage"
            return SkippedFile(str(path), SkipReason.DUPLICATE, msg, sha), "duplicate"
        if sha in seen:
            msg = f"same content as {seen[sha]} (same sha256)"
            return SkippedFile(str(path), SkipReason.DUPLICATE, msg, sha), "duplicate"
        seen[sha] = rel
    result = inspect_photo(path, sha, max_pixels=config.max_pixels)
    status = "imported" if isinstance(result, Photo) else str(result.reason)
    return result, status
