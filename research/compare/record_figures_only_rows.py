"""Write the full comparison's lost rows as figures-only rows into research/comparison-rows/.

The output folder of the full comparison (``runs/compare-full``: weights, per-image
decisions and ``result.json`` of MobileNetV3-Small, the two-stage row, AlexNet and
EfficientNet-Lite0) was lost between sessions on 2026-12-06, before ``--rows-dir``
existed. What survives is the committed table (research/comparison.md and .csv, as the
script last wrote them) and, for EfficientNet-Lite0, which finished after the table was
last written, the figures written out in research/comparison.md's text. This script turns
those figures back into rows that ``python -m research.compare --rows-dir research/comparison-rows``
takes back (``figures_only``), so the committed table keeps them when later rows are
added, instead of training them again (about 5 h on 2 cores).

Nothing is invented: percentages are the ones printed (one decimal); the number of right
decisions per dataset is recovered from the per-dataset percentage and the dataset's test
count, and checked to be the only count that prints as that percentage; the overall
accuracy is their sum, checked against the printed overall accuracy. Parameters and the
fp32 file size depend only on the architecture and are measured on the networks as
built. Figures that were never written down (EfficientNet-Lite0's precision, recall,
class accuracy, CPU speed) stay null and the table prints n/a.

    .venv/bin/python research/compare/record_figures_only_rows.py runs/compare-full

RUN_DIR must hold the run's ``split.csv`` (any new run of research/compare/compare_full.sh
makes it again, the same file); the rows record its content fingerprint.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

SOURCE = (
    "copied on 2026-12-06 from the table of research/comparison.md/.csv as last written by "
    "research/compare/compare_full.sh, by research/compare/record_figures_only_rows.py"
)
LITE0_SOURCE = (
    "copied on 2026-12-06 from the text of research/comparison.md (the row finished after the "
    "table was last written), by research/compare/record_figures_only_rows.py; its network survives "
    "as the shipped model 0.5.0's stage 1, in float16"
)
TEST_N = {
    "brickwork-cracks": 109,
    "dais-masonry": 37,
    "ozgenel-concrete-crack": 640,
    "saltspot-salt-damage": 249,
    "sdnet2018-walls": 657,
}
BUDGET = {
    "epochs": 15,
    "image_size": None,
    "batch_size": 32,
    "lr": 0.0001,
    "patience": 3,
    "scheduler": "cosine",
    "pretrained": None,
    "stage2_arch": "resnet18",
    "seed": 0,
    "threshold": 0.5,
    "positive": ["crack", "salt_damage"],
}
# (percentages as printed; per-dataset order as TEST_N)
ROWS = {
    "alexnet": dict(acc=83.7, precision=83.9, recall=82.8, f1=83.3, class_acc=83.5,
                    per=(92.7, 51.4, 99.5, 76.7, 71.4), images_per_s=115.9, threads=2,
                    epochs=15, train_seconds=3892.51, roc_auc=0.921),
    "mobilenet_v3_small": dict(acc=75.8, precision=78.7, recall=69.6, f1=73.9, class_acc=75.2,
                               per=(78.9, 45.9, 98.4, 66.3, 58.6), images_per_s=421.3,
                               threads=2, epochs=15, train_seconds=1827.96, roc_auc=0.856),
    "two_stage": dict(acc=72.4, precision=66.1, recall=90.0, f1=76.2, class_acc=75.2,
                      per=(72.5, 67.6, 98.6, 55.0, 53.7), images_per_s=34.4, threads=2,
                      epochs=21, train_seconds=3765.18, roc_auc=None),
    "efficientnet_lite0": dict(acc=93.4, precision=None, recall=None, f1=93.1, class_acc=None,
                               per=(100.0, 81.1, 99.4, 93.6, 87.2), images_per_s=None,
                               threads=None, epochs=10, train_seconds=None, roc_auc=0.979),
}  # fmt: skip
#: the two-stage row's own stage 2 against its stage 1 on the same test images
TWO_STAGE_PAIRED = {"b_stage1_only_right": 266, "c_stage2_only_right": 208, "p_value": 0.0088}


def count_for(pct: float, n: int) -> int:
    """The one count k of n that prints as ``pct`` (one decimal); error if not unique."""
    ks = [k for k in range(n + 1) if round(100 * k / n, 1) == pct]
    if len(ks) != 1:
        raise SystemExit(f"{pct} % of {n} is {ks}: not one count")
    return ks[0]


def measured_size(arch: str, classes: int) -> tuple[int, int]:
    """Parameters and fp32 safetensors bytes of the network as the comparison builds it."""
    from heritage.model.zoo import build_model

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # research/ as a package
    from heritage.model.measure import param_count
    from research.compare.compare import save_fp32

    if arch == "two_stage":
        p1, s1 = measured_size("mobilenet_v3_small", classes)
        p2, s2 = measured_size("resnet18", 1)  # stage 2: one logit (BCE)
        return p1 + p2, s1 + s2
    model = build_model(arch, classes, None)
    with tempfile.TemporaryDirectory() as tmp:
        return param_count(model), save_fp32(model, Path(tmp) / "m.safetensors")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir", type=Path, help="folder with the full run's split.csv")
    ap.add_argument("--out", type=Path, default=Path("research/comparison-rows"))
    args = ap.parse_args()

    from heritage.training.data import class_names, load_split, split_fingerprint

    items = load_split(args.run_dir)
    fingerprint = split_fingerprint(items)
    classes = class_names(items)
    test = [it for it in items if it.split == "test"]
    for name, n in TEST_N.items():
        have = sum(it.dataset == name for it in test)
        if have != n:
            raise SystemExit(f"{name}: {have} test images in {args.run_dir}, the table had {n}")
    for arch, r in ROWS.items():
        pairs = zip(TEST_N.items(), r["per"], strict=True)
        right = {name: count_for(p, n) for (name, n), p in pairs}
        total = sum(right.values())
        if round(100 * total / len(test), 1) != r["acc"]:
            raise SystemExit(f"{arch}: {total}/{len(test)} right is not {r['acc']} %")
        params, size = measured_size(arch, len(classes))

        def frac(v: float | None) -> float | None:
            return None if v is None else round(v / 100, 3)

        row = {
            "arch": arch,
            "input_px": 224,
            "figures_only": True,
            "figures_source": LITE0_SOURCE if arch == "efficientnet_lite0" else SOURCE,
            "test": {
                "n": len(test),
                "accuracy": total / len(test),
                "precision": frac(r["precision"]),
                "recall": frac(r["recall"]),
                "f1": frac(r["f1"]),
                "roc_auc": r["roc_auc"],
            },
            "test_per_dataset": {
                name: {"n": n, "accuracy": right[name] / n} for name, n in TEST_N.items()
            },
            "class_accuracy": frac(r["class_acc"]),
            "params": params,
            "size_bytes": size,
            "throughput": (
                {"images_per_s": r["images_per_s"], "threads": r["threads"]}
                if r["images_per_s"]
                else None
            ),
            "epochs_run": r["epochs"],
            "train_seconds": r["train_seconds"],
            "train_precision": "fp32",
            "budget": BUDGET,
            "split_fingerprint": fingerprint,
        }
        if arch == "two_stage":
            row["decision_stage"] = "stage2"
            row["paired_vs_stage1"] = TWO_STAGE_PAIRED
        (args.out / arch).mkdir(parents=True, exist_ok=True)
        path = args.out / arch / "result.json"
        path.write_text(json.dumps(row, indent=2) + "\n", encoding="utf-8")
        print(f"{path}: {total}/{len(test)} right, {params / 1e6:.2f} M parameters, "
              f"{size / 1e6:.1f} MB")  # fmt: skip


if __name__ == "__main__":
    main()
