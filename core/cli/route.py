"""``heritage route SURVEY.gpkg``: re-plan the inspection route of a survey, same buildings."""

from __future__ import annotations

import json
from pathlib import Path

import click

from heritage.cli.classify import route_options
from heritage.cli.options import json_progress_option
from heritage.kernel.progress import JsonLinesProgress, TqdmProgress


@click.command("route")
@click.argument("survey", type=click.Path(path_type=Path, dir_okay=False))
@route_options
@json_progress_option()
def route(
    survey: Path,
    start: object,
    network: Path | None,
    by_priority: bool,
    site_gap: float,
    json_progress: bool,
) -> None:
    """Plan the visiting order of SURVEY's flagged buildings (layer inspection_route)."""
    from heritage.survey.pipeline import replan_route
    from heritage.survey.sites import summary_line

    progress = JsonLinesProgress() if json_progress else TqdmProgress()
    try:
        totals = replan_route(
            survey,
            start=start,
            network=network,
            by_priority=by_priority,
            progress=progress,  # type: ignore[arg-type]
            site_gap_m=site_gap,
        )
    finally:  # the bar ends its line before any error message
        if isinstance(progress, TqdmProgress):
            progress.close()
    if json_progress:
        click.echo(json.dumps({"event": "summary", **totals}))
    else:
        click.echo(f"route over {totals['buildings']} building(s): {totals['route_m']:.0f} m")
        if summary_line(totals["sites"]):
            click.echo(summary_line(totals["sites"]))
