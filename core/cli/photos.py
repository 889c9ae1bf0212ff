"""``heritage photos DIR [DIR...] -o OUT.gpkg``: geotagged photos into a GeoPackage."""

from __future__ import annotations

import json
from pathlib import Path

import click

from heritage.cli.options import json_progress_option
from heritage.kernel.progress import JsonLinesProgress, TqdmProgress
from heritage.survey.photos import ImportConfig, import_photos


@click.command("photos")
@click.argument("dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="GeoPackage to create or add to (layer 'photos', table 'invalid_photos').",
)
@click.option(
    "--batch-size",
    default=ImportConfig().batch_size,
    show_default=True,
    type=click.IntRange(min=1),
    help="Rows per transaction: an interruption loses at most one batch.",
)
@click.option(
    "--max-megapixels",
    type=click.FloatRange(min=0.001),
    default=None,
    help="Refuse larger images (default: Pillow's limit, about 89 megapixels).",
)
@json_progress_option()
def photos(
    dirs: tuple[Path, ...],
    output: Path,
    batch_size: int,
    max_megapixels: float | None,
    json_progress: bool,
) -> None:
    """Import the geotagged photos found in DIRS (recursively) into OUTPUT.

    JPEG, PNG, TIFF and HEIC/HEIF are read; files without a usable GPS position are
    listed with their reason in the table invalid_photos. Re-running onto the same
    GeoPackage adds only photos not already in it.
    """
    max_pixels = None
    if max_megapixels is not None:
        from PIL import Image

        max_pixels = int(max_megapixels * 1_000_000)
        # Pillow refuses on its own beyond this process-wide limit: raise it too
        Image.MAX_IMAGE_PIXELS = max(max_pixels, Image.MAX_IMAGE_PIXELS or 0)
    config = ImportConfig(batch_size=batch_size, max_pixels=max_pixels)
    if json_progress:
        progress = JsonLinesProgress()
        summary = import_photos(list(dirs), output, config, progress)
        click.echo(json.dumps({"event": "summary", **summary.as_dict()}))
        return
    bar = TqdmProgress()
    try:
        summary = import_photos(list(dirs), output, config, bar)
    finally:
        bar.close()
    for line in summary.lines():
        click.echo(line)
