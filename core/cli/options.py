"""Click options that several ``heritage`` sub-commands share, defined once.

Each function returns a decorator, so a command reads ``@device_option()`` and every
command spells the option, its choices and its default the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

DEVICES = ("auto", "cpu", "cuda")
DEFAULT_MODEL_HELP = (
    "Model folder (model.json + weights). Default: the shipped model "
    "(models/heritage-default, or $HERITAGE_MODEL_DIR)."
)


def device_option(
    help: str = "Where the networks run: auto = CUDA when available, else CPU.",
) -> Callable[[Any], Any]:
    """``--device auto|cpu|cuda`` (default auto)."""
    return click.option(
        "--device", type=click.Choice(DEVICES), default="auto", show_default=True, help=help
    )


def cam_method_option(
    help: str = "Grad-CAM method (default: the model card's).", default: str | None = None
) -> Callable[[Any], Any]:
    """``--cam-method M``, one of the methods heritage implements, checked before any model
    is loaded (case-insensitive, passed on in lower case)."""
    from heritage.model.cardcheck import CAM_METHOD_NAMES

    return click.option(
        "--cam-method",
        type=click.Choice(CAM_METHOD_NAMES, case_sensitive=False),
        default=default,
        show_default=default is not None,
        help=help,
    )


def json_progress_option(
    help: str = "Progress (and the summary) as JSON lines on stdout, for the QGIS plugin.",
) -> Callable[[Any], Any]:
    """``--json-progress``: machine-readable progress instead of a progress bar."""
    return click.option("--json-progress", is_flag=True, help=help)


def model_option(help: str = DEFAULT_MODEL_HELP) -> Callable[[Any], Any]:
    """``--model DIR`` into the parameter ``model_dir`` (None: the shipped default)."""
    return click.option(
        "--model",
        "model_dir",
        type=click.Path(path_type=Path, file_okay=False),
        default=None,
        help=help,
    )


def positive_option(name: str = "positives") -> Callable[[Any], Any]:
    """``--positive NAME`` (repeat): class folders meaning "conservation needed"."""
    from heritage.training.train import DEFAULT_POSITIVES

    return click.option(
        "--positive",
        name,
        multiple=True,
        metavar="NAME",
        help="Class folder meaning 'conservation needed' (repeat) [default: "
        f"{', '.join(DEFAULT_POSITIVES)}]; any other class means 'not needed'.",
    )


def extra_positives_option() -> Callable[[Any], Any]:
    """``--extra-positives DIR`` (repeat): folders whose images are all positives."""
    return click.option(
        "--extra-positives",
        multiple=True,
        type=click.Path(exists=True, file_okay=False),
        help="Folder whose images (any depth) are all positives ('crack'), e.g. "
        "dais-masonry/images (repeat).",
    )


def threads_option() -> Callable[[Any], Any]:
    """``--threads N``: torch's CPU threads (default: every CPU)."""
    return click.option(
        "--threads",
        type=click.IntRange(1),
        default=None,
        help="torch CPU threads [default: number of CPUs].",
    )


def scheduler_option(default: str, of_what: str) -> Callable[[Any], Any]:
    """``--scheduler plateau|cosine|none``; ``of_what`` names what it schedules."""
    return click.option(
        "--scheduler",
        type=click.Choice(["plateau", "cosine", "none"]),
        default=default,
        show_default=True,
        help=f"Learning-rate schedule of {of_what}: plateau (x0.1 after two epochs without "
        "a validation-loss gain) or cosine over --epochs.",
    )


def precision_option() -> Callable[[Any], Any]:
    """``--precision fp32|bf16``: arithmetic of the training forward passes."""
    return click.option(
        "--precision",
        type=click.Choice(["fp32", "bf16"]),
        default="fp32",
        show_default=True,
        help="Training arithmetic: fp32, or bf16 mixed precision (autocast; weights stay "
        "float32), 1.4-2x faster for all but the smallest networks on CPUs with "
        "AVX512-BF16/AMX and on recent GPUs.",
    )


def bench_options() -> Callable[[Any], Any]:
    """``--bench-batch-size`` and ``--bench-batches`` of the CPU throughput measurement."""
    size = click.option(
        "--bench-batch-size",
        type=click.IntRange(1),
        default=32,
        show_default=True,
        help="Batch size of the CPU images/s measurement.",
    )
    batches = click.option(
        "--bench-batches",
        type=click.IntRange(1),
        default=5,
        show_default=True,
        help="Timed batches of the CPU images/s measurement.",
    )
    return lambda f: size(batches(f))


def _stacked(*decorators: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """One decorator applying ``decorators`` so that their options are listed in the
    order given (the first one first in ``--help``)."""

    def apply(f: Any) -> Any:
        for decorate in reversed(decorators):
            f = decorate(f)
        return f

    return apply


def out_dir_option(dest: str, help: str) -> Callable[[Any], Any]:
    """``-o/--out DIR`` (required): the folder a command writes, into parameter ``dest``."""
    return click.option(
        "-o", "--out", dest, required=True, type=click.Path(file_okay=False), help=help
    )


# ------------------------------------------------------------------ training data


def data_dirs_argument() -> Callable[[Any], Any]:
    """``DATA_DIRS...`` (one or more): training data folders in ImageFolder layout."""
    return click.argument(
        "data_dirs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False)
    )


def max_per_class_option() -> Callable[[Any], Any]:
    """``--max-per-class N``: at most N images per data set and class (quick runs)."""
    return click.option(
        "--max-per-class",
        type=click.IntRange(1),
        default=None,
        help="At most N images per dataset and class (quick runs).",
    )


def seed_option() -> Callable[[Any], Any]:
    """``--seed N`` (default 0): the split, the initial weights, the loaders' order."""
    return click.option("--seed", type=int, default=0, show_default=True)


def data_options() -> Callable[[Any], Any]:
    """What a training makes of its data folders: ``--positive``, ``--extra-positives``
    and ``--max-per-class`` (the folders themselves: :func:`data_dirs_argument`)."""
    return _stacked(positive_option(), extra_positives_option(), max_per_class_option())


# ------------------------------------------------------------------ training budget


def epochs_option(default: int) -> Callable[[Any], Any]:
    """``--epochs N`` (at least 1)."""
    return click.option("--epochs", type=click.IntRange(1), default=default, show_default=True)


def batch_size_option(default: int = 32) -> Callable[[Any], Any]:
    """``--batch-size N`` (at least 1) of training."""
    return click.option("--batch-size", type=click.IntRange(1), default=default, show_default=True)


def lr_option(default: float = 1e-4) -> Callable[[Any], Any]:
    """``--lr X``: the learning rate."""
    return click.option("--lr", type=float, default=default, show_default=True)


def patience_option() -> Callable[[Any], Any]:
    """``--patience N`` (default 3; 0 = off): early stopping on the validation loss."""
    return click.option(
        "--patience",
        type=click.IntRange(0),
        default=3,
        show_default=True,
        help="Early stopping: epochs without validation-loss gain (0 = off).",
    )


def budget_options(epochs: int) -> Callable[[Any], Any]:
    """A training's budget: ``--epochs`` (default ``epochs``), ``--batch-size`` (32),
    ``--lr`` (1e-4) and ``--patience`` (3)."""
    return _stacked(epochs_option(epochs), batch_size_option(), lr_option(), patience_option())


def image_size_option(default: int | None = 224, help: str | None = None) -> Callable[[Any], Any]:
    """``--image-size PX`` (at least 32): the networks' input side."""
    return click.option(
        "--image-size",
        type=click.IntRange(32),
        default=default,
        show_default=True if default is not None else None,
        help=help,
    )


# ------------------------------------------------------------------ where it runs


def workers_option(default: int | None = 0) -> Callable[[Any], Any]:
    """``--workers N``: DataLoader worker processes (``None``: min(2, CPUs), decided by
    the command)."""
    if default is None:
        return click.option(
            "--workers",
            type=click.IntRange(0),
            default=None,
            help="DataLoader worker processes [default: min(2, CPUs)].",
        )
    return click.option("--workers", type=click.IntRange(0), default=default, show_default=True)


def run_options(workers: int | None = 0) -> Callable[[Any], Any]:
    """Where a training runs: ``--device``, ``--workers`` (default ``workers``) and
    ``--threads``."""
    return _stacked(device_option(), workers_option(workers), threads_option())


def cache_images_option() -> Callable[[Any], Any]:
    """``--cache-images``: decode every image once into memory."""
    return click.option(
        "--cache-images",
        is_flag=True,
        help="Decode every image once into memory (resized) instead of every epoch.",
    )


def resume_option(help: str) -> Callable[[Any], Any]:
    """``--resume``: continue an interrupted run; ``help`` says from what."""
    return click.option("--resume", is_flag=True, help=help)
