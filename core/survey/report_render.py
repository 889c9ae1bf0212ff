"""``heritage report``: a survey GeoPackage -> an inspection report (HTML, PDF, CSV).

:func:`write_report` reads the survey (:mod:`heritage.survey.report`), draws the overview map
(:func:`heritage.survey.mapplot.plot_survey`, optionally over a local basemap), prepares the
photo and overlay images (:mod:`heritage.survey.report_images`), renders the HTML from the
Jinja2 template ``templates/report.html.j2`` and, on request, the PDF with WeasyPrint
(from that same HTML, with its print stylesheet) and the CSV of the buildings table.

Files: ``REPORT.html`` and its images in ``REPORT_files/`` beside it (or, with
``embed_images``, everything inside the HTML as ``data:`` URIs); ``REPORT.csv`` beside
the HTML. Outputs appear whole or not at all: the images are written into a
temporary folder that replaces the old one at the end, the HTML, CSV and PDF through
temporary files renamed into place, so an interrupted run keeps the previous report.
The survey is only read.

jinja2, WeasyPrint, matplotlib and geopandas are imported inside the functions.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from heritage import __version__
from heritage.io.fileio import atomic_write_bytes
from heritage.kernel.errors import DataError, OutputNotWritableError
from heritage.kernel.progress import NullProgress, Progress
from heritage.survey.priority import CATEGORIES

if TYPE_CHECKING:
    from heritage.survey.report import ReportPhoto

logger = logging.getLogger(__name__)

TEMPLATES = Path(__file__).resolve().parent / "templates"
TEMPLATE = "report.html.j2"
MAP_NAME = "overview_map.png"


@dataclass(frozen=True, slots=True)
class ReportConfig:
    """What ``heritage report`` writes.

    ``html``: the report (``.html``); ``pdf``: also a PDF there; ``csv``: also the
    buildings table as ``<html stem>.csv``; ``basemap``: a georeferenced raster or a
    folder of XYZ tiles under the overview map; ``embed_images``: one self-contained
    HTML file (images as ``data:`` URIs) instead of a folder of images beside it;
    ``image_max_px``: longer side of the report's images.
    """

    survey: Path
    html: Path
    pdf: Path | None = None
    csv: bool = False
    basemap: Path | None = None
    title: str | None = None
    embed_images: bool = False
    image_max_px: int = 640
    map_dpi: int = 150

    def __post_init__(self) -> None:
        if self.image_max_px < 64:
            raise ValueError("image_max_px must be at least 64")

    @property
    def files_dir(self) -> Path:
        """The folder of images beside the HTML: ``<stem>_files``."""
        return self.html.parent / f"{self.html.stem}_files"

    @property
    def csv_path(self) -> Path | None:
        """``<html stem>.csv`` beside the HTML when ``csv`` is set."""
        return self.html.with_suffix(".csv") if self.csv else None


@dataclass
class ReportResult:
    """What :func:`write_report` wrote."""

    html: Path
    files_dir: Path | None
    pdf: Path | None
    csv: Path | None
    buildings: int
    photos: int
    images: int
    missing_images: list[str] = field(default_factory=list)
    reused_images: int = 0
    html_bytes: int = 0
    pdf_bytes: int = 0
    pdf_pages: int = 0
    seconds: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "html": str(self.html),
            "files_dir": str(self.files_dir) if self.files_dir else None,
            "pdf": str(self.pdf) if self.pdf else None,
            "csv": str(self.csv) if self.csv else None,
            "buildings": self.buildings,
            "photos": self.photos,
            "images": self.images,
            "missing_images": len(self.missing_images),
            "reused_images": self.reused_images,
            "html_bytes": self.html_bytes,
            "pdf_bytes": self.pdf_bytes,
            "pdf_pages": self.pdf_pages,
            "seconds": {k: round(v, 2) for k, v in self.seconds.items()},
        }

    def lines(self) -> list[str]:
        """The result as terminal lines."""
        what = (
            f"{self.buildings} building(s), {self.photos} photo(s)"
            if self.buildings
            else ("no flagged building: the report says so")
        )
        reused = (
            f", {self.reused_images} images of the previous run reused"
            if self.reused_images
            else ""
        )
        out = [f"report: {self.html} ({what}; {_mb(self.html_bytes)} with its images{reused})"]
        if self.pdf:
            out.append(f"pdf: {self.pdf} ({self.pdf_pages} page(s), {_mb(self.pdf_bytes)})")
        if self.csv:
            out.append(f"csv: {self.csv}")
        if self.missing_images:
            out.append(
                f"warning: {len(self.missing_images)} image(s) missing or unreadable, shown as "
                f"placeholders (first: {self.missing_images[0]})"
            )
        total = sum(self.seconds.values())
        out.append(f"done in {total:.1f} s")
        return out


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.0f} kB"


def check_outputs(cfg: ReportConfig) -> None:
    """Refuse outputs that would not be a report (so never the survey itself)."""
    if cfg.html.suffix.lower() not in {".html", ".htm"}:
        raise OutputNotWritableError(f"{cfg.html}: the report must end in .html")
    if cfg.pdf is not None and cfg.pdf.suffix.lower() != ".pdf":
        raise OutputNotWritableError(f"{cfg.pdf}: the PDF must end in .pdf")
    for out in (cfg.html, cfg.pdf):
        if out is not None and out.is_dir():
            raise OutputNotWritableError(f"{out} is a folder; give a file name")
    for folder in {cfg.html.parent, *([cfg.pdf.parent] if cfg.pdf else [])}:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputNotWritableError(
                f"cannot create the folder {folder} ({exc.strerror}); choose another output"
            ) from exc


def photo_meta(photo: ReportPhoto, reviews_table: bool = False) -> list[str]:
    """The facts under a photo in the report, one short phrase each."""
    out = [f"taken {photo.taken_at}" if photo.taken_at else "capture time unknown"]
    out.append(f"heading {photo.heading_text}" if photo.heading is not None else "no heading")
    if photo.p_final is not None:
        out.append(f"P(conservation needed) {photo.p_final:.3f}")
    if photo.area_fraction is not None:
        out.append(f"extent {100 * photo.area_fraction:.1f} %")
    if photo.n_wall_tiles is not None and photo.n_tiles and photo.n_tiles > 1:
        flagged = f", {photo.n_flagged_tiles} flagged" if photo.n_flagged_tiles is not None else ""
        out.append(f"tiles: {photo.n_wall_tiles} of {photo.n_tiles} on a wall{flagged}")
    if photo.not_assessable:
        out.append("not assessable (no wall in view)")
    if photo.status and photo.status not in ("ok", "not_assessable"):
        out.append(f"status {photo.status}")
    if reviews_table:
        r = photo.review
        if r is None:
            out.append("not reviewed")
        else:
            text = f"review: {r.state}"
            text += f" ({r.defect_type})" if r.defect_type else ""
            text += f" by {r.reviewer}" if r.reviewer else ""
            text += f", {r.at}" if r.at else ""
            text += f": “{r.note}”" if r.note else ""
            out.append(text)
    return out


def css_string(text: str) -> Any:
    """``text`` as a quoted CSS string, safe inside ``<style>`` (no HTML escaping there)."""
    from markupsafe import Markup

    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("<", "\\3c ")
    return Markup(f'"{escaped.replace(chr(10), " ")}"')


def render_html(context: dict[str, Any]) -> str:
    """The report's HTML from the template and ``context``."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["css_string"] = css_string
    reviews_table = bool(context.get("reviews_table"))
    env.globals["photo_meta"] = lambda p: photo_meta(p, reviews_table)
    return env.get_template(TEMPLATE).render(**context)


class _PageSteps(logging.Handler):
    """WeasyPrint's "Creating layout - Page N" progress log lines -> one step each."""

    def __init__(self, progress: Progress) -> None:
        super().__init__(logging.INFO)
        self.progress = progress

    def emit(self, record: logging.LogRecord) -> None:
        if "Creating layout" in record.getMessage():
            self.progress.step(1)
            self.progress.check_cancelled()  # raises out of WeasyPrint's layout loop


def write_pdf(html_path: Path, pdf: Path, progress: Progress | None = None) -> tuple[int, int]:
    """Render ``html_path`` (its images resolved beside it) to ``pdf`` with WeasyPrint;
    returns (pages, bytes). Written through a temporary file. ``progress`` gets one step
    per page laid out (the total is not known beforehand)."""
    for name in ("fontTools", "weasyprint"):
        logging.getLogger(name).setLevel(logging.WARNING)
    pages_log = logging.getLogger("weasyprint.progress")
    saved = pages_log.level, pages_log.propagate
    pages_log.setLevel(logging.WARNING)  # its per-page INFO lines are not for the terminal
    try:
        from weasyprint import HTML
    except (ImportError, OSError) as exc:  # OSError: Pango missing
        raise DataError(
            f"the PDF needs WeasyPrint and Pango ({exc}); run 'make setup' or leave out --pdf"
        ) from exc
    handler = _PageSteps(progress or NullProgress())
    pages_log.addHandler(handler)
    pages_log.setLevel(logging.INFO)
    pages_log.propagate = False
    try:
        doc = HTML(filename=str(html_path), base_url=str(html_path.parent)).render()
    finally:
        pages_log.removeHandler(handler)
        pages_log.setLevel(logging.WARNING if saved[0] == logging.NOTSET else saved[0])
        pages_log.propagate = saved[1]
    data = doc.write_pdf()
    atomic_write_bytes(pdf, data)
    return len(doc.pages), len(data)


def _dir_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def write_report(cfg: ReportConfig, progress: Progress | None = None) -> ReportResult:
    """Write the inspection report of ``cfg.survey`` (see the module docstring)."""
    from heritage.survey.mapplot import plot_survey
    from heritage.survey.report import csv_text, read_report_data, table_rows
    from heritage.survey.report_images import data_uri, jobs_for, prepare_images

    progress = progress or NullProgress()
    check_outputs(cfg)
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    data = read_report_data(cfg.survey)  # before any progress: bad input is one line
    seconds["read"] = time.perf_counter() - t0

    final_dir = None if cfg.embed_images else cfg.files_dir
    work_dir = cfg.html.parent / f".{cfg.html.stem}_files.partial"
    shutil.rmtree(work_dir, ignore_errors=True)
    work_dir.mkdir(parents=True)
    try:
        t0 = time.perf_counter()
        progress.start("Drawing the overview map", total=1)
        map_src = map_problem = None
        if data.summary.n_photos > data.summary.n_no_location:
            # a basemap that cannot be read is the user's to fix: a one-line error
            title = cfg.title or f"Inspection round: {cfg.survey.stem}"
            png = plot_survey(
                cfg.survey, work_dir / MAP_NAME, title=title, basemap=cfg.basemap, dpi=cfg.map_dpi
            )
            map_src = (
                data_uri(png.read_bytes(), "image/png")
                if final_dir is None
                else f"{final_dir.name}/{MAP_NAME}"
            )
        else:
            map_problem = "the survey has no photo with a position."
        progress.step(1)
        progress.check_cancelled()
        seconds["map"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        n_images = len(jobs_for(data))
        progress.start("Preparing the photos and overlays", total=n_images)

        def done() -> None:
            progress.step(1)
            progress.check_cancelled()

        images = prepare_images(
            data,
            None if final_dir is None else work_dir,
            src_prefix=final_dir.name if final_dir else None,
            max_px=cfg.image_max_px,
            on_done=done,
            reuse_dir=final_dir if final_dir is not None and final_dir.is_dir() else None,
        )
        seconds["images"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        progress.start("Writing the HTML", total=1)
        html = render_html(
            {
                "title": cfg.title or f"Inspection report: {cfg.survey.stem}",
                "version": __version__,
                "s": data.summary,
                "buildings": data.buildings,
                "rows": table_rows(data),
                "categories": CATEGORIES,
                "images": images.src,
                "missing": images.missing,
                "map_src": map_src,
                "map_problem": map_problem,
                "basemap": cfg.basemap.name if cfg.basemap else None,
                "reviews_table": data.summary.reviews is not None,
                "csv_name": cfg.csv_path.name if cfg.csv_path else None,
            }
        )
        if final_dir is not None:
            old = final_dir.parent / f".{final_dir.name}.old"
            shutil.rmtree(old, ignore_errors=True)
            if final_dir.exists():
                final_dir.rename(old)
            work_dir.rename(final_dir)
            shutil.rmtree(old, ignore_errors=True)
        atomic_write_bytes(cfg.html, html.encode("utf-8"))
        if cfg.csv_path is not None:
            atomic_write_bytes(cfg.csv_path, csv_text(data).encode("utf-8"))
        progress.step(1)
        seconds["html"] = time.perf_counter() - t0
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)

    result = ReportResult(
        html=cfg.html,
        files_dir=final_dir,
        pdf=None,
        csv=cfg.csv_path,
        buildings=len(data.buildings),
        photos=data.n_report_photos,
        images=len(images.src),
        missing_images=images.missing,
        reused_images=images.reused,
        html_bytes=cfg.html.stat().st_size + (_dir_size(final_dir) if final_dir else 0),
        seconds=seconds,
    )
    for line in images.missing[:20]:
        logger.warning("image not available: %s", line)
    if cfg.pdf is not None:
        progress.check_cancelled()
        t0 = time.perf_counter()
        progress.start("Writing the PDF (pages laid out)", total=None)
        result.pdf_pages, result.pdf_bytes = write_pdf(cfg.html, cfg.pdf, progress)
        result.pdf = cfg.pdf
        seconds["pdf"] = time.perf_counter() - t0
    return result
