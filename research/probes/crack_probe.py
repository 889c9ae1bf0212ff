"""Does a model flag a real crack shape drawn on a crack-free wall? A shortcut probe.

The Dais test patches that the shipped model misses with confidence are cracks on clean
modern brick, which its stage 1 calls SaltSpot's "healthy" (research/evaluation/dais-misses.md):
the wall's look may override the crack. This script measures that directly. Every
crack-free image of one split (``no_crack``, ``healthy``) is shown to the model twice:
as it is, and with the crack of one Dais mask of the same split painted on it
(:func:`heritage.training.crackpaint.paint_crack`: the wall darkened along the mask, in its own
colours; masks cycled through their 8 rotations/reflections). Per dataset it reports how
often each is flagged (the painted share is a recall on synthetic cracks, the plain one a
false-alarm rate), the mean probability, and the stage-1 class the painted walls get; and
a picture of examples. Descriptive: it chooses nothing.

    .venv/bin/python research/probes/crack_probe.py --run-dir RUN [--model models/heritage-default] \\
        [--split val] --out research/evaluation/crack-probe.md

RUN holds the ``split.csv`` the model was trained with. Use ``--split val`` (the masks
and walls of the validation split) for anything that informs a choice.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import torch

from heritage.model.card import load_model
from heritage.model.predict import load_image
from heritage.model.preprocess import normalise, to_model_rgb
from heritage.training import data as D
from heritage.training.crackpaint import mask_variant, paint_crack
from heritage.training.evaluate import load_mask
from heritage.training.fit import predict_proba

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
from eval_shipped import dais_mask_path  # noqa: E402

DAIS = "dais-masonry"
NEGATIVE = ("no_crack", "healthy")


def painted_pairs(walls: list[np.ndarray], masks: list[np.ndarray]) -> list[tuple[np.ndarray, int]]:
    """Each wall with a crack painted on it, and the index of the mask used.

    Wall ``i`` gets mask ``i mod len(masks)`` in variant ``i // len(masks)`` (rotations
    and reflections), so every mask is used about equally and deterministically.
    """
    if not masks:
        raise ValueError("no crack masks to paint with")
    out = []
    for i, wall in enumerate(walls):
        j = i % len(masks)
        out.append((paint_crack(wall, mask_variant(masks[j], i // len(masks))), j))
    return out


def stage1_probabilities(net: torch.nn.Module, rgbs: list[np.ndarray], card) -> np.ndarray:
    """Softmax of stage 1 for uint8 images in the model geometry, batches of 32."""
    loader = torch.utils.data.DataLoader(
        rgbs,
        batch_size=32,
        collate_fn=lambda batch: (normalise(batch, card.mean, card.std), [0] * len(batch)),
    )
    return predict_proba(net, loader)[0]


def summarise(
    datasets: list[str],
    p_plain: np.ndarray,
    p_painted: np.ndarray,
    cls_painted: list[str],
    threshold: float,
) -> dict[str, dict]:
    """Per dataset (and ``all``): n, flagged plain/painted, mean p, painted classes."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i, ds in enumerate(datasets):
        groups[ds].append(i)
        groups["all"].append(i)
    out = {}
    for ds in sorted(groups, key=lambda d: (d == "all", d)):
        idx = np.array(groups[ds])
        out[ds] = {
            "n": len(idx),
            "flagged_plain": int((p_plain[idx] >= threshold).sum()),
            "flagged_painted": int((p_painted[idx] >= threshold).sum()),
            "mean_p_plain": float(p_plain[idx].mean()),
            "mean_p_painted": float(p_painted[idx].mean()),
            "painted_classes": dict(Counter(cls_painted[i] for i in idx).most_common()),
        }
    return out


def render(summary: dict[str, dict], header: list[str]) -> list[str]:
    """Markdown lines: the header, then one table row per dataset."""
    lines = [
        *header,
        "",
        "| walls of | n | flagged as they are | flagged with a painted crack | mean p plain |"
        " mean p painted | stage-1 class of the painted walls |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for ds, r in summary.items():
        n = r["n"]
        classes = ", ".join(f"{k} {v}" for k, v in r["painted_classes"].items())
        lines.append(
            f"| {'**all**' if ds == 'all' else ds} | {n} | {r['flagged_plain']} "
            f"({r['flagged_plain'] / n:.1%}) | {r['flagged_painted']} "
            f"({r['flagged_painted'] / n:.1%}) | {r['mean_p_plain']:.3f} | "
            f"{r['mean_p_painted']:.3f} | {classes} |"
        )
    return lines


def save_examples(path: Path, examples: list[tuple[np.ndarray, np.ndarray, str]]) -> None:
    """A two-row picture: walls as they are (top) and with the painted crack (bottom)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(examples), figsize=(1.6 * len(examples), 3.6))
    for col, (plain, painted, title) in enumerate(examples):
        for row, img in enumerate((plain, painted)):
            ax = axes[row, col]
            ax.imshow(img)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[0, col].set_title(title, fontsize=6)
    fig.suptitle("Crack-free walls (top) and the same walls with a Dais crack painted on (bottom)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run-dir", type=Path, required=True, help="folder with split.csv")
    ap.add_argument("--model", type=Path, default=ROOT / "models" / "heritage-default")
    ap.add_argument("--split", choices=D.SPLITS, default="val")
    ap.add_argument("--out", type=Path, required=True, help="Markdown report (.md)")
    ap.add_argument("--image", type=Path, default=None, help="example picture (.png)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    loaded = load_model(args.model)
    card, net = loaded.card, loaded.stage1
    size, labels = card.input_size, card.stage1.labels
    positive = card.positive_indices
    threshold = card.threshold if card.threshold is not None else 0.5
    items = [it for it in D.load_split(args.run_dir) if it.split == args.split]
    masks = [load_mask(dais_mask_path(it.path), size) for it in items if it.dataset == DAIS]
    walls_items = [it for it in items if it.label in NEGATIVE]
    if not walls_items:
        raise SystemExit(f"no crack-free images in the {args.split} split of {args.run_dir}")
    walls = [to_model_rgb(load_image(it.path), size) for it in walls_items]
    painted = painted_pairs(walls, masks)

    probs_plain = stage1_probabilities(net, walls, card)
    probs_painted = stage1_probabilities(net, [p for p, _ in painted], card)
    p_plain = probs_plain[:, positive].sum(axis=1)
    p_painted = probs_painted[:, positive].sum(axis=1)
    cls_painted = [labels[k] for k in probs_painted.argmax(axis=1)]
    datasets = [it.dataset for it in walls_items]
    summary = summarise(datasets, p_plain, p_painted, cls_painted, threshold)

    command = shlex.join(["python", *sys.argv])
    header = [
        f"# Shortcut probe: real crack shapes painted on crack-free walls ({args.split} split)",
        "",
        f"Model `{card.model_id}` {card.version}, stage 1 ({card.stage1.arch}), threshold "
        f"{threshold:.3f}. {len(walls)} crack-free {args.split} images, each with one of "
        f"the {len(masks)} Dais {args.split} crack masks painted on "
        "(`heritage.training.crackpaint.paint_crack`). Generated by:",
        "",
        "```bash",
        command,
        "```",
    ]
    lines = render(summary, header)
    if args.image is not None:
        rng = np.random.default_rng(0)
        by_ds: dict[str, list[int]] = defaultdict(list)
        for i, ds in enumerate(datasets):
            by_ds[ds].append(i)
        picks = [int(i) for ds in sorted(by_ds) for i in rng.choice(by_ds[ds], 2, replace=False)]
        save_examples(
            args.image,
            [
                (
                    walls[i],
                    painted[i][0],
                    f"{datasets[i]}\np {p_plain[i]:.2f} -> {p_painted[i]:.2f} ({cls_painted[i]})",
                )
                for i in picks
            ],
        )
        # the picture's path relative to the report (both usually under research/)
        rel = Path(os.path.relpath(args.image.resolve(), args.out.resolve().parent))
        lines += ["", f"![examples]({rel.as_posix()})"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    args.out.with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
