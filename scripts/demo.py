"""`make demo`: run heritage on the embedded demo survey (resources/demo/photos).

Steps (each a small function, so the pipeline can grow step by step):
1. import the geotagged photos into ``out/demo/survey.gpkg`` (layer ``photos``,
   table ``invalid_photos``);
2. (later) classify, explain, prioritise, route.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from heritage.photos import ImportSummary, import_photos
from heritage.progress import TqdmProgress

ROOT = Path(__file__).resolve().parents[1]
DEMO_PHOTOS = ROOT / "resources" / "demo" / "photos"
OUT_DIR = ROOT / "out" / "demo"
SURVEY = OUT_DIR / "survey.gpkg"


def import_demo_photos(photos: Path = DEMO_PHOTOS, survey: Path = SURVEY) -> ImportSummary:
    """Step 1: the demo photos into the survey GeoPackage (re-runs add nothing new)."""
    survey.parent.mkdir(parents=True, exist_ok=True)
    progress = TqdmProgress()
    try:
        return import_photos([photos], survey, progress=progress)
    finally:
        progress.close()


def main() -> int:
    """Run the demo steps and print where the results are."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    print(f"heritage demo: photos from {DEMO_PHOTOS.relative_to(ROOT)}")
    summary = import_demo_photos()
    for line in summary.lines():
        print(f"  {line}")
    print(f"\nOpen {SURVEY} in QGIS (layers 'photos' and 'invalid_photos').")
    return 0


if __name__ == "__main__":
    sys.exit(main())
