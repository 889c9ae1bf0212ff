"""The images of an inspection report: photo and Grad-CAM overlay of every photo shown.

Each image is read from the survey's overlay folder (paths relative to the
GeoPackage), scaled down to at most ``max_px`` on its longer side, the box of the
strongest finding outlined when the survey records one, and written as JPEG into the
report's folder of files (or returned as a ``data:`` URI to embed in the HTML). A
missing or unreadable image is reported, never fatal: the report shows a placeholder.

Pillow only; JPEG thumbnails are decoded in draft mode (DCT scaling) when larger
than needed. Images are prepared by a small thread pool (Pillow releases the GIL
while it decodes and encodes). Decoding the 1,280 px overlays of scene mode is a large
part of the work (draft-decoded JPEGs now; the PNG ones of older surveys took about 30 ms
of CPU each), so a report written again into the same place reuses the images of the
previous run whose source file (path, size, modification time), size limit and box are
unchanged (:data:`CACHE_MANIFEST`).
"""

from __future__ import annotations

import base64
import io
import json
import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from heritage.survey.report import ReportData, ReportPhoto

logger = logging.getLogger(__name__)

#: outline of the strongest finding
BOX_COLOUR = (0, 229, 255)
#: in the folder of images: target file name -> signature of what it was made from
CACHE_MANIFEST = ".images.json"
#: bumped when :func:`render_image` draws differently, so old images are not reused
RENDER_VERSION = 2


@dataclass(frozen=True, slots=True)
class ImageJob:
    """One image to prepare: ``kind`` is ``"photo"`` or ``"overlay"``."""

    photo: ReportPhoto
    kind: str
    source: Path | None
    target_name: str


def jobs_for(data: ReportData) -> list[ImageJob]:
    """The photo of every photo of every building and the overlay of the flagged ones,
    in report order."""
    base = data.survey.parent
    jobs = []
    seen = set()
    for building in data.buildings:
        for photo in building.photos:
            if photo.fid in seen:
                continue
            seen.add(photo.fid)
            stem = f"{photo.fid}_{photo.sha256[:12]}" if photo.sha256 else str(photo.fid)
            kinds = [("photo", photo.thumbnail_path)]
            if photo.flagged:  # the report shows the overlays of flagged photos only
                kinds.append(("overlay", photo.overlay_path))
            for kind, rel in kinds:
                src = base / rel if rel else None
                jobs.append(ImageJob(photo, kind, src, f"{stem}_{kind}.jpg"))
    return jobs


def _box_on(image_size: tuple[int, int], photo: ReportPhoto) -> tuple[float, ...] | None:
    """The photo's strongest-finding box scaled to an image of ``image_size`` showing the
    whole photo; ``None`` when there is no box or the image is not the whole photo
    (a whole-image-mode overlay shows the centre crop only)."""
    if photo.box is None or photo.photo_size is None:
        return None
    w, h = image_size
    pw, ph = photo.photo_size
    if (w >= h) != (pw >= ph) and pw != ph:  # EXIF orientation swapped the sides
        pw, ph = ph, pw
    if abs(w / h - pw / ph) > 0.02 * (pw / ph):
        return None
    s = w / pw
    x0, y0, x1, y1 = photo.box
    return (x0 * s, y0 * s, x1 * s, y1 * s)


def render_image(job: ImageJob, max_px: int, quality: int = 85) -> bytes:
    """The JPEG bytes of ``job``'s image, at most ``max_px`` on its longer side, box drawn.

    Raises ``OSError`` (Pillow's errors) for a missing or unreadable file.
    """
    from PIL import Image, ImageDraw

    if job.source is None:
        raise FileNotFoundError("no image recorded")
    with Image.open(job.source) as im:
        if im.format == "JPEG":
            im.draft("RGB", (max_px, max_px))
        im.load()
        rgb = im.convert("RGB")
    box = _box_on(rgb.size, job.photo)
    if max(rgb.size) > max_px:
        scale = max_px / max(rgb.size)
        size = (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale)))
        # reducing_gap 1: an integer box reduction first (a 1280 px overlay to 640 px is a
        # 2x2 average, 1 ms instead of 7 ms of bilinear filtering over the full image)
        rgb = rgb.resize(size, Image.Resampling.BILINEAR, reducing_gap=1.0)
        box = tuple(v * scale for v in box) if box else None
    if box is not None:
        width = max(2, round(max(rgb.size) / 150))
        ImageDraw.Draw(rgb).rectangle(box, outline=BOX_COLOUR, width=width)
    buf = io.BytesIO()
    rgb.save(buf, "JPEG", quality=quality, optimize=False)
    return buf.getvalue()


def signature(job: ImageJob, max_px: int) -> str | None:
    """What ``job``'s image is made from (``None`` when its source cannot be read)."""
    if job.source is None:
        return None
    try:
        st = job.source.stat()
    except OSError:
        return None
    parts = (job.source.resolve(), st.st_size, st.st_mtime_ns, max_px, job.photo.box,
             job.photo.photo_size, RENDER_VERSION)  # fmt: skip
    return "|".join(str(p) for p in parts)


def _read_manifest(folder: Path | None) -> dict[str, str]:
    if folder is None:
        return {}
    try:
        data = json.loads((folder / CACHE_MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def data_uri(jpeg: bytes, mime: str = "image/jpeg") -> str:
    """``data:`` URI of image bytes."""
    return f"data:{mime};base64,{base64.b64encode(jpeg).decode('ascii')}"


@dataclass
class PreparedImages:
    """``src`` of each prepared image by ``(fid, kind)``; ``missing`` lists what failed."""

    src: dict[tuple[int, str], str]
    missing: list[str]
    bytes_written: int = 0
    reused: int = 0


def prepare_images(
    data: ReportData,
    files_dir: Path | None,
    *,
    src_prefix: str | None = None,
    max_px: int = 640,
    workers: int | None = None,
    on_done: Callable[[], None] | None = None,
    reuse_dir: Path | None = None,
) -> PreparedImages:
    """Prepare every image of the report.

    With ``files_dir`` the JPEGs are written there and ``src`` is
    ``"<src_prefix>/<file>"`` (relative to the HTML beside the folder); with
    ``None`` they are embedded as ``data:`` URIs. ``on_done`` is called after each
    image (progress); ``src_prefix`` defaults to the folder's name. ``workers``:
    threads (default: up to 4, one per CPU). ``reuse_dir``: the folder of images of a
    previous run, whose unchanged images are copied instead of made again.
    """
    jobs = jobs_for(data)
    if files_dir is not None:
        files_dir.mkdir(parents=True, exist_ok=True)
    workers = workers or max(1, min(4, os.cpu_count() or 1))
    out = PreparedImages({}, [])
    previous = _read_manifest(reuse_dir)
    manifest: dict[str, str] = {}

    def one(job: ImageJob) -> tuple[ImageJob, bytes | None, str, str | None, bool]:
        sig = signature(job, max_px)
        if sig is not None and reuse_dir is not None and previous.get(job.target_name) == sig:
            try:
                return job, (reuse_dir / job.target_name).read_bytes(), "", sig, True
            except OSError:
                pass  # made again below
        try:
            return job, render_image(job, max_px), "", sig, False
        except Exception as exc:  # one bad image never stops the report
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            return job, None, why, None, False

    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        for job, jpeg, why, sig, reused in pool.map(one, jobs):
            key = (job.photo.fid, job.kind)
            out.reused += reused
            if jpeg is None:
                out.missing.append(f"{job.photo.file_name} ({job.kind}): {why}")
            elif files_dir is None:
                out.src[key] = data_uri(jpeg)
            else:
                (files_dir / job.target_name).write_bytes(jpeg)
                out.src[key] = f"{src_prefix or files_dir.name}/{job.target_name}"
                out.bytes_written += len(jpeg)
                if sig is not None:
                    manifest[job.target_name] = sig
            if on_done is not None:
                on_done()  # may raise CancelledError: the images not started are dropped
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    if files_dir is not None:
        text = json.dumps(manifest, indent=0, sort_keys=True)
        (files_dir / CACHE_MANIFEST).write_text(text, encoding="utf-8")
    return out
