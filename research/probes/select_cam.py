"""Choose the Grad-CAM layer and method of a model on the Dais crack masks, by a fixed rule.

For every (layer, method) pair, computes the heat maps of the Dais masonry patches of a
run's split (target: the positive classes' evidence, as the shipped model explains) and
scores them against the pixel crack masks: pointing game (15 px tolerance at 224 px) and
energy in mask, per split. The pair chosen is the one with the most pointing-game hits
on the selection splits (default: training and validation patches, 147 masks), ties
broken by the mean energy in mask there; the test patches are scored for the report
only. Writes a Markdown table (and the figures as JSON next to it).

    .venv/bin/python research/probes/select_cam.py --model models/heritage-default \
        --run-dir ../runs/heritage-050-run --out research/evaluation/cam-selection.md

The training patches were seen by the classifier, so their heat maps may be better than
on new images; they are used because the 18 validation masks alone cannot separate the
candidates (several score 18 of 18).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

from heritage.model.card import load_model
from heritage.model.explain import CamExplainer, positive_targets
from heritage.model.metrics import energy_in_mask, pointing_game
from heritage.model.predict import load_image
from heritage.model.preprocess import normalise, to_model_rgb
from heritage.training import data as D
from heritage.training.evaluate import load_mask

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
from eval_shipped import dais_mask_path  # noqa: E402

DAIS = "dais-masonry"
LAYERS = (
    "_blocks.8",
    "_blocks.9",
    "_blocks.10",
    "_blocks.11",
    "_blocks.12",
    "_blocks.13",
    "_blocks.14",
    "_bn1",
)
METHODS = ("gradcam", "layercam", "hirescam")
SPLITS = ("train", "val", "test")


def dais_patches(run_dir: Path, size: int) -> tuple[list[D.Item], list[np.ndarray]]:
    """The Dais items of the split and their masks (``<dataset>/masks/<name>``), resized."""
    items = [it for it in D.load_split(run_dir) if it.dataset == DAIS]
    masks = []
    for it in items:
        mask_path = dais_mask_path(it.path)
        if not mask_path.is_file():
            raise SystemExit(f"no mask for {it.path} (looked for {mask_path})")
        masks.append(load_mask(mask_path, size))
    return items, masks


def heat_maps(
    net: torch.nn.Module, x: torch.Tensor, layer: str, method: str, positive: list[int]
) -> np.ndarray:
    """Heat maps of ``method`` on ``layer`` explaining the positive classes, batches of 16."""
    with CamExplainer(net, layer, method=method, fallback=None) as explainer:
        return np.concatenate(
            [
                explainer.explain(
                    x[s : s + 16], positive_targets(len(x[s : s + 16]), positive)
                ).maps
                for s in range(0, len(x), 16)
            ]
        )


def score_pair(
    net: torch.nn.Module,
    x: torch.Tensor,
    masks: list[np.ndarray],
    layer: str,
    method: str,
    positive: list[int],
) -> tuple[np.ndarray, np.ndarray]:
    """Per patch: pointing-game hit and energy in mask of ``method`` on ``layer``."""
    maps = heat_maps(net, x, layer, method, positive)
    hits = np.array([pointing_game(m, k) for m, k in zip(maps, masks, strict=True)])
    energy = np.array([energy_in_mask(m, k) for m, k in zip(maps, masks, strict=True)])
    return hits, energy


def choose(results: list[dict], select_on: tuple[str, ...]) -> dict:
    """The result with the most hits on ``select_on``, ties: the higher mean energy there."""

    def key(r: dict) -> tuple[int, float]:
        hits = sum(r["hits"][s] for s in select_on)
        n = sum(r["n"][s] for s in select_on)
        energy = sum(r["energy"][s] * r["n"][s] for s in select_on) / max(n, 1)
        return hits, energy

    return max(results, key=key)


def render(results: list[dict], chosen: dict, select_on: tuple[str, ...], card) -> list[str]:
    """Markdown table: hits/n and energy per split, the chosen pair in bold."""
    lines = [
        "| layer | method | "
        + " | ".join(f"{s} pointing game | {s} energy" for s in SPLITS)
        + " |",
        "|---|---|" + "---:|---:|" * len(SPLITS),
    ]
    for r in results:
        cells = []
        for s in SPLITS:
            cells += [f"{r['hits'][s]}/{r['n'][s]}", f"{r['energy'][s]:.3f}"]
        row = [r["layer"], r["method"], *cells]
        if r is chosen:
            row = [f"**{c}**" for c in row]
        lines.append("| " + " | ".join(row) + " |")
    shipped = f"`{card.cam_layer}` {card.cam_method}"
    lines += [
        "",
        f"Chosen by the most hits on {' + '.join(select_on)} (ties: energy): "
        f"`{chosen['layer']}` {chosen['method']}. The model card's setting: {shipped}.",
    ]
    return lines


def main() -> int:
    """Score every (layer, method) pair, choose one, write the table and JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=ROOT / "models" / "heritage-default")
    ap.add_argument("--run-dir", type=Path, default=ROOT.parent / "runs" / "heritage-ft2-run")
    ap.add_argument("--layers", default=",".join(LAYERS))
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--select-on", default="train,val", help="splits the rule reads")
    ap.add_argument("--out", type=Path, default=None, help="Markdown file (JSON beside it)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    select_on = tuple(args.select_on.split(","))
    loaded = load_model(args.model)
    card, net = loaded.card, loaded.stage1.float().eval()
    positive = card.positive_indices
    items, masks = dais_patches(args.run_dir, card.input_size)
    rgbs = [to_model_rgb(load_image(it.path), card.input_size) for it in items]
    x = normalise(rgbs, card.mean, card.std)
    split = np.array([it.split for it in items])
    results = []
    t0 = time.time()
    for layer in args.layers.split(","):
        for method in args.methods.split(","):
            hits, energy = score_pair(net, x, masks, layer, method, positive)
            r = {
                "layer": layer,
                "method": method,
                "hits": {s: int(hits[split == s].sum()) for s in SPLITS},
                "n": {s: int((split == s).sum()) for s in SPLITS},
                "energy": {
                    s: float(energy[split == s].mean()) if (split == s).any() else 0.0
                    for s in SPLITS
                },
            }
            results.append(r)
            print(f"{time.time() - t0:5.0f} s  {layer} {method}: {r['hits']}", file=sys.stderr)
    chosen = choose(results, select_on)
    lines = render(results, chosen, select_on, card)
    print("\n".join(lines))
    if args.out:
        cmd = shlex.join(["python", *sys.argv])
        args.out.write_text(
            f"<!-- generated by: {cmd} -->\n" + "\n".join(lines) + "\n", encoding="utf-8"
        )
        args.out.with_suffix(".json").write_text(
            json.dumps({"command": cmd, "chosen": chosen, "results": results}, indent=1),
            encoding="utf-8",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
