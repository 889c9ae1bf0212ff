"""Evaluate the shipped model on its own test split, with Dais masks for Grad-CAM.

Reads the run folder's ``split.csv`` (the split the model was trained with), links the
test images of every dataset into ``<work>/<dataset>/<class>/`` (and the Dais masks of
the test images into ``<work>/dais-masks/``), then runs ``heritage evaluate`` on each
dataset (Dais with ``--masks``) and writes ``docs/evaluation/<dataset>.json``.

    .venv/bin/python scripts/eval_shipped.py [--run-dir ../runs/heritage-default-run]
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    """Link the test split and evaluate every dataset; returns the worst exit code."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", type=Path, default=ROOT.parent / "runs" / "heritage-default-run")
    ap.add_argument("--model", type=Path, default=ROOT / "models" / "heritage-default")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "evaluation")
    args = ap.parse_args()
    with open(args.run_dir / "split.csv", encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    work = Path(tempfile.mkdtemp(prefix="heritage-eval-"))
    datasets: set[str] = set()
    for r in rows:
        if r["split"] != "test":
            continue
        src = Path(r["data_dir"]) / r["path"]
        dst = work / r["dataset"] / r["class"] / src.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.symlink_to(src.resolve())
        datasets.add(r["dataset"])
        if r["dataset"] == "dais-masonry":
            mask = src.resolve().parents[2] / "masks" / src.name
            (work / "dais-masks").mkdir(exist_ok=True)
            (work / "dais-masks" / src.name).symlink_to(mask)
    args.out.mkdir(parents=True, exist_ok=True)
    worst = 0
    for ds in sorted(datasets):
        cmd = [
            str(ROOT / ".venv" / "bin" / "heritage"),
            "-q",
            "evaluate",
            str(work / ds),
            "--model",
            str(args.model),
            "--json",
            str(args.out / f"{ds}.json"),
        ]
        if ds == "dais-masonry":
            cmd += ["--masks", str(work / "dais-masks")]
        print(" ".join(cmd), flush=True)
        worst = max(worst, subprocess.run(cmd, check=False).returncode)
    return worst


if __name__ == "__main__":
    sys.exit(main())
