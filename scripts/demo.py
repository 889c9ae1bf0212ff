"""`make demo`: run heritage on the embedded demo survey (resources/demo/photos).

With a model (``$HERITAGE_MODEL_DIR`` or ``models/heritage-default``):

1. classify the photos into ``out/demo/survey.gpkg`` (layers ``observations``,
   ``flagged_buildings``, ``inspection_route``, table ``invalid_photos``, default QGIS
   styles), with Grad-CAM overlays, heat maps and thumbnails in
   ``out/demo/survey_overlays/``;
2. draw ``out/demo/survey_map.png`` (points by priority category, buildings, route);
3. write the inspection report ``out/demo/report.html`` (images in ``report_files/``),
   ``report.pdf`` and ``report.csv`` (``heritage report``).

Without a model it says so and only imports the geotagged photos (layer ``photos``).
Re-runs add nothing new (photos are recognised by sha256).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from heritage.kernel.progress import TqdmProgress
from heritage.model.card import CARD_FILE, default_model_dir
from heritage.survey.photos import ImportSummary, import_photos

ROOT = Path(__file__).resolve().parents[1]
DEMO_PHOTOS = ROOT / "resources" / "demo" / "photos"
OUT_DIR = ROOT / "out" / "demo"
SURVEY = OUT_DIR / "survey.gpkg"
MAP_PNG = OUT_DIR / "survey_map.png"
REPORT = OUT_DIR / "report.html"


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def import_demo_photos(photos: Path = DEMO_PHOTOS, survey: Path = SURVEY) -> ImportSummary:
    """Fallback step: the demo photos into the survey GeoPackage (layer ``photos``)."""
    survey.parent.mkdir(parents=True, exist_ok=True)
    progress = TqdmProgress()
    try:
        return import_photos([photos], survey, progress=progress)
    finally:
        progress.close()


def classify_demo_photos(model_dir: Path, photos: Path = DEMO_PHOTOS, survey: Path = SURVEY):
    """Step 1: classify, explain, prioritise and route the demo survey."""
    from heritage.survey.pipeline import ClassifyConfig, run_survey

    progress = TqdmProgress()
    try:
        cfg = ClassifyConfig((photos,), survey, model_dir=model_dir, device="auto")
        return run_survey(cfg, progress)
    finally:
        progress.close()


def draw_map(survey: Path = SURVEY, png: Path = MAP_PNG) -> Path:
    """Step 2: the survey map as PNG."""
    from heritage.survey.mapplot import plot_survey

    return plot_survey(survey, png, title="heritage demo survey: Arezzo historic centre")


def write_demo_report(survey: Path = SURVEY, html: Path = REPORT):
    """Step 3: the inspection report (HTML, PDF, CSV)."""
    from heritage.survey.report_render import ReportConfig, write_report

    progress = TqdmProgress()
    try:
        cfg = ReportConfig(
            survey,
            html,
            pdf=html.with_suffix(".pdf"),
            csv=True,
            title="Inspection report: heritage demo survey, Arezzo",
        )
        return write_report(cfg, progress)
    finally:
        progress.close()


def main() -> int:
    """Run the demo steps and print where the results are."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    print(f"heritage demo: photos from {_rel(DEMO_PHOTOS)}")
    model_dir = default_model_dir()
    if not (model_dir / CARD_FILE).is_file():
        print(
            f"\nNo model at {_rel(model_dir)} (no {CARD_FILE}): the photos are only imported, "
            "not classified.\nTrain one with 'heritage train DATA_DIR... --out "
            "models/heritage-default' or set HERITAGE_MODEL_DIR to a model folder, then run "
            "'make demo' again.\n"
        )
        summary = import_demo_photos()
        for line in summary.lines():
            print(f"  {line}")
        print(f"\nOpen {_rel(SURVEY)} in QGIS (layers 'photos' and 'invalid_photos').")
        return 0
    print(f"model: {_rel(model_dir)}")
    result = classify_demo_photos(model_dir)
    for line in result.lines():
        print(f"  {line}")
    png = draw_map()
    report = write_demo_report()
    print(f"\nMap: {_rel(png)}")
    print(f"Report: {_rel(report.html)}, {_rel(report.pdf)} ({report.pdf_pages} pages), "
          f"{_rel(report.csv)}")  # fmt: skip
    print(
        f"Open {_rel(SURVEY)} in QGIS: observations (hover a point for the photo and its "
        "Grad-CAM overlay), flagged_buildings and inspection_route open styled."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
