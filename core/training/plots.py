"""Training figures as PNG: loss/accuracy curves and confusion matrices.

Figures are drawn with matplotlib's object API on an Agg canvas, so nothing here
touches pyplot's global backend (safe inside QGIS' interpreter too).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from heritage.kernel.errors import OutputNotWritableError


def _save(fig: Any, path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110, bbox_inches="tight")
    except OSError as exc:
        raise OutputNotWritableError(f"cannot write figure {path}: {exc}") from exc
    return path


def plot_curves(history: Sequence[dict[str, float]], path: Path, title: str = "") -> Path:
    """Loss and accuracy per epoch (train and validation) from a fit history."""
    from matplotlib.figure import Figure

    epochs = [int(r["epoch"]) for r in history]
    fig = Figure(figsize=(9, 3.6))
    ax_loss, ax_acc = fig.subplots(1, 2)
    for key, style in (("train", "-o"), ("val", "--s")):
        ax_loss.plot(epochs, [r[f"{key}_loss"] for r in history], style, label=key, ms=3)
        ax_acc.plot(epochs, [r[f"{key}_acc"] for r in history], style, label=key, ms=3)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy", ylim=(0, 1.02))
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
        if epochs:
            ax.set_xticks(epochs if len(epochs) <= 20 else epochs[:: max(1, len(epochs) // 10)])
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_confusion(
    matrix: Sequence[Sequence[int]], labels: Sequence[str], path: Path, title: str = ""
) -> Path:
    """A confusion matrix (rows = true, columns = predicted) with counts in the cells."""
    import numpy as np
    from matplotlib.figure import Figure

    m = np.asarray(matrix, dtype=float)
    n = len(labels)
    fig = Figure(figsize=(1.6 + 1.1 * n, 1.2 + 1.0 * n))
    ax = fig.subplots()
    ax.imshow(m, cmap="Blues", vmin=0, vmax=max(1.0, m.max()))
    ax.set_xticks(range(n), labels, rotation=30, ha="right")
    ax.set_yticks(range(n), labels)
    ax.set(xlabel="predicted", ylabel="true")
    for i in range(n):
        for j in range(n):
            colour = "white" if m[i, j] > m.max() / 2 else "black"
            ax.text(j, i, f"{int(m[i, j])}", ha="center", va="center", color=colour)
    if title:
        ax.set_title(title)
    return _save(fig, path)
