"""Would test-time augmentation or averaging two models' weights help the shipped stage 1?

Computes the stage-1 logits of the validation and test images of a run's split under the
eight dihedral views (rotations by 90° with and without a horizontal flip) once, caches
them in an ``.npz``, and then, for each set of views whose softmax outputs are averaged:
chooses the threshold on validation exactly as training does (maximum balanced accuracy,
``heritage.training.train.choose_threshold``), and reports the validation balanced accuracy and the
test figures per dataset (Dais: recall) against the issue's targets.

The rule for adopting a variant reads validation only: it must raise the validation
balanced accuracy. The test columns are reported for every variant so that no one has to
trust the rule blindly, not to pick from.

Several ``--model`` folders are averaged weight by weight (a uniform "model soup"; they
must share architecture and labels, e.g. a model and its fine-tuned continuation), or
with ``--ensemble`` run side by side and their probabilities averaged (each model alone
is reported too).

    .venv/bin/python research/probes/check_tta.py --run-dir ../runs/heritage-ft2-run \
        --cache ../runs/tta/logits-030.npz --out research/evaluation/tta-030.md
    .venv/bin/python research/probes/check_tta.py --model models/heritage-default \
        --model ../runs/heritage-ft3 --views 0 --cache ../runs/tta/soup.npz \
        --out research/evaluation/tta-soup.md
    .venv/bin/python research/probes/check_tta.py --model models/heritage-default \
        --model ../runs/heritage-ft3 --views 0 --ensemble --cache ../runs/tta/ens.npz \
        --out research/evaluation/tta-ensemble.md
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

from heritage.model.card import load_model
from heritage.model.metrics import mcnemar
from heritage.model.predict import load_image
from heritage.model.preprocess import normalise, to_model_rgb
from heritage.training import data as D
from heritage.training.train import DEFAULT_POSITIVES, choose_threshold

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
from eval_shipped import TARGETS  # noqa: E402

#: view index -> name; index k rotates by 90°·(k mod 4), k >= 4 then flips left-right
VIEW_NAMES = (
    "identity",
    "rot90",
    "rot180",
    "rot270",
    "hflip",
    "rot90+hflip",
    "vflip",
    "rot270+hflip",
    "zoom top-left",
    "zoom top-right",
    "zoom bottom-left",
    "zoom bottom-right",
)
#: first index of the zoomed views: quadrant k - ZOOM of the input, upsampled 2x
ZOOM = 8
#: the view sets compared (indices into VIEW_NAMES)
VIEW_SETS: dict[str, tuple[int, ...]] = {
    "none": (0,),
    "hflip": (0, 4),
    "vflip": (0, 6),
    "flips (hflip, vflip, rot180)": (0, 4, 6, 2),
    "rotations (0/90/180/270)": (0, 1, 2, 3),
    "all 8 dihedral views": tuple(range(8)),
    "unchanged + 4 zoomed quadrants (mean)": (0, 8, 9, 10, 11),
}
#: view sets whose probabilities of "conservation needed" are combined by their maximum
#: (one view that sees damage is enough, as in the survey's tiled mode)
MAX_VIEW_SETS: dict[str, tuple[int, ...]] = {
    "unchanged + 4 zoomed quadrants (max)": (0, 8, 9, 10, 11),
}
DATASETS = tuple(TARGETS)


def view(x: torch.Tensor, k: int) -> torch.Tensor:
    """View ``k`` of an N×C×H×W batch (see :data:`VIEW_NAMES`): dihedral for k < 8, else
    one quadrant (top-left, top-right, bottom-left, bottom-right) upsampled to H×W."""
    if k >= ZOOM:
        h, w = x.shape[2] // 2, x.shape[3] // 2
        top, left = divmod(k - ZOOM, 2)
        quadrant = x[:, :, top * h : (top + 1) * h, left * w : (left + 1) * w]
        return torch.nn.functional.interpolate(
            quadrant, size=x.shape[2:], mode="bilinear", align_corners=False
        )
    y = torch.rot90(x, k % 4, dims=(2, 3))
    return torch.flip(y, dims=(3,)) if k >= 4 else y


def averaged_stage1(model_dirs: list[Path]) -> tuple[torch.nn.Module, object]:
    """Stage 1 of the first model, its weights replaced by the mean over all models."""
    loaded = [load_model(d) for d in model_dirs]
    card = loaded[0].card
    net = loaded[0].stage1.float().eval()
    for other in loaded[1:]:
        if other.card.stage1.arch != card.stage1.arch or list(other.card.stage1.labels) != list(
            card.stage1.labels
        ):
            raise SystemExit(f"{model_dirs}: weight averaging needs the same arch and labels")
    if len(loaded) > 1:
        states = [lm.stage1.float().state_dict() for lm in loaded]
        mean = {
            k: torch.stack([s[k] for s in states]).mean(0) if v.is_floating_point() else v
            for k, v in states[0].items()
        }
        net.load_state_dict(mean)
    return net, card


def compute_logits(
    model_dirs: list[Path], run_dir: Path, views: list[int], ensemble: bool = False
) -> dict:
    """Stage-1 logits (N×C×K) of the val+test images, with their metadata.

    Columns: the ``views`` of each network in turn (network-major: column
    ``m * len(views) + j``): with ``ensemble`` each model; otherwise the weight-averaged
    model, followed, when several models are averaged, by the first one alone.
    """
    if ensemble:
        nets = [averaged_stage1([d]) for d in model_dirs]
    elif len(model_dirs) > 1:  # the average, then the first model alone as the baseline
        nets = [averaged_stage1(model_dirs), averaged_stage1(model_dirs[:1])]
    else:
        nets = [averaged_stage1(model_dirs)]
    card = nets[0][1]
    if any(list(c.stage1.labels) != list(card.stage1.labels) for _, c in nets):
        raise SystemExit(f"{model_dirs}: an ensemble needs models with the same labels")
    if any(c.input_size != card.input_size for _, c in nets):
        raise SystemExit(f"{model_dirs}: an ensemble needs models with the same input size")
    items = [it for it in D.load_split(run_dir) if it.split in ("val", "test")]
    cols = [(net, k) for net, _ in nets for k in views]
    logits = np.zeros((len(items), len(cols), len(card.stage1.labels)), np.float32)
    t0 = time.time()
    for s in range(0, len(items), 32):
        chunk = items[s : s + 32]
        rgbs = [to_model_rgb(load_image(it.path), card.input_size) for it in chunk]
        x = normalise(rgbs, card.mean, card.std)
        with torch.inference_mode():
            for j, (net, k) in enumerate(cols):
                logits[s : s + len(chunk), j] = net(view(x, k)).float().numpy()
        print(
            f"\r{s + len(chunk)}/{len(items)} images, {time.time() - t0:.0f} s",
            end="",
            file=sys.stderr,
            flush=True,
        )
    print(file=sys.stderr)
    return {
        "logits": logits,
        "views": np.array(views),
        "split": np.array([it.split for it in items]),
        "dataset": np.array([it.dataset for it in items]),
        "cls": np.array([it.label for it in items]),
        "path": np.array([it.rel for it in items]),
        "labels": np.array(card.stage1.labels),
        "models": np.array([str(d) for d in model_dirs]),
        "ensemble": np.array(ensemble),
    }


def p_positive(d: dict, view_idx: list[int], combine: str = "mean") -> np.ndarray:
    """P(conservation needed) over the views: ``mean`` averages the softmax outputs, then
    sums the positive classes; ``max`` takes the largest per-view positive sum."""
    p = torch.softmax(torch.from_numpy(d["logits"][:, view_idx]), dim=-1).numpy()
    pos = [i for i, lab in enumerate(d["labels"]) if lab in DEFAULT_POSITIVES]
    if combine == "max":
        return p[:, :, pos].sum(axis=2).max(axis=1)
    if combine != "mean":
        raise ValueError(f"combine must be 'mean' or 'max', got {combine!r}")
    return p.mean(1)[:, pos].sum(axis=1)


def score(d: dict, p: np.ndarray) -> dict:
    """Threshold from validation; validation balanced accuracy; test right/n per dataset."""
    y = np.isin(d["cls"], DEFAULT_POSITIVES)
    val, test = d["split"] == "val", d["split"] == "test"
    dais = d["dataset"] == "dais-masonry"
    thr = choose_threshold(y[val].astype(int), p[val])
    right = (p >= thr) == y
    bal = 0.5 * (right[val & y].mean() + right[val & ~y].mean())
    out = {
        "threshold": thr,
        "val_balanced": float(bal),
        "all": (int(right[test].sum()), int(test.sum())),
        "test_right": right[test],
        "val_dais": (int(right[val & dais].sum()), int((val & dais).sum())),
    }
    for ds in DATASETS:
        m = test & (d["dataset"] == ds)
        out[ds] = (int(right[m].sum()), int(m.sum()))
    return out


def table(rows: list[tuple[str, str, dict]]) -> list[str]:
    """Markdown: one row per (model, view set); the last column pairs each row's test
    outcomes with the first row's (only first right / only this right, exact McNemar p)."""
    short = {ds: ds.split("-")[0] for ds in DATASETS}
    head = ["stage 1", "views", "threshold", "val balanced acc.", "val dais", "test all"]
    head += [f"{short[ds]} ({TARGETS[ds][0]} ≥ {TARGETS[ds][1]:.2f})" for ds in DATASETS]
    head.append("test vs first row")
    lines = ["| " + " | ".join(head) + " |", "|---|---|" + "---:|" * (len(head) - 2)]
    base = rows[0][2]["test_right"] if rows else None
    for i, (model, views, r) in enumerate(rows):
        k, n = r["val_dais"]
        cells = [model, views, f"{r['threshold']:.3f}", f"{r['val_balanced']:.4f}", f"{k}/{n}"]
        for key in ("all", *DATASETS):
            k, n = r[key]
            cells.append(f"{k / n:.3f} ({k}/{n})" if n else "–")
        pair = mcnemar(base, r["test_right"])
        cells.append("–" if i == 0 else f"{pair['b']} / {pair['c']}, p = {pair['p_value']:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def load_or_compute(
    cache: Path, models: list[Path], run_dir: Path, views: list[int], ensemble: bool
) -> dict:
    """The cached logits when ``cache`` holds these models and views, else computed and saved."""
    if cache.is_file():
        d = dict(np.load(cache))
        same = list(d["models"]) == [str(m) for m in models] and list(d["views"]) == views
        if not same or bool(d.get("ensemble", False)) != ensemble:
            raise SystemExit(f"{cache} holds other models or views; delete it or pick another")
        return d
    d = compute_logits(models, run_dir, views, ensemble)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **d)
    return d


def score_rows(d: dict, models: list[Path], views: list[int], ensemble: bool) -> list:
    """(model, view set, scores) for every view set computed: each model and the ensemble,
    or the first model alone and the weight average, or the one model."""
    if ensemble:
        groups = [(_label(m), [i]) for i, m in enumerate(models)]
        names = " + ".join(_label(m) for m in models)
        groups.append((f"ensemble of {names} (mean probability)", list(range(len(models)))))
    elif len(models) > 1:  # the first model alone first: the rows are paired with it
        averaged = f"weights averaged: {' + '.join(_label(m) for m in models)}"
        groups = [(_label(models[0]), [1]), (averaged, [0])]
    else:
        groups = [(_label(models[0]), [0])]
    rows = []
    for name, blocks in groups:
        sets = [(n, w, "mean") for n, w in VIEW_SETS.items()]
        sets += [(n, w, "max") for n, w in MAX_VIEW_SETS.items()]
        for set_name, wanted, combine in sets:
            if all(k in views for k in wanted):
                columns = [b * len(views) + views.index(k) for b in blocks for k in wanted]
                rows.append((name, set_name, score(d, p_positive(d, columns, combine))))
    return rows


def _label(model_dir: Path) -> str:
    return "shipped" if model_dir.name == "heritage-default" else f"`{model_dir.name}`"


def main() -> int:
    """Compute (or reuse) the logits, score every view set, write the Markdown table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--model",
        type=Path,
        action="append",
        help="model folder; repeat to average weights (default: the shipped model)",
    )
    ap.add_argument(
        "--ensemble",
        action="store_true",
        help="with several --model: average their probabilities instead of their weights",
    )
    ap.add_argument("--run-dir", type=Path, default=ROOT.parent / "runs" / "heritage-ft2-run")
    ap.add_argument("--views", default="0,1,2,3,4,5,6,7", help="view indices to compute")
    ap.add_argument("--cache", type=Path, required=True, help=".npz of logits (made if absent)")
    ap.add_argument("--out", type=Path, default=None, help="Markdown file for the table")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    models = args.model or [ROOT / "models" / "heritage-default"]
    views = [int(v) for v in args.views.split(",")]
    d = load_or_compute(args.cache, models, args.run_dir, views, args.ensemble)
    rows = score_rows(d, models, views, args.ensemble)
    lines = table(rows)
    print("\n".join(lines))
    if args.out:
        cmd = shlex.join(["python", *sys.argv])
        args.out.write_text(
            f"<!-- generated by: {cmd} -->\n" + "\n".join(lines) + "\n", encoding="utf-8"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
