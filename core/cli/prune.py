"""``heritage prune``: structured pruning of the stage-1 network, then fine-tuning."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

import click

from heritage.cli.options import (
    bench_options,
    budget_options,
    cache_images_option,
    json_progress_option,
    out_dir_option,
    resume_option,
    run_options,
)
from heritage.training.data import DATA_ROOT_ENV


@click.command(name="prune")
@click.argument("model_dir", type=click.Path(exists=True, file_okay=False))
@out_dir_option("out_dir", "Pruned model folder to write.")
@click.option(
    "--data",
    "data_dirs",
    multiple=True,
    type=click.Path(exists=True, file_okay=False),
    help="Training data folders (repeat), to recreate the split with the card's seed and "
    "fractions when the training run folder is not at hand (checked against the split "
    "fingerprint in the card).",
)
@click.option(
    "--data-root",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    envvar=DATA_ROOT_ENV,
    show_envvar=True,
    help="Folder holding the data sets the model card names (training.datasets), each as "
    "ROOT/<name>; each is checked against its recorded fingerprint. Used when neither "
    "--run-dir nor --data is given.",
)
@click.option(
    "--run-dir",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="Training run folder holding split.csv (the model card names no folders: give "
    "this, --data or --data-root).",
)
@click.option(
    "--work-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Fine-tuning run folder (checkpoints, metrics, report) [default: OUT-run].",
)
@click.option(
    "--ratio",
    type=click.FloatRange(0.01, 0.95),
    default=0.25,
    show_default=True,
    help="Share of channels removed per layer group (raised until --min-reduction holds).",
)
@click.option(
    "--min-reduction",
    type=click.FloatRange(0.0, 0.95),
    default=0.2,
    show_default=True,
    help="Required shrink of parameters and of the weights file.",
)
@click.option("--max-ratio", type=click.FloatRange(0.01, 0.95), default=0.9, show_default=True)
@click.option(
    "--importance",
    type=click.Choice(["l2", "l1", "fpgm", "lamp"]),
    default="l2",
    show_default=True,
    help="torch-pruning channel importance.",
)
@click.option("--round-to", type=click.IntRange(1), default=8, show_default=True)
@budget_options(epochs=5)
@run_options(workers=0)
@cache_images_option()
@resume_option("Continue an interrupted fine-tuning.")
@bench_options()
@click.option(
    "--report",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also write the report here as Markdown (and a .json beside it).",
)
@json_progress_option()
def prune(model_dir, out_dir, data_dirs, data_root, run_dir, work_dir, ratio, min_reduction,
          max_ratio, importance, round_to, epochs, lr, batch_size, patience, device, workers,
          threads, cache_images, resume, bench_batch_size, bench_batches, report,
          json_progress) -> None:  # fmt: skip
    """Prune the stage-1 network of MODEL_DIR (torch-pruning) and fine-tune it.

    Accuracy before and after is measured on the model's own test split; the pruned
    model folder loads without pickle (stage 1 rebuilt from its weight shapes).
    """
    import json

    import torch

    from heritage.kernel.interrupts import resumable_run
    from heritage.kernel.progress import JsonLinesProgress, TqdmProgress
    from heritage.training.prune import PruneConfig, prune_and_finetune, report_markdown

    torch.set_num_threads(threads or os.cpu_count() or 1)
    cfg = PruneConfig(
        model_dir=model_dir,
        out_dir=out_dir,
        data_dirs=tuple(data_dirs),
        data_root=data_root,
        run_dir=run_dir,
        work_dir=work_dir,
        ratio=ratio,
        min_reduction=min_reduction,
        max_ratio=max_ratio,
        round_to=round_to,
        importance=importance,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        patience=patience,
        device=device,
        workers=workers,
        resume=resume,
        cache_images=cache_images,
        bench_batch_size=bench_batch_size,
        bench_batches=bench_batches,
        command_line=shlex.join(["heritage", *sys.argv[1:]]) if sys.argv[1:2] == ["prune"]
        else shlex.join(["heritage", "prune", model_dir, "-o", out_dir]),
    )  # fmt: skip
    progress = JsonLinesProgress() if json_progress else TqdmProgress()
    try:
        with resumable_run(progress, f"the fine-tuning checkpoint is in {cfg.resolved_work_dir}"):
            rep = prune_and_finetune(cfg, progress)
    finally:
        if isinstance(progress, TqdmProgress):
            progress.close()
    if report:
        md = Path(report)
        md.parent.mkdir(parents=True, exist_ok=True)
        md.write_text(report_markdown(rep), encoding="utf-8")
        md.with_suffix(".json").write_text(json.dumps(rep, indent=2, default=str) + "\n")
    tb, ta = rep["test"]["before"], rep["test"]["after"]
    click.echo(
        f"Pruned stage 1 (ratio {rep['pruning']['ratio']}): parameters "
        f"{rep['params']['before'] / 1e6:.2f} M -> {rep['params']['after'] / 1e6:.2f} M "
        f"(-{100 * rep['params']['reduction']:.1f} %), file "
        f"-{100 * rep['file_bytes']['reduction']:.1f} %; decision accuracy "
        f"{tb['decision']['accuracy']:.3f} -> {ta['decision']['accuracy']:.3f} on "
        f"{rep['test_images']} test images. Model: {out_dir}",
        err=True,
    )
