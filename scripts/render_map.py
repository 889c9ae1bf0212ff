"""Render a survey GeoPackage as the plugin shows it, headless: styled, labelled, in the
project CRS the plugin chooses (the local UTM zone).

    QT_QPA_PLATFORM=offscreen .venv/bin/python scripts/render_map.py SURVEY.gpkg \\
        -o docs/img/demo-survey.png [--size 1200x800] [--site 1]

The layers go through ``heritage_qgis.results.load_survey`` (the dialog's and the
Processing algorithms' path), so the picture is what a QGIS user gets. ``--site``
zooms to the buildings of one site (default: the first, the one visited first).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def render(gpkg: Path, out: Path, size: tuple[int, int] = (1200, 800), site: int = 1):
    """Load ``gpkg`` into the current project, render it to ``out`` (PNG); returns the
    labelling results (which labels were placed)."""
    from qgis.core import (
        QgsFeatureRequest,
        QgsMapRendererSequentialJob,
        QgsMapSettings,
        QgsProject,
        QgsRectangle,
    )
    from qgis.PyQt.QtCore import QSize
    from qgis.PyQt.QtGui import QColor, QFont, QPainter

    from heritage_qgis.results import load_survey

    project = QgsProject.instance()
    layers = load_survey(gpkg, project)
    crs = project.crs()
    settings = QgsMapSettings()
    order = [n for n in ("inspection_route", "observations", "flagged_buildings") if n in layers]
    settings.setLayers([layers[n] for n in order])
    settings.setDestinationCrs(crs)
    settings.setTransformContext(project.transformContext())
    settings.setOutputSize(QSize(*size))
    settings.setBackgroundColor(QColor("#f4f1ea"))
    settings.setFlag(QgsMapSettings.Flag.DrawLabeling, True)
    settings.setFlag(QgsMapSettings.Flag.Antialiasing, True)
    extent = QgsRectangle()
    buildings = layers.get("flagged_buildings")
    if buildings is not None:
        request = QgsFeatureRequest().setFilterExpression(f'"site" = {int(site)}')
        for feature in buildings.getFeatures(request):
            extent.combineExtentWith(feature.geometry().boundingBox())
        source = buildings
    if extent.isEmpty():
        source = layers["observations"]
        extent = source.extent()
    extent = settings.layerExtentToOutputExtent(source, extent)
    extent.grow(max(extent.width(), extent.height()) * 0.12 + 20.0)
    settings.setExtent(extent)
    job = QgsMapRendererSequentialJob(settings)
    job.start()
    job.waitForFinished()
    image = job.renderedImage()
    painter = QPainter(image)
    painter.setPen(QColor("#222222"))
    painter.setFont(QFont("Sans", 11))
    caption = (
        f"{buildings.name() if buildings is not None else ''} · "
        f"{layers['inspection_route'].name() if 'inspection_route' in layers else ''} · "
        f"{crs.authid()} {crs.description()}"
    )
    painter.drawText(12, size[1] - 12, caption)
    painter.end()
    out.parent.mkdir(parents=True, exist_ok=True)
    if not image.save(str(out), "PNG"):
        raise OSError(f"cannot write {out}")
    return job.takeLabelingResults()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("survey", type=Path)
    parser.add_argument("-o", "--out", type=Path, required=True)
    parser.add_argument("--size", default="1200x800")
    parser.add_argument("--site", type=int, default=1)
    args = parser.parse_args(argv)
    if not args.survey.is_file():
        print(f"Error: survey GeoPackage not found: {args.survey}", file=sys.stderr)
        return 1
    width, height = (int(v) for v in args.size.lower().split("x"))
    from qgis.core import QgsApplication

    app = QgsApplication([], False)
    app.initQgis()
    labels = render(args.survey, args.out, (width, height), args.site)
    print(f"wrote {args.out} ({len(labels.allLabels())} labels placed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
