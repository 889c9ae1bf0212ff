"""``heritage report SURVEY.gpkg -o REPORT.html``: the inspection report of a survey."""

from __future__ import annotations

import json
from pathlib import Path

import click

from heritage.cli.options import json_progress_option
from heritage.kernel.progress import JsonLinesProgress, TqdmProgress


@click.command("report")
@click.argument("survey", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "-o",
    "--output",
    "html",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="The HTML report to write (NAME.html); its images go to NAME_files/ beside it.",
)
@click.option(
    "--pdf",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Also write the report as PDF (A4, WeasyPrint).",
)
@click.option(
    "--csv", "csv", is_flag=True, help="Also write the buildings table as NAME.csv beside it."
)
@click.option(
    "--basemap",
    type=click.Path(path_type=Path, exists=True),
    default=None,
    help="Local basemap under the overview map: a georeferenced raster (GeoTIFF...) or a "
    "folder of XYZ tiles {z}/{x}/{y}.png. Nothing is downloaded.",
)
@click.option("--title", default=None, help="Report title [default: after the survey's name].")
@click.option(
    "--embed-images",
    is_flag=True,
    help="One self-contained HTML file (images inside) instead of a folder of images beside it.",
)
@click.option(
    "--image-size",
    type=click.IntRange(64, 4096),
    default=640,
    show_default=True,
    help="Longer side (px) of the photos and overlays in the report.",
)
@json_progress_option()
def report(
    survey: Path,
    html: Path,
    pdf: Path | None,
    csv: bool,
    basemap: Path | None,
    title: str | None,
    embed_images: bool,
    image_size: int,
    json_progress: bool,
) -> None:
    """Write the inspection report of SURVEY: summary, map of the round, then one section
    per flagged building in visiting order with its priority, photos and overlays."""
    from heritage.survey.report_render import ReportConfig, write_report

    cfg = ReportConfig(
        survey=survey,
        html=html,
        pdf=pdf,
        csv=csv,
        basemap=basemap,
        title=title,
        embed_images=embed_images,
        image_max_px=image_size,
    )
    progress = JsonLinesProgress() if json_progress else TqdmProgress()
    try:
        result = write_report(cfg, progress)  # type: ignore[arg-type]
    finally:
        if isinstance(progress, TqdmProgress):
            progress.close()
    if json_progress:
        click.echo(json.dumps({"event": "summary", **result.as_dict()}))
    else:
        for line in result.lines():
            click.echo(line, err=line.startswith("warning"))
