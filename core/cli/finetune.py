"""``heritage finetune --from-survey SURVEY.gpkg -o MODEL_DIR``: learn from the reviews.

Thin: the work is :func:`heritage.training.finetune.run_finetune` (torch imported when it runs).
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from heritage.cli.options import (
    batch_size_option,
    device_option,
    epochs_option,
    json_progress_option,
    model_option,
    seed_option,
)

if TYPE_CHECKING:
    from heritage.training.finetune import FinetuneConfig


@click.command("finetune")
@click.option(
    "--from-survey",
    "surveys",
    multiple=True,
    required=True,
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="A reviewed survey GeoPackage (repeat for several).",
)
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="Folder of the fine-tuned model (a new one; see --replace-default).",
)
@model_option(help="The model to fine-tune (default: the one 'heritage info' names).")
@click.option(
    "--data",
    "data_dirs",
    multiple=True,
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    help="Standard training data (class folders), split as the model's training split it: "
    "replayed while fine-tuning, and its test split scored before and after.",
)
@click.option(
    "--extra-positives",
    multiple=True,
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    help="Extra positive folders of the model's training (e.g. dais-masonry/images).",
)
@epochs_option(3)
@click.option("--lr", type=float, default=2e-5, show_default=True, help="Learning rate.")
@batch_size_option(16)
@click.option(
    "--hold-out",
    type=click.FloatRange(0.0, 1.0, max_open=True),
    default=0.2,
    show_default=True,
    help="Share of the reviewed photos held out for evaluation: a photo is held out when "
    "int(sha256[:8], 16) < share * 16**8.",
)
@click.option(
    "--repeat",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="Times each reviewed training image is seen per epoch.",
)
@click.option(
    "--replay",
    type=click.IntRange(min=0),
    default=100,
    show_default=True,
    help="Standard training (and validation) images per dataset and class mixed in.",
)
@click.option(
    "--max-test",
    type=click.IntRange(min=1),
    default=None,
    help="Score at most N standard test images per dataset and class (default: all).",
)
@click.option(
    "--photo-root",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    default=None,
    help="Folder the surveys' photo paths are relative to (default: each survey's folder).",
)
@click.option(
    "--train-batchnorm",
    is_flag=True,
    help="Also update the batch norms (statistics and parameters); default: frozen.",
)
@click.option("--version", "model_version", default=None, help="Version of the new model.")
@click.option(
    "--replace-default",
    is_flag=True,
    help="Allow writing over the default (or the base) model folder.",
)
@device_option(help="Where to train.")
@seed_option()
@json_progress_option()
def finetune(
    surveys: tuple[Path, ...],
    output: Path,
    model_dir: Path | None,
    data_dirs: tuple[Path, ...],
    extra_positives: tuple[Path, ...],
    epochs: int,
    lr: float,
    batch_size: int,
    hold_out: float,
    repeat: int,
    replay: int,
    max_test: int | None,
    photo_root: Path | None,
    train_batchnorm: bool,
    model_version: str | None,
    replace_default: bool,
    device: str,
    seed: int,
    json_progress: bool,
) -> None:
    """Fine-tune the model with the reviewed photos of surveys; report it before and after
    on held-out reviews and on the standard test split."""
    from heritage.training.finetune import FinetuneConfig

    cfg = FinetuneConfig(
        surveys=tuple(str(s) for s in surveys),
        model_dir=str(output),
        base_model=str(model_dir) if model_dir else None,
        data_dirs=tuple(str(d) for d in data_dirs),
        extra_positives=tuple(str(d) for d in extra_positives),
        hold_out=hold_out,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        review_repeat=repeat,
        replay_per_class=replay,
        max_test_per_class=max_test,
        freeze_batchnorm=not train_batchnorm,
        device=device,
        seed=seed,
        photo_root=str(photo_root) if photo_root else None,
        replace_default=replace_default,
        version=model_version,
        command_line=shlex.join(["heritage", *sys.argv[1:]]),
    )
    _run(cfg, json_progress)


def _run(cfg: FinetuneConfig, json_progress: bool) -> None:
    """Run the fine-tuning with a progress display; print (or emit) its report."""
    from heritage.kernel.errors import CancelledError
    from heritage.kernel.interrupts import EXIT_CANCELLED, stop_on_signals
    from heritage.kernel.progress import JsonLinesProgress, TqdmProgress
    from heritage.training.finetune import _short, run_finetune

    progress = JsonLinesProgress() if json_progress else TqdmProgress()
    try:
        with stop_on_signals(progress, "after the current batch (nothing is written)"):
            report = run_finetune(cfg, progress)
    except CancelledError:
        click.echo(f"Stopped: no model written to {cfg.model_dir}.", err=True)
        sys.exit(EXIT_CANCELLED)
    finally:
        if isinstance(progress, TqdmProgress):
            progress.close()
    if json_progress:
        click.echo(json.dumps({"event": "summary", **report}, default=str))
        return
    b, a = report["before"], report["after"]
    click.echo(
        f"{report['reviews']} review(s): {report['reviews_train']} trained on, "
        f"{report['reviews_held_out']} held out"
    )
    click.echo(f"held-out reviews: before {_short(b['held_out_reviews'])}")
    click.echo(f"                  after  {_short(a['held_out_reviews'])}")
    click.echo(f"standard test:    before {_short(b['standard_test'])}")
    click.echo(f"                  after  {_short(a['standard_test'])}")
    click.echo(f"model {report['version']} written to {report['model_dir']}")
