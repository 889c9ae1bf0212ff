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
