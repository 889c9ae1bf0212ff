"""``heritage group SURVEY.gpkg``: re-group a classified survey per building and re-plan its route.

Works in place on a GeoPackage written by ``heritage classify``; nothing is
classified again. Heavy modules are imported when the command runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from heritage.cli.classify import grouping_options, route_options
from heritage.cli.options import json_progress_option, model_option
from heritage.kernel.progress import JsonLinesProgress, TqdmProgress


def fallback_threshold(model_dir: Path | None) -> tuple[float | None, str]:
    """``(threshold, "model ID VERSION")`` of the model card (the default model's when
    ``model_dir`` is ``None``): what photos classified before thresholds were recorded
    are scored with. ``(None, "")`` when no card can be read (the default floor then)."""
    from heritage.kernel.errors import ModelError
    from heritage.model.card import default_model_dir, read_card

    try:
        card = read_card(model_dir or default_model_dir())
    except ModelError:
        return None, ""
    return float(card.threshold), f"model {card.model_id} {card.version}"


@click.command("group")
@click.argument("survey", type=click.Path(path_type=Path, dir_okay=False))
@grouping_options
@route_options
@model_option(
    help="Model whose decision threshold anchors the priority score of photos classified "
    "before surveys recorded each photo's own threshold (default: the default model)."
)
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

    progress = JsonLinesProgress() if json_progress else TqdmProgress()
    threshold, source = fallback_threshold(model_dir)
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
            threshold=threshold,
            threshold_source=source,
            progress=progress,
        )
    finally:  # the bar ends its line before any error message
        if isinstance(progress, TqdmProgress):
            progress.close()
    lines = summary_lines(totals, survey)
    warnings = [f"warning: {p}" for p in totals["problems"]]
    if json_progress:  # the plugin shows ``lines`` as they are
        event = {"event": "summary", **totals, "lines": lines + warnings}
        click.echo(json.dumps(event, default=str))
    else:
        for line in lines:
            click.echo(line)
        for line in warnings:
            click.echo(line, err=True)


def summary_lines(totals: dict[str, Any], survey: Path) -> list[str]:
    """What ``heritage group`` did, as text lines (terminal, and the plugin's status)."""
    from heritage.io.reviews import summary_text
    from heritage.survey.sites import summary_line

    lines = [
        f"{totals['flagged_total']} flagged photo(s) on {totals['buildings']} building(s); "
        f"route {totals['route_m']:.0f} m -> {survey}"
    ]
    if site_line := summary_line(totals.get("sites", [])):
        lines.append(site_line)
    if text := summary_text(totals.get("reviews") or {}):
        lines.append(f"reviews: {text}")
    return lines
