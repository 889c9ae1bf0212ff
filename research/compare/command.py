"""``python -m research.compare``: backbones on one split with one budget (the paper's Table 1).

Run from the repository root; it was ``heritage compare`` before the comparison left the
product (it checks the paper, no user of the tool needs it).
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

import click

from heritage.cli.options import (
    bench_options,
    budget_options,
    data_dirs_argument,
    data_options,
    image_size_option,
    json_progress_option,
    out_dir_option,
    precision_option,
    resume_option,
    run_options,
    scheduler_option,
    seed_option,
)


def _archs(value: str) -> tuple[str, ...]:
    from research.compare.compare import CNN_ARCHS, EFFICIENTNET, TWO_STAGE

    names = tuple(a.strip() for a in value.split(",") if a.strip())
    known = (*CNN_ARCHS, TWO_STAGE, EFFICIENTNET)
    bad = [a for a in names if a not in known]
    if bad or not names:
        raise click.BadParameter(f"unknown {bad}; choose from {','.join(known)}")
    return names


@click.command(name="compare")
@data_dirs_argument()
@out_dir_option(
    "out_dir", "Output folder: split.csv, one sub-folder per model, comparison.md/.csv."
)
@click.option(
    "--archs",
    default="alexnet,googlenet,vgg16,inception_v3,mobilenet_v3_small,two_stage",
    show_default=True,
    help="Comma-separated models to compare.",
)
@budget_options(epochs=15)
@image_size_option(
    default=None,
    help="One input size for every model [default: 299 for inception_v3, 224 for the "
    "others]; inception_v3 gets at least 75.",
)
@scheduler_option("cosine", "every row (cosine: the same rates for all)")
@precision_option()
@click.option(
    "--pretrained",
    type=click.Choice(["none", "imagenet"]),
    default="none",
    show_default=True,
    help="Start every network from scratch or from torchvision's ImageNet weights.",
)
@data_options()
@seed_option()
@click.option("--threshold", type=click.FloatRange(0, 1), default=0.5, show_default=True)
@run_options(workers=0)
@click.option("--no-cache", is_flag=True, help="Decode images every epoch (less memory).")
@resume_option("Skip finished models, continue unfinished ones.")
@click.option("--no-efficientnet", is_flag=True, help="Leave out the optional efficientnet row.")
@bench_options()
@click.option(
    "--keep-checkpoints", is_flag=True, help="Keep the fit checkpoints of finished models."
)
@click.option(
    "--table-only",
    is_flag=True,
    help="Write the table of the models finished so far in OUT_DIR; train nothing.",
)
@click.option(
    "--rows-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Also copy each finished row's figures (result.json, per-image decisions) here, "
    "and with --resume take back the rows OUT_DIR lacks (same split and budget only): a "
    "small folder to commit, so a run spread over machines does not train a row twice.",
)
@json_progress_option()
def compare(data_dirs, out_dir, archs, epochs, image_size, batch_size, lr, patience, scheduler,
            precision, pretrained, max_per_class, extra_positives, positives, seed, threshold,
            device, workers, threads,
            no_cache, resume, no_efficientnet, bench_batch_size, bench_batches,
            keep_checkpoints, table_only, rows_dir, json_progress) -> None:  # fmt: skip
    """Train and compare backbones on DATA_DIRS (same split, same budget) into a table."""
    import torch

    from heritage.kernel.interrupts import resumable_run
    from heritage.kernel.progress import JsonLinesProgress, TqdmProgress
    from heritage.training.train import DEFAULT_POSITIVES
    from research.compare.compare import CompareConfig, run_compare

    torch.set_num_threads(threads or os.cpu_count() or 1)
    cfg = CompareConfig(
        data_dirs=tuple(data_dirs),
        out_dir=out_dir,
        archs=_archs(archs),
        epochs=epochs,
        image_size=image_size,
        batch_size=batch_size,
        lr=lr,
        patience=patience,
        scheduler=scheduler,
        precision=precision,
        pretrained=None if pretrained == "none" else pretrained,
        max_per_class=max_per_class,
        extra_positives=tuple(extra_positives),
        positive=tuple(positives) or DEFAULT_POSITIVES,
        seed=seed,
        threshold=threshold,
        device=device,
        workers=workers,
        cache_images=not no_cache,
        resume=resume,
        efficientnet=not no_efficientnet,
        bench_batch_size=bench_batch_size,
        bench_batches=bench_batches,
        keep_checkpoints=keep_checkpoints,
        table_only=table_only,
        rows_dir=rows_dir,
        # the command that trains (a --table-only call reports that run's command)
        command_line=shlex.join(
            ["python", "-m", "research.compare"] + [a for a in sys.argv[1:] if a != "--table-only"]
        )
        if Path(sys.argv[0]).parts[-2:] == ("compare", "__main__.py")
        else "",
    )
    progress = JsonLinesProgress() if json_progress else TqdmProgress()
    try:
        with resumable_run(progress, f"finished rows and checkpoints are in {out_dir}"):
            rows = run_compare(cfg, progress)
    finally:
        if isinstance(progress, TqdmProgress):
            progress.close()
    for r in rows:
        acc, speed = r["test"]["accuracy"], (r.get("throughput") or {}).get("images_per_s")
        click.echo(
            f"{r['arch']:>20}: accuracy {'n/a' if acc is None else f'{100 * acc:.1f} %'}, "
            f"{r['params'] / 1e6:.2f} M params, "
            f"{'n/a' if speed is None else f'{speed:.1f}'} img/s"
            f"{' (figures only)' if r.get('figures_only') else ''}",
            err=True,
        )
    click.echo(f"Table: {out_dir}/comparison.md and comparison.csv", err=True)


def main() -> None:
    """Run :func:`compare` with the backend's error handling (one line, exit 1 or 130)."""
    from heritage.cli import main as heritage_main

    heritage_main(compare)
