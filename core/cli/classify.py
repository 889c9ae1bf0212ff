"""``heritage classify PHOTO_DIR... -o SURVEY.gpkg``: a photo survey into a prioritised map.

Only click and the light progress/records modules are imported at the top; the
pipeline (:mod:`heritage.survey.pipeline`, torch, geopandas) is imported when the command runs.
Ctrl-C and SIGTERM stop cleanly between photos: what was written is kept, exit 130.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from heritage.cli.options import (
    cam_method_option,
    device_option,
    json_progress_option,
    model_option,
)
from heritage.kernel.interrupts import EXIT_CANCELLED, stop_on_signals
from heritage.kernel.progress import JsonLinesProgress, NullProgress, TqdmProgress


def _start_option(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    if value is None:
        return None
    from heritage.kernel.errors import DataError
    from heritage.survey.pipeline import parse_start

    try:
        start = parse_start(value)
    except DataError as exc:
        raise click.BadParameter(str(exc)) from exc
    if isinstance(start, Path) and not start.is_file():
        raise click.BadParameter(
            f"{value!r} is neither LON,LAT nor an existing points file (.gpkg/.geojson/.shp)"
        )
    return start


def _compose(*decorators: Any) -> Any:
    """Apply click option decorators in the order they are listed (top to bottom)."""

    def apply(f: Any) -> Any:
        for d in reversed(decorators):
            f = d(f)
        return f

    return apply


#: --footprints, --max-distance, --cluster-eps (shared by classify and group).
grouping_options = _compose(
    click.option(
        "--footprints",
        type=click.Path(path_type=Path, exists=True, dir_okay=False),
        default=None,
        help="Building footprint polygons (any CRS); default: cluster the flagged photos.",
    ),
    click.option(
        "--max-distance",
        type=click.FloatRange(min=0.0),
        default=25.0,
        show_default=True,
        help="Metres from a photo to its footprint.",
    ),
    click.option(
        "--cluster-eps",
        type=click.FloatRange(min=0.0, min_open=True),
        default=30.0,
        show_default=True,
        help="Metres between flagged photos of one building (without footprints).",
    ),
)

#: --start, --network, --by-priority (shared by classify, group and route).
route_options = _compose(
    click.option(
        "--start",
        callback=_start_option,
        default=None,
        help="Route start: LON,LAT or a points file (default: the highest-priority building).",
    ),
    click.option(
        "--network",
        type=click.Path(path_type=Path, exists=True, dir_okay=False),
        default=None,
        help="Street/path lines to route along (any CRS); default: straight lines.",
    ),
    click.option("--by-priority", is_flag=True, help="Visit category A first, then B..."),
    click.option(
        "--site-gap",
        type=click.FloatRange(min=0.0, min_open=True),
        default=2000.0,
        show_default=True,
        help="Metres: flagged buildings farther apart (through any chain of buildings) form "
        "separate sites, each with its own route.",
    ),
)


@click.command("classify")
@click.argument("photo_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="GeoPackage to create or add to (observations, flagged_buildings, inspection_route).",
)
@model_option(help="Model folder (default: $HERITAGE_MODEL_DIR or models/heritage-default).")
@device_option(help="Where the model runs.")
@cam_method_option(help="Grad-CAM method (default: the model's).")
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="Photos per model batch and per GeoPackage transaction.",
)
@click.option(
    "--mode",
    type=click.Choice(["scene", "whole", "tiles"]),
    default="scene",
    show_default=True,
    help="scene: the whole photo in wall-gated tiles at the training patches' scale, close-ups "
    "as one image (the default, for survey photos); whole: the centre crop resized to the "
    "model input (close-ups only); tiles: every full-resolution tile, no wall gate, slow.",
)
@click.option(
    "--tiles",
    is_flag=True,
    hidden=True,
    help="Same as --mode tiles (kept for older scripts).",
)
@click.option(
    "--tile-size",
    type=click.IntRange(min=8),
    default=224,
    show_default=True,
    help="Tile px (--mode tiles; scene mode takes its tiles from the model card).",
)
@click.option(
    "--tile-overlap",
    type=click.FloatRange(min=0.0, max=1.0, max_open=True),
    default=0.25,
    show_default=True,
    help="Overlap fraction of neighbouring tiles (--mode tiles).",
)
@click.option(
    "--embed-overlays",
    is_flag=True,
    help="Also store overlay, heat map and thumbnail as BLOBs in the observations layer.",
)
@grouping_options
@route_options
@click.option(
    "--decode-workers",
    type=click.IntRange(min=0),
    default=None,
    help="Threads decoding the next photos while the model works (default: min(2, CPUs); "
    "0: decode in turn).",
)
@click.option(
    "--scheduler",
    default=None,
    metavar="ADDRESS",
    help="Classify on an existing dask.distributed cluster (e.g. tcp://host:8786); photos, "
    "model and output folder must be on storage the workers share.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Classify on a local Dask cluster of N processes (one thread each).",
)
@click.option(
    "--reclassify",
    is_flag=True,
    help="Classify again, with this model, the photos OUTPUT holds from another model (their "
    "rows are replaced; reviews are kept and applied to the new rows).",
)
@json_progress_option()
def classify(
    photo_dirs: tuple[Path, ...],
    output: Path,
    model_dir: Path | None,
    device: str,
    cam_method: str | None,
    batch_size: int,
    mode: str,
    tiles: bool,
    tile_size: int,
    tile_overlap: float,
    embed_overlays: bool,
    footprints: Path | None,
    max_distance: float,
    cluster_eps: float,
    start: Any,
    network: Path | None,
    by_priority: bool,
    site_gap: float,
    decode_workers: int | None,
    scheduler: str | None,
    workers: int | None,
    reclassify: bool,
    json_progress: bool,
) -> None:
    """Classify the photos in PHOTO_DIRS (recursively) into the GeoPackage OUTPUT.

    Every readable photo is classified (photos without GPS too: status no_location,
    no geometry); Grad-CAM overlays, heat maps and thumbnails go to NAME_overlays/
    beside OUTPUT (NAME.gpkg). Then the priority of every photo, the flagged buildings and an
    inspection route are computed over all photos of OUTPUT. Re-running adds only new
    photos. Scene mode (the default) judges the whole photo in tiles and gives a photo
    without any wall surface the decision not_assessable; in whole-image mode the
    overlay covers the centre crop the model saw.
    """
    from heritage.kernel.errors import CancelledError
    from heritage.survey.pipeline import ClassifyConfig, run_survey

    if scheduler and workers:
        raise click.UsageError("give --scheduler or --workers, not both")
    if decode_workers is None:
        decode_workers = min(2, os.cpu_count() or 1)
    config = ClassifyConfig(
        photo_dirs=tuple(photo_dirs),
        output=output,
        model_dir=model_dir,
        device=device,
        cam_method=cam_method,
        batch_size=batch_size,
        mode="tiles" if tiles else mode,
        tile_size=tile_size,
        tile_overlap=tile_overlap,
        embed_overlays=embed_overlays,
        footprints=footprints,
        max_distance_m=max_distance,
        cluster_eps_m=cluster_eps,
        start=start,
        network=network,
        by_priority=by_priority,
        site_gap_m=site_gap,
        decode_workers=decode_workers,
        scheduler=scheduler,
        workers=workers or 0,
        reclassify=reclassify,
    )
    progress: NullProgress = JsonLinesProgress() if json_progress else TqdmProgress()
    when = "after the current batch of photos, then grouping buildings and planning the route"
    try:
        with stop_on_signals(progress, when):
            summary = run_survey(config, progress)
    except CancelledError:  # a cancel before classifying began (e.g. loading the model)
        if json_progress:
            click.echo(json.dumps({"event": "cancelled", "output": str(output)}))
        click.echo(f"Stopped before any photo was classified; {output} is unchanged.", err=True)
        sys.exit(EXIT_CANCELLED)
    finally:
        if isinstance(progress, TqdmProgress):
            progress.close()
    if json_progress:
        # ``lines``: the text a terminal shows, which the plugin shows as it is
        click.echo(json.dumps({"event": "summary", **summary.as_dict(), "lines": summary.lines()}))
        if summary.cancelled:
            click.echo(json.dumps({"event": "cancelled", "output": str(output)}))
    else:
        for line in summary.lines():
            click.echo(line)
    if summary.cancelled:
        click.echo(
            f"Stopped: the {summary.classified} photo(s) classified in this run are in "
            f"{output}, with buildings and route; run the same command again to classify "
            "the rest.",
            err=True,
        )
        sys.exit(EXIT_CANCELLED)
