"""Write the QField field package of a survey from the command line (headless QGIS).

    .venv/bin/python scripts/field_package.py SURVEY.gpkg OUT_DIR

Same as the Processing algorithm "Create field package (QField)" of the Heritage
plugin (:func:`heritage_qgis.fieldpkg.write_field_package`): OUT_DIR receives a copy of
the survey, the thumbnails and overlays it refers to, and ``<survey>.qgz``. Needs
Debian's PyQGIS (the project's .venv sees it). Exit code 0 on success, 1 with a
one-line message on bad input.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv``, write the package, print where it is."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("survey", type=Path, help="survey GeoPackage written by heritage classify")
    ap.add_argument("out_dir", type=Path, help="folder to write the package into")
    a = ap.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from qgis.core import QgsApplication

    app = None
    if QgsApplication.instance() is None:
        app = QgsApplication([], False)
        app.initQgis()
    try:
        from heritage_qgis.fieldpkg import write_field_package

        if not a.survey.is_file():
            print(f"Error: survey GeoPackage not found: {a.survey}", file=sys.stderr)
            return 1
        try:
            qgz = write_field_package(a.survey, a.out_dir)
        except (ValueError, OSError) as exc:
            print(f"Error: {exc}", file=sys.stderr)
            return 1
        print(f"field package: {qgz.parent} (open {qgz.name} in QField)")
        return 0
    finally:
        if app is not None:
            app.exitQgis()


if __name__ == "__main__":
    sys.exit(main())
