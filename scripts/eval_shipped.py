"""Evaluate the shipped model on its own test split, with Dais masks for Grad-CAM.

Reads the run folder's ``split.csv`` (the split the model was trained with), links the
images of one split of every dataset into ``<work>/<dataset>/<class>/`` (and the Dais
masks of those images into ``<work>/dais-masks/``), runs ``heritage evaluate`` on each
dataset (Dais with ``--masks``), writes ``<out>/<dataset>.json`` and a table of the
figures against the issue's targets in ``<out>/README.md`` (text below the notes marker
is kept).

    .venv/bin/python scripts/eval_shipped.py [--run-dir ../runs/heritage-lite0-run]
    .venv/bin/python scripts/eval_shipped.py --split val --out /tmp/val --cam-method gradcam++ \
        --datasets dais-masonry
    .venv/bin/python scripts/eval_shipped.py --run-dir RUN --model MODEL --out /tmp/b --per-image

``--split val`` is for choices made before looking at the test split (e.g. the Grad-CAM
method by its pointing game on the validation masks).
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

from heritage.model.provenance import without_machine_paths

ROOT = Path(__file__).resolve().parents[1]
NOTES_MARKER = "<!-- notes: kept by scripts/eval_shipped.py -->"

#: dataset -> (metric, target) from issue 3's "Done when"
TARGETS: dict[str, tuple[str, float]] = {
    "brickwork-cracks": ("accuracy", 0.98),
    "ozgenel-concrete-crack": ("accuracy", 0.99),
    "sdnet2018-walls": ("accuracy", 0.85),
    "saltspot-salt-damage": ("accuracy", 0.90),
    "dais-masonry": ("recall", 0.90),
}
POINTING_TARGET = 0.8


def dais_mask_path(image: Path) -> Path:
    """The crack mask of a Dais image: ``<dataset>/masks/<name>`` beside ``images/<class>/``."""
    return image.resolve().parents[2] / "masks" / image.name


def link_split(run_dir: Path, split: str, work: Path) -> list[str]:
    """Symlink the ``split`` images (and Dais masks) under ``work``; the datasets seen."""
    with open(run_dir / "split.csv", encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    datasets: set[str] = set()
    for r in rows:
        if r["split"] != split:
            continue
        src = Path(r["data_dir"]) / r["path"]
        dst = work / r["dataset"] / r["class"] / src.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.symlink_to(src.resolve())
        datasets.add(r["dataset"])
        if r["dataset"] == "dais-masonry":
            mask = dais_mask_path(src)
            (work / "dais-masks").mkdir(exist_ok=True)
            (work / "dais-masks" / src.name).symlink_to(mask)
    return sorted(datasets)


def _fmt(v: float | None) -> str:
    return "–" if v is None else f"{v:.3f}"


def render_table(results: dict[str, dict]) -> list[str]:
    """Markdown rows: n, accuracy, recall, specificity, target, met? per dataset."""
    lines = [
        "| data set | n | accuracy | recall | specificity | ROC AUC | issue target | met? |",
        "|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for ds, r in sorted(results.items()):
        metric, target = TARGETS.get(ds, ("accuracy", None))
        value = r.get(metric)
        met = "–" if target is None or value is None else ("yes" if value >= target else "no")
        goal = "–" if target is None else f"{metric} ≥ {target:.2f}"
        lines.append(
            f"| {ds} | {r['n']} | {_fmt(r['accuracy'])} | {_fmt(r['recall'])} | "
            f"{_fmt(r.get('specificity'))} | {_fmt(r.get('roc_auc'))} | {goal} | {met} |"
        )
        cam = r.get("cam") or {}
        if cam.get("pointing_game") is not None:
            pg = cam["pointing_game"]
            lines.append(
                f"| {ds} Grad-CAM ({cam['method']}, {cam['n_with_masks']} masks) | "
                f"{cam['n_with_masks']} | pointing game {pg:.3f} "
                f"({cam['pointing_tolerance_px']:g} px tolerance) | energy in mask "
                f"{cam['energy_in_mask']:.3f} | | | pointing game ≥ {POINTING_TARGET} | "
                f"{'yes' if pg >= POINTING_TARGET else 'no'} |"
            )
    return lines


def stage_rows(results: dict[str, dict]) -> list[str]:
    """Stage 1 alone vs stage 2 alone, accuracy per dataset (the decision uses one)."""
    lines = ["| data set | stage 1 accuracy | stage 2 accuracy |", "|---|---:|---:|"]
    for ds, r in sorted(results.items()):
        s1, s2 = r.get("stage1") or {}, r.get("stage2") or {}
        lines.append(f"| {ds} | {_fmt(s1.get('accuracy'))} | {_fmt(s2.get('accuracy'))} |")
    return lines


def write_readme(out: Path, results: dict[str, dict], split: str, command: str) -> None:
    """The generated part of ``out/README.md``; hand-written notes below the marker stay."""
    readme = out / "README.md"
    notes = ""
    if readme.is_file() and NOTES_MARKER in readme.read_text(encoding="utf-8"):
        notes = readme.read_text(encoding="utf-8").split(NOTES_MARKER, 1)[1]
    model = next(iter(results.values()))["model"]
    text = [
        f"# The shipped model on its own {split} split",
        "",
        f"`{model['model_id']}` {model['version']} (stage 1 {model['stage1_arch']}, stage 2 "
        f"{model['stage2_arch']}, decision from {model['decision_stage']} at threshold "
        f"{model['threshold']:.3f}), evaluated with `heritage evaluate` on the {split} "
        "images of the split it was trained with (SDNET split by source photo, SaltSpot by "
        "`dedup_cluster`, Dais by source photo). Generated by:",
        "",
        "```bash",
        command,
        "```",
        "",
        *render_table(results),
        "",
        "Each stage alone (same images, the card's threshold):",
        "",
        *stage_rows(results),
        "",
        NOTES_MARKER,
    ]
    readme.write_text("\n".join(text) + (notes or "\n"), encoding="utf-8")


def main() -> int:
    """Link the split, evaluate every dataset, write the JSONs and the README table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", type=Path, default=ROOT.parent / "runs" / "heritage-lite0-run")
    ap.add_argument("--model", type=Path, default=ROOT / "models" / "heritage-default")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "evaluation")
    ap.add_argument(
        "--split",
        choices=("test", "val", "train"),
        default="test",
        help="train: only to describe what the model learned (it saw those images)",
    )
    ap.add_argument("--cam-method", default=None, help="override the card's Grad-CAM method")
    ap.add_argument("--datasets", default=None, help="comma-separated subset (default: all)")
    ap.add_argument(
        "--per-image",
        action="store_true",
        help="also write <out>/<dataset>.per_image.csv (for research/compare/pair_models.py)",
    )
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="heritage-eval-") as tmp:
        return evaluate_split(args, Path(tmp))


def evaluate_split(args: argparse.Namespace, work: Path) -> int:
    """Evaluate every dataset of ``args.split`` linked under ``work``; the worst exit code."""
    datasets = link_split(args.run_dir, args.split, work)
    if args.datasets:
        datasets = [d for d in datasets if d in args.datasets.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    worst = 0
    results: dict[str, dict] = {}
    for ds in datasets:
        out_json = args.out / f"{ds}.json"
        cmd = [str(ROOT / ".venv" / "bin" / "heritage"), "-q", "evaluate", str(work / ds)]
        cmd += ["--model", str(args.model), "--json", str(out_json)]
        if ds == "dais-masonry":
            cmd += ["--masks", str(work / "dais-masks")]
        if args.cam_method:
            cmd += ["--cam-method", args.cam_method]
        if args.per_image:
            cmd += ["--per-image", str(args.out / f"{ds}.per_image.csv")]
        print(shlex.join(cmd), flush=True)
        rc = subprocess.run(cmd, check=False).returncode
        worst = max(worst, rc)
        if rc == 0:
            # the linked folders are temporary: the committed results name them only
            results[ds] = without_machine_paths(json.loads(out_json.read_text(encoding="utf-8")))
            out_json.write_text(json.dumps(results[ds], indent=2) + "\n", encoding="utf-8")
    if results:
        write_readme(args.out, results, args.split, shlex.join(["python", *sys.argv]))
    return worst


if __name__ == "__main__":
    sys.exit(main())
