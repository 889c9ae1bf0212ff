"""``heritage review`` (record a verdict) and ``heritage reviews`` (list, export).

Both are light: standard library, sqlite3 and pyogrio; no torch. ``review`` only
appends to the survey's ``reviews`` table (:mod:`heritage.io.reviews`); the map follows
the reviews at the next ``heritage group`` (or with ``--rescore`` at once).
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from heritage.cli.options import json_progress_option


@click.command("review")
@click.argument("survey", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--photo", "sha256", required=True, help="The photo's sha256 (observations).")
@click.option(
    "--verdict",
    required=True,
    type=click.Choice(["confirmed", "false_alarm", "unsure", "missed"]),
    help="confirmed / false_alarm (flagged photos), missed (a defect the model did not flag), "
    "unsure.",
)
@click.option(
    "--type",
    "defect_type",
    type=click.Choice(
        ["crack", "salt", "biological_growth", "crust_soiling", "loss_of_material", "other"]
    ),
    default=None,
    help="Defect type of a confirmed or missed defect.",
)
@click.option("--note", default=None, help="Free note.")
@click.option("--reviewer", required=True, help="Who reviews (name or initials).")
@click.option(
    "--box", default=None, metavar="L,T,R,B", help="The tile the review is about (photo pixels)."
)
@click.option(
    "--rescore",
    is_flag=True,
    help="Also re-group, re-score and re-route the survey (as 'heritage group' with its "
    "default options) so that the map follows the review at once.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the review written as JSON.")
def review(
    survey: Path,
    sha256: str,
    verdict: str,
    defect_type: str | None,
    note: str | None,
    reviewer: str,
    box: str | None,
    rescore: bool,
    as_json: bool,
) -> None:
    """Record a reviewer's VERDICT on one photo of SURVEY (appended to its reviews table)."""
    from heritage.io.reviews import parse_box, record_review

    try:
        tile = parse_box(box)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--box") from exc
    written = record_review(
        survey, sha256, verdict, reviewer=reviewer, defect_type=defect_type, note=note, box=tile
    )
    out = {"event": "review", **written.as_dict()}
    if rescore:
        from heritage.cli.group import fallback_threshold
        from heritage.survey.pipeline import regroup_survey

        threshold, source = fallback_threshold(None)
        totals = regroup_survey(survey, threshold=threshold, threshold_source=source)
        out["rescored"] = {k: totals[k] for k in ("buildings", "route_m", "reviews", "problems")}
        for problem in totals["problems"]:
            click.echo(f"warning: {problem}", err=True)
    if as_json:
        click.echo(json.dumps(out, default=str))
    else:
        was = f" (was {written.previous_verdict})" if written.previous_verdict else ""
        click.echo(f"{written.sha256[:12]}: {verdict}{was} by {written.reviewer} -> {survey}")


@click.command("reviews")
@click.argument("survey", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--history", is_flag=True, help="Every review (who changed what, when).")
@click.option(
    "--export",
    "export_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Write the reviewed photos/tiles as an image folder (one sub-folder per class) with "
    "manifest.csv (sha256, reviewer, time, type).",
)
@click.option(
    "--photo-root",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    default=None,
    help="Folder the photo paths are relative to (default: the survey's folder).",
)
@json_progress_option(help="Print JSON instead of text.")
def reviews(
    survey: Path,
    history: bool,
    export_dir: Path | None,
    photo_root: Path | None,
    json_progress: bool,
) -> None:
    """List the current reviews of SURVEY (or their history), or export them."""
    from heritage.io.reviews import current_reviews, read_history, review_counts, summary_text

    if export_dir is not None:
        from heritage.training.review_data import export_reviews

        done = export_reviews(survey, export_dir, photo_root=photo_root)
        if json_progress:
            click.echo(json.dumps({"event": "summary", **done}))
        else:
            classes = ", ".join(f"{k}: {v}" for k, v in sorted(done["classes"].items()))
            click.echo(f"{done['images']} image(s) ({classes}) -> {export_dir}")
            if done["missing"]:
                click.echo(f"warning: {done['missing']} photo(s) not found", err=True)
        return
    rows = read_history(survey) if history else list(current_reviews(survey).values())
    if json_progress:
        click.echo(json.dumps({"event": "summary", "reviews": [r.as_dict() for r in rows]}))
        return
    for r in rows:
        what = r.verdict + (f" ({r.defect_type})" if r.defect_type else "")
        was = f", was {r.previous_verdict}" if history and r.previous_verdict else ""
        click.echo(f"{r.reviewed_at}  {r.sha256[:12]}  {what}{was}  by {r.reviewer}")
    if not history:
        click.echo(summary_text(review_counts(r.verdict for r in rows)) or "no reviews")
