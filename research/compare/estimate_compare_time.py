"""How long will the full comparison take on this machine? Times a few steps per model.

For every row of ``python -m research.compare`` (in its training order) this times training steps
(forward, backward, Adam) and evaluation batches on random images at the row's input
size, then projects one row's wall time at the full budget: ``epochs`` x (training
batches + validation batches) + the test batches. The two-stage row is its ResNet-18
stage 2 (same epochs) plus the Grad-CAM overlays of every image (one MobileNetV3
forward and backward pass per image); its stage 1 is the MobileNetV3 row, reused.

Image decoding and augmentation are not timed (the comparison caches decoded images),
early stopping is ignored, and the machine is shared: read the hours as an upper
estimate of the compute, to plan sessions with, not as a benchmark. Run it while
nothing else trains.

    .venv/bin/python research/compare/estimate_compare_time.py --split runs/compare-full/split.csv \
        --out research/evaluation/compare-time.md
"""

from __future__ import annotations

import argparse
import csv
import math
import shlex
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # research/ as a package
from heritage.model.zoo import build_model, efficientnet_available
from heritage.training.fit import PRECISION_NAMES, autocast
from research.compare.compare import (
    CNN_ARCHS,
    DISPLAY,
    EFFICIENTNET,
    TWO_STAGE,
    input_size_for,
    measure_throughput,
    run_order,
)

#: images per split of the full comparison (runs/compare-full/split.csv, 2026-11-24)
FULL_SPLIT = {"train": 5878, "val": 811, "test": 1692}


def split_counts(path: Path | None) -> dict[str, int]:
    """Images per split from a ``split.csv`` (column ``split``), or the full run's."""
    if path is None:
        return dict(FULL_SPLIT)
    with open(path, newline="", encoding="utf-8") as fh:
        counts = Counter(row["split"] for row in csv.DictReader(fh))
    return {s: counts.get(s, 0) for s in ("train", "val", "test")}


def time_steps(
    model: torch.nn.Module,
    size: int,
    batch_size: int,
    steps: int,
    classes: int = 4,
    precision: str = "fp32",
) -> tuple[float, float]:
    """Seconds per training step (in ``precision``, as ``heritage.training.fit`` trains) and per
    evaluation batch (float32, as the test split is scored); one warm-up of each first."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch_size, 3, size, size, generator=g)
    y = torch.randint(0, classes, (batch_size,), generator=g)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    loss_fn = torch.nn.CrossEntropyLoss()

    def train_step() -> None:
        opt.zero_grad(set_to_none=True)
        with autocast(torch.device("cpu"), precision):
            logits = model(x)
        loss_fn(logits.float(), y).backward()
        opt.step()

    model.train()
    train_step()
    t = time.perf_counter()
    for _ in range(steps):
        train_step()
    t_train = (time.perf_counter() - t) / steps
    speed = measure_throughput(model, size, batch_size=batch_size, warmup=1, batches=steps)
    return t_train, batch_size / speed["images_per_s"]


def project(
    t_train: float, t_eval: float, counts: dict[str, int], epochs: int, batch_size: int
) -> float:
    """Seconds of one row at the full budget (no early stopping)."""

    def batches(n: int) -> int:
        return math.ceil(n / batch_size)

    per_epoch = batches(counts["train"]) * t_train + batches(counts["val"]) * t_eval
    return epochs * per_epoch + batches(counts["test"]) * t_eval


def estimate(
    archs: list[str],
    counts: dict[str, int],
    *,
    epochs: int = 15,
    batch_size: int = 32,
    steps: int = 3,
    image_size: int | None = None,
    precision: str = "fp32",
) -> list[dict[str, Any]]:
    """One dict per row (training order): input px, s/step, s/eval batch, hours."""
    rows = []
    for arch in run_order(archs):
        if arch == TWO_STAGE:
            size = input_size_for("mobilenet_v3_small", image_size)
            t_train, t_eval = time_steps(
                build_model("resnet18", 1), size, batch_size, steps, 1, precision
            )
            cam, _ = time_steps(build_model("mobilenet_v3_small", 4), size, batch_size, steps)
            seconds = project(t_train, t_eval, counts, epochs, batch_size)
            seconds += math.ceil(sum(counts.values()) / batch_size) * cam
        else:
            size = input_size_for(arch, image_size)
            t_train, t_eval = time_steps(
                build_model(arch, 4), size, batch_size, steps, precision=precision
            )
            seconds = project(t_train, t_eval, counts, epochs, batch_size)
        rows.append(
            {
                "arch": arch,
                "input_px": size,
                "train_step_s": round(t_train, 3),
                "eval_batch_s": round(t_eval, 3),
                "hours": round(seconds / 3600, 2),
            }
        )
        print(f"{arch:>20}: {rows[-1]['hours']:.2f} h", flush=True)
    return rows


def table(rows: list[dict[str, Any]], counts: dict[str, int], cfg: argparse.Namespace) -> str:
    """The estimate as Markdown, with what it assumes."""
    command = shlex.join(
        [".venv/bin/python", "research/compare/estimate_compare_time.py", *cfg.argv]
    )
    lines = [
        "# Projected time of the full comparison on this machine"
        + ("" if cfg.precision == "fp32" else f", training in {PRECISION_NAMES[cfg.precision]}"),
        "",
        f"`{command}`",
        "",
        "| Model (training order) | Input (px) | s per training step | s per eval batch "
        "| Projected hours |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {DISPLAY.get(r['arch'], r['arch'])} | {r['input_px']} | {r['train_step_s']} "
            f"| {r['eval_batch_s']} | {r['hours']} |"
        )
    total = sum(r["hours"] for r in rows)
    lines += [
        f"| **All rows** | | | | **{total:.1f}** |",
        "",
        f"{cfg.epochs} epochs of {counts['train']} training and {counts['val']} validation "
        f"images plus {counts['test']} test images, batch {cfg.batch_size}, "
        f"{torch.get_num_threads()} torch threads, {cfg.steps} timed steps per model after "
        "one warm-up; no early stopping; decoding and augmentation not timed. Training "
        f"steps in {PRECISION_NAMES[cfg.precision]}, evaluation batches in float32 (the "
        "two-stage row's Grad-CAM passes too).",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Command-line entry point; returns the rows."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--split", type=Path, default=None, help="split.csv of the run to plan")
    ap.add_argument("--archs", default=",".join((*CNN_ARCHS, TWO_STAGE)))
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--image-size", type=int, default=None, help="one size for all (tests)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument(
        "--precision", choices=tuple(PRECISION_NAMES), default="fp32", help="training arithmetic"
    )
    ap.add_argument("--out", type=Path, default=None, help="write the Markdown table here")
    cfg = ap.parse_args(argv)
    cfg.argv = list(sys.argv[1:] if argv is None else argv)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    archs = [a for a in cfg.archs.split(",") if a]
    if EFFICIENTNET not in archs and efficientnet_available()[0]:
        archs.append(EFFICIENTNET)  # the comparison adds it too
    counts = split_counts(cfg.split)
    torch.manual_seed(0)
    rows = estimate(
        archs,
        counts,
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        steps=cfg.steps,
        image_size=cfg.image_size,
        precision=cfg.precision,
    )
    md = table(rows, counts, cfg)
    if cfg.out:
        cfg.out.parent.mkdir(parents=True, exist_ok=True)
        cfg.out.write_text(md, encoding="utf-8")
    print(md)
    return rows


if __name__ == "__main__":
    main()
