"""``heritage classify-raster ORTHO.tif -o DEFECTS.tif``: classify an orthophoto tile by tile."""

from __future__ import annotations

import json
from pathlib import Path

import click

from heritage.cli.options import (
    cam_method_option,
    device_option,
    json_progress_option,
    model_option,
)
from heritage.survey.raster import COMBINE_METHODS, RasterConfig

_DEFAULTS = RasterConfig()


def _int_list(value: str, name: str, n: int | None = None) -> tuple[int, ...]:
    try:
        out = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError as exc:
        raise click.BadParameter(f"expected comma-separated integers, got {value!r}") from exc
    if not out or (n is not None and len(out) != n):
        raise click.BadParameter(
            f"expected {n or 'some'} comma-separated integers", param_hint=name
        )
    return out


def _float_pair(value: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value.split(","))
    except ValueError as exc:
        raise click.BadParameter(f"expected LOW,HIGH (e.g. 2,98), got {value!r}") from exc
    return lo, hi


@click.command("classify-raster")
@click.argument("input_path", metavar="RASTER", type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="GeoTIFF to write: band 1 defect_probability, band 2 gradcam (float32, nodata -1).",
)
@model_option()
@click.option(
    "--tile-size",
    type=click.IntRange(min=8),
    default=None,
    help="Tile edge in input pixels (default: the model's input size). Each tile is "
    "resized to the model's input size: choose it so a tile shows what a survey photo "
    "of a defect would show.",
)
@click.option(
    "--overlap",
    type=click.FloatRange(min=0.0, max=1.0, max_open=True),
    default=_DEFAULTS.overlap,
    show_default=True,
    help="Fraction of a tile shared with its neighbours.",
)
@click.option(
    "--bands",
    default=None,
    metavar="R,G,B",
    help="1-based bands read as red, green, blue (default 1,2,3; a raster with fewer "
    "than 3 bands is read as greyscale from band 1). One band is replicated to RGB.",
)
@click.option(
    "--combine",
    type=click.Choice(COMBINE_METHODS),
    default=_DEFAULTS.combine,
    show_default=True,
    help="How overlapping tiles combine in the probability band: max, or a mean weighted "
    "towards each tile's centre. The Grad-CAM band is always the max of cam x p.",
)
@click.option(
    "--scale",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Write the output this many times coarser than the input (transform scaled).",
)
@click.option(
    "--min-valid",
    type=click.FloatRange(min=0.0, max=1.0),
    default=_DEFAULTS.min_valid,
    show_default=True,
    help="Skip tiles with a smaller fraction of valid (not nodata/alpha/masked) pixels.",
)
@click.option(
    "--percentiles",
    default="2,98",
    show_default=True,
    metavar="LOW,HIGH",
    help="Rasters that are not 8-bit are stretched per band from these percentiles "
    "(of a decimated read) to 0..255.",
)
@click.option(
    "--memory-mb",
    type=click.FloatRange(min=1, min_open=False),
    default=_DEFAULTS.memory_mb,
    show_default=True,
    help="Approximate memory budget for stitching buffers and GDAL's cache (the model "
    "comes on top). Larger rasters are done in vertical panels.",
)
@click.option(
    "--batch-size", default=_DEFAULTS.batch_size, show_default=True, type=click.IntRange(min=1)
)
@device_option()
@cam_method_option(help="CAM method (default: the model card's).")
@click.option(
    "--vector",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Also write the footprints of the tiles at or above the threshold as polygons "
    "(GeoPackage, layer raster_defects, EPSG:4326).",
)
@click.option(
    "--threshold",
    type=click.FloatRange(min=0.0, max=1.0),
    default=None,
    help="Threshold on p_final for --vector (default: the model card's).",
)
@json_progress_option()
def classify_raster(
    input_path: Path,
    output: Path,
    model_dir: Path | None,
    tile_size: int | None,
    overlap: float,
    bands: str | None,
    combine: str,
    scale: int,
    min_valid: float,
    percentiles: str,
    memory_mb: float,
    batch_size: int,
    device: str,
    cam_method: str | None,
    vector: Path | None,
    threshold: float | None,
    json_progress: bool,
) -> None:
    """Classify the georeferenced RASTER (an orthophoto of façades or roofs) tile by tile.

    The raster is read in windows (never whole) and the result is a GeoTIFF with the
    same CRS, transform and size (or --scale times coarser): band 1 the defect
    probability, band 2 the stitched Grad-CAM, nodata -1 where the input has none or
    tiles were skipped, with overviews for fast display in QGIS. OUTPUT is replaced only
    when complete: an interrupted run leaves no partial file.
    """
    from heritage.kernel.progress import JsonLinesProgress, TqdmProgress
    from heritage.survey.raster import classify_raster as run

    config = RasterConfig(
        tile_size=tile_size,
        overlap=overlap,
        bands=_int_list(bands, "--bands") if bands else None,
        batch_size=batch_size,
        min_valid=min_valid,
        combine=combine,
        scale=scale,
        percentiles=_float_pair(percentiles),
        memory_mb=memory_mb,
        device=device,
        cam_method=cam_method,
        threshold=threshold,
    )
    try:
        config.validate()
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    progress = JsonLinesProgress() if json_progress else TqdmProgress()
    try:
        summary = run(
            input_path,
            output,
            model_dir=model_dir,
            config=config,
            progress=progress,
            vector=vector,
        )
    finally:
        if isinstance(progress, TqdmProgress):
            progress.close()
    if json_progress:
        click.echo(json.dumps({"event": "summary", **summary.as_dict()}, default=str))
        return
    for line in summary.lines():
        click.echo(line)
