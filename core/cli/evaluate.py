"""``heritage evaluate DATA_DIR... --json OUT.json``: score a model on labelled folders."""

from __future__ import annotations

import json
from pathlib import Path

import click

from heritage.cli.options import device_option, json_progress_option, model_option, positive_option
from heritage.training.evaluate import DEFAULT_POSITIVE, EvalConfig


@click.command("evaluate")
@click.argument("data_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@model_option()
@click.option(
    "--masks",
    "masks_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Folder of binary defect masks, one per image with the same file name: "
    "scores where Grad-CAM points (pointing game, energy in mask).",
)
@positive_option("positive")
@click.option(
    "--cam-method",
    default=None,
    metavar="M",
    help="CAM method: gradcam, gradcam++, eigencam, layercam, xgradcam, hirescam "
    "(default: the model card's).",
)
@click.option(
    "--cam-target",
    type=click.Choice(["predicted", "positive"]),
    default=None,
    help="Explain the stage-1 predicted class (default) or all positive classes together.",
)
@click.option(
    "--pointing-tolerance",
    type=click.FloatRange(min=0),
    default=None,
    help="Pointing-game tolerance in pixels of the model input (default 15 px at 224, scaled).",
)
@click.option("--batch-size", default=16, show_default=True, type=click.IntRange(min=1))
@device_option()
@click.option(
    "--json",
    "json_out",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write the metrics here (JSON).",
)
@click.option(
    "--per-image",
    "per_image",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Also write one CSV row per image (probabilities, decision, CAM scores).",
)
@json_progress_option()
def evaluate(
    data_dirs: tuple[Path, ...],
    model_dir: Path | None,
    masks_dir: Path | None,
    positive: tuple[str, ...],
    cam_method: str | None,
    cam_target: str | None,
    pointing_tolerance: float | None,
    batch_size: int,
    device: str,
    json_out: Path,
    per_image: Path | None,
    json_progress: bool,
) -> None:
    """Evaluate a model on DATA_DIRS (ImageFolder layout: DATA_DIR/CLASS/IMAGE).

    Class folders crack and salt_damage (or those given with --positive) mean
    "conservation needed"; every other class means "not needed". A folder holding only
    one class is fine: the JSON then says which metrics are undefined.
    """
    from heritage.kernel.progress import JsonLinesProgress, TqdmProgress
    from heritage.training.evaluate import evaluate as run_evaluation
    from heritage.training.evaluate import summary_lines

    config = EvalConfig(
        positive=tuple(positive) or DEFAULT_POSITIVE,
        cam_method=cam_method,
        cam_target=cam_target,
        batch_size=batch_size,
        device=device,
        pointing_tolerance=pointing_tolerance,
    )
    progress = JsonLinesProgress() if json_progress else TqdmProgress()
    try:
        report = run_evaluation(
            list(data_dirs),
            model_dir=model_dir,
            masks_dir=masks_dir,
            config=config,
            progress=progress,
            per_image_csv=per_image,
            json_out=json_out,
        )
    except ValueError as exc:
        if "unknown CAM method" in str(exc):
            raise click.BadParameter(str(exc), param_hint="--cam-method") from exc
        raise
    finally:
        if isinstance(progress, TqdmProgress):
            progress.close()
    if json_progress:
        click.echo(json.dumps({"event": "summary", "json": str(json_out), "n": report["n"]}))
        return
    for line in summary_lines(report):
        click.echo(line)
    click.echo(f"metrics written to {json_out}")
