"""Render the QGIS review panel on a survey, headless (the README's screenshot).

    cd out/demo && QT_QPA_PLATFORM=offscreen ../../.venv/bin/python \\
        ../../scripts/render_review_panel.py survey.gpkg -o ../../docs/img/review-panel.png

Run it from the survey's folder with the survey's name only, so that the picture shows
no path of this machine. It only reads the survey: the panel shows its first flagged
photo in visiting order (or ``--photo FILE_NAME``) with the overlay and the heat map.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def render(gpkg: str, out: Path, size: tuple[int, int], photo: str | None = None) -> Path:
    """Open the panel on ``gpkg`` and save it as a PNG at ``out``."""
    from heritage_qgis.review import ReviewDock

    dock = ReviewDock()
    dock.resize(*size)
    if not dock.open_survey(gpkg):
        raise SystemExit(f"{gpkg}: no flagged photo to show")
    if photo:
        dock.set_order("all")
        sha = next((r["sha256"] for r in dock.rows if r["file_name"] == photo), None)
        if sha is None or not dock.show_sha(sha):
            raise SystemExit(f"{gpkg}: no photo named {photo}")
    dock.show()
    out.parent.mkdir(parents=True, exist_ok=True)
    if not dock.grab().save(str(out)):
        raise SystemExit(f"cannot write {out}")
    return out


def main() -> int:
    """Command line: SURVEY.gpkg -o OUT.png [--size WxH] [--photo NAME]."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("survey")
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("--size", default="1100x620")
    parser.add_argument("--photo", default=None)
    args = parser.parse_args()
    w, h = (int(v) for v in args.size.lower().split("x"))
    from qgis.core import QgsApplication

    app = QgsApplication([], True)
    app.initQgis()
    try:
        print(render(args.survey, args.output, (w, h), args.photo))
    finally:
        app.exitQgis()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
