"""``heritage group SURVEY.gpkg``: re-group a classified survey per building and re-plan its route.

Works in place on a GeoPackage written by ``heritage classify``; nothing is
classified again. Heavy modules are imported when the command runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from heritage.cli.classify import grouping_options, route_options
from heritage.cli.options import json_progress_option, model_option
from heritage.kernel.progress import JsonLinesProgress, TqdmProgress


def _model_threshold(model_dir: Path | None) -> float | None:
    """The decision threshold of the model card (``None`` when no card can be read)."""
    from heritage.kernel.errors import ModelError
    from heritage.model.card import default_model_dir, read_card

    try:
        return float(read_card(model_dir or default_model_dir()).threshold)
    except ModelError:
        return None


@click.command("group")
@click.argument("survey", type=click.Path(path_type=Path, dir_okay=False))
@grouping_options
@route_options
@model_option(help="Model whose decision threshold anchors the priority score.")
@json_progress_option()
def group(
    survey: Path,
    footprints: Path | None,
    max_distance: float,
    cluster_eps: float,
    start: object,
    network: Path | None,
    by_priority: bool,
    site_gap: float,
    model_dir: Path | None,
    json_progress: bool,
) -> None:
    """Group the flagged photos of SURVEY per building, re-score them and re-plan the route."""
    from heritage.survey.pipeline import regroup_survey
    from heritage.survey.sites import summary_line

    progress = JsonLinesProgress() if json_progress else TqdmProgress()
    try:
        totals = regroup_survey(
            survey,
            footprints=footprints,
            max_distance_m=max_distance,
            cluster_eps_m=cluster_eps,
            start=start,  # type: ignore[arg-type]
            network=network,
            by_priority=by_priority,
            site_gap_m=site_gap,
            threshold=_model_threshold(model_dir),
            progress=progress,
        )
    finally:  # the bar ends its line before any error message
        if isinstance(progress, TqdmProgress):
            progress.close()
    if json_progress:
        click.echo(json.dumps({"event": "summary", **totals}, default=str))
    else:
        click.echo(
            f"{totals['flagged_total']} flagged photo(s) on {totals['buildings']} building(s); "
            f"route {totals['route_m']:.0f} m -> {survey}"
        )
        if summary_line(totals.get("sites", [])):
            click.echo(summary_line(totals["sites"]))
        from heritage.io.reviews import summary_text

        if text := summary_text(totals.get("reviews") or {}):
            click.echo(f"reviews: {text}")
        for p in totals["problems"]:
            click.echo(f"warning: {p}", err=True)
