"""Is a compare row's one-answer MobileNetV3 a BatchNorm running-statistics artefact?

Loads the ``mobilenet_v3_small`` row of ``python -m research.compare`` output folders, scores its
test split as trained, then again after re-estimating every BatchNorm's running
statistics on the training images (cumulative average, no weight changes). torchvision's
MobileNetV3 uses BatchNorm momentum 0.01, so after a few hundred steps from scratch the
statistics used in evaluation lag behind the weights.

    .venv/bin/python research/probes/check_bn_stats.py ../runs/compare-medium-250 [more runs...]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from heritage.model.preprocess import eval_transform
from heritage.model.zoo import build_model
from heritage.training import data as D
from heritage.training.fit import predict_proba
from heritage.training.train import DEFAULT_POSITIVES


def _score(model: torch.nn.Module, loader, pos: list[int]) -> tuple[float, float, float]:
    p, y = predict_proba(model, loader, "cpu")
    truth, said = np.isin(y, pos), p[:, pos].sum(axis=1) >= 0.5
    return float((said == truth).mean()), float(said.mean()), float((p.argmax(1) == y).mean())


def check(run: Path, size: int) -> None:
    """Print decision accuracy, share said positive and class accuracy, before and after."""
    items = D.load_split(run)
    classes = D.class_names(items)
    pos = [i for i, c in enumerate(classes) if c in DEFAULT_POSITIVES]
    transform = eval_transform(size)
    loaders = {
        s: D.make_loader(
            D.stage1_dataset([it for it in items if it.split == s], classes, transform),
            64,
            shuffle=False,
        )
        for s in ("train", "test")
    }
    model = build_model("mobilenet_v3_small", len(classes))
    model.load_state_dict(load_file(run / "mobilenet_v3_small" / "model.safetensors"))
    print(f"{run.name}: as trained: accuracy %.3f, said positive %.3f, class accuracy %.3f"
          % _score(model, loaders["test"], pos))  # fmt: skip
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # cumulative average
    model.train()
    with torch.no_grad():
        for x, _ in loaders["train"]:
            model(x)
    model.eval()
    print(f"{run.name}: BN statistics re-estimated: accuracy %.3f, said positive %.3f, "
          "class accuracy %.3f" % _score(model, loaders["test"], pos))  # fmt: skip


def main() -> None:
    """Check every output folder given."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--image-size", type=int, default=64)
    args = ap.parse_args()
    torch.set_num_threads(2)
    for run in args.runs:
        check(run, args.image_size)


if __name__ == "__main__":
    main()
