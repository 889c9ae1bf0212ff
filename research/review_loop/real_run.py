"""The review loop on real photos, end to end, with a reviewer who knows the answers.

1. The standard split of the shipped model is made again (its card's seed and
   fractions) and checked against the counts its card records.
2. A survey folder: every facades-spb photo (intact street facades: any flag is a false
   alarm) and the dais-masonry crack patches of the standard *train and validation*
   splits (the test split stays out of the survey, so the standard test figures are
   not trained on).
3. ``heritage classify`` (``--mode whole``: the facades as the model's centre crop,
   which flags far more intact facades than scene mode does, so there are false alarms
   to learn from; the patches are close-ups either way).
4. The reviews a conservator would record: a flagged facade is a **false alarm**, a
   flagged Dais patch is **confirmed** (crack), an unflagged Dais patch is **missed**
   (crack); unflagged facades are left unreviewed.
5. ``heritage finetune`` with the standard data replayed; before/after on the held-out
   reviews (sha256 rule) and on the standard test split.

Usage (from the repository root; about 10-15 min on 2 CPU cores):

    OMP_NUM_THREADS=2 .venv/bin/python research/review_loop/real_run.py runs/review-loop

Writes ``runs/review-loop/summary.json`` (the figures of ``docs/review.md``).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data"
STANDARD = ("brickwork-cracks", "sdnet2018-walls", "ozgenel-concrete-crack",
            "saltspot-salt-damage")  # fmt: skip
EXTRA = DATA / "dais-masonry" / "images"
HERITAGE = str(ROOT / ".venv" / "bin" / "heritage")


def run(args: list[str]) -> dict:
    """Run the heritage CLI (its output goes to this one's); returns wall and CPU seconds."""
    print("$", " ".join(["heritage", *args[1:]]), flush=True)
    t = time.monotonic()
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(args, check=False)
    if done.returncode != 0:
        raise SystemExit(done.returncode)
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    took = {"wall_s": round(time.monotonic() - t, 1), "cpu_s": round(cpu, 1)}
    print(f"  ({took})", flush=True)
    return took


def standard_split(work: Path) -> dict:
    """The shipped model's split made again; returns {(dataset/class): {split: n}}."""
    from heritage.model.card import read_card
    from heritage.training import data as D

    card = read_card()
    tc = card.training["config"]
    settings = D.SplitSettings(
        data_dirs=tuple(str((DATA / d).resolve()) for d in STANDARD),
        extra_positives=(str(EXTRA.resolve()),),
        extra_positive_class=tc["extra_positive_class"],
        val_fraction=tc["val_fraction"],
        test_fraction=tc["test_fraction"],
        seed=tc["seed"],
        max_per_class=tc.get("max_per_class"),
    )
    items, info = D.make_or_load_split(settings, work / "split")
    same = info["counts"] == card.training["split"]["counts"]
    print(f"standard split made again: {'same counts as the card' if same else 'DIFFERENT'}")
    return {"items": items, "same_as_card": same}


def main() -> int:
    """Run the whole loop into the folder given on the command line."""
    work = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/review-loop")
    work.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    split = standard_split(work)
    photos = work / "photos"
    if not photos.is_dir():
        (photos / "facades").mkdir(parents=True)
        (photos / "dais").mkdir()
        for f in sorted((DATA / "facades-spb" / "intact").iterdir()):
            shutil.copy(f, photos / "facades" / f.name)
        for it in split["items"]:
            if it.dataset == "dais-masonry" and it.split in ("train", "val"):
                shutil.copy(it.path, photos / "dais" / it.path.name)
    survey = work / "survey.gpkg"
    classify = run([HERITAGE, "classify", str(photos), "-o", str(survey), "--mode", "whole",
                    "--device", "cpu"])  # fmt: skip

    from heritage.io.gpkg import read_rows
    from heritage.io.reviews import current_reviews, record_review

    done = current_reviews(survey)
    counts: dict[str, int] = {}
    for row in read_rows(survey, "observations", ["sha256", "path", "flagged"]):
        if row["sha256"] in done:
            continue
        dais = "/dais/" in f"/{row['path']}"
        if not dais and not row["flagged"]:
            continue
        verdict = ("confirmed" if row["flagged"] else "missed") if dais else "false_alarm"
        kind = "crack" if dais else None
        record_review(survey, row["sha256"], verdict, reviewer="research/review_loop",
                      defect_type=kind, at="2026-12-07T00:00:00+00:00")  # fmt: skip
        counts[verdict] = counts.get(verdict, 0) + 1
    print(f"reviews recorded now: {counts}")
    counts = dict(Counter(r.verdict for r in current_reviews(survey).values()))
    print(f"reviews in the survey: {counts}")
    model_out = work / "model-reviewed"
    if model_out.exists():
        shutil.rmtree(model_out)
    data_args = [a for d in STANDARD for a in ("--data", str(DATA / d))]
    finetune = run([HERITAGE, "finetune", "--from-survey", str(survey), "-o", str(model_out),
                    *data_args, "--extra-positives", str(EXTRA), "--epochs", "3",
                    "--replay", "50", "--device", "cpu"])  # fmt: skip
    report = json.loads((work / "model-reviewed-run" / "finetune.json").read_text())
    summary = {
        "split_same_as_card": split["same_as_card"],
        "reviews_recorded": counts,
        "classify": classify,
        "finetune": finetune,
        "report": report,
        "seconds": round(time.monotonic() - started, 1),
        "threads": os.environ.get("OMP_NUM_THREADS"),
    }
    (work / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    print(json.dumps({k: v for k, v in summary.items() if k != "report"}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
