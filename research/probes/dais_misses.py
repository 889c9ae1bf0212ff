"""Which Dais masonry crack patches the shipped model misses, and what they look like.

Reads the per-image CSVs that ``scripts/eval_shipped.py --datasets dais-masonry
--per-image`` wrote for one or more splits, the crack-pixel fraction of every patch from
the Dais ``manifest.csv`` and the source photo of every patch from the run's
``split.csv``, and writes a Markdown report (recall per split, per crack-pixel fraction,
per source photo of the test split; every missed test patch with its probability and the
stage-1 class it was given) and a picture of the missed test patches with their masks.
Descriptive only: nothing here chooses a model or a threshold.

    .venv/bin/python research/probes/dais_misses.py --split-csv runs/compare-full/split.csv \\
        test=/tmp/dais-test/dais-masonry.per_image.csv val=/tmp/dais-val/... \\
        --also GoogLeNet=research/comparison-rows/googlenet/test.per_image.csv
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DAIS = ROOT.parent / "shared" / "data" / "dais-masonry"
#: crack-pixel fraction bins (upper bounds), as the manifest gives it (0..1)
BINS: tuple[tuple[str, float], ...] = (
    ("< 1 %", 0.01),
    ("1-2 %", 0.02),
    ("2-4 %", 0.04),
    ("≥ 4 %", float("inf")),
)


def read_rows(path: Path) -> dict[str, dict[str, str]]:
    """Per-image rows of the Dais patches, keyed by file name."""
    with open(path, encoding="utf-8", newline="") as fh:
        return {
            Path(r["path"]).name: r
            for r in csv.DictReader(fh)
            if r.get("dataset", "dais-masonry") == "dais-masonry" and r.get("correct", "") != ""
        }


def read_column(path: Path, key: str, value: str, **where: str) -> dict[str, str]:
    """``{file name of key: value}`` for the rows of a CSV that match ``where``."""
    with open(path, encoding="utf-8", newline="") as fh:
        return {
            Path(r[key]).name: r[value]
            for r in csv.DictReader(fh)
            if all(r.get(k) == v for k, v in where.items())
        }


def bin_of(fraction: float) -> str:
    """The label of the crack-fraction bin that holds ``fraction``."""
    return next(label for label, upper in BINS if fraction < upper)


def report(
    splits: dict[str, dict[str, dict[str, str]]],
    fraction: dict[str, float],
    photo: dict[str, str],
    also: dict[str, dict[str, dict[str, str]]],
) -> list[str]:
    """The Markdown lines of the report."""
    found = {s: {n for n, r in rows.items() if r["decision"] == "1"} for s, rows in splits.items()}
    lines = ["| split | patches | found | recall |", "|---|---:|---:|---:|"]
    for s, rows in splits.items():
        lines.append(f"| {s} | {len(rows)} | {len(found[s])} | {len(found[s]) / len(rows):.3f} |")
    lines += ["", "Found of n by crack-pixel fraction of the patch (its mask):", ""]
    lines += ["| split | " + " | ".join(label for label, _ in BINS) + " |"]
    lines += ["|---|" + "---:|" * len(BINS)]
    for s, rows in splits.items():
        cells = []
        for label, _ in BINS:
            names = [n for n in rows if bin_of(fraction[n]) == label]
            cells.append(f"{sum(n in found[s] for n in names)}/{len(names)}")
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    if "test" not in splits:
        return lines
    test = splits["test"]
    per_photo: dict[str, list[str]] = defaultdict(list)
    for n in test:
        per_photo[photo[n]].append(n)
    lines += ["", "Test patches per source photo (found of n):", ""]
    lines.append(
        ", ".join(
            f"{p.removeprefix('photo:')} {sum(n in found['test'] for n in ns)}/{len(ns)}"
            for p, ns in sorted(per_photo.items())
        )
    )
    names = list(also)
    lines += ["", "Missed test patches, surest first:", ""]
    lines.append(
        "| patch | source photo | p (conservation needed) | stage-1 class | crack pixels |"
        + "".join(f" {a} |" for a in names)
    )
    lines.append("|---|---|---:|---|---:|" + "---|" * len(names))
    for n in missed(test):
        r = test[n]
        others = "".join(
            f" {'found' if also[a].get(n, {}).get('decision') == '1' else 'missed'} |"
            for a in names
        )
        lines.append(
            f"| {n} | {photo[n].removeprefix('photo:')} | {float(r['p_final']):.3f} | "
            f"{r['stage1_label']} | {fraction[n]:.1%} |{others}"
        )
    return lines


def missed(rows: dict[str, dict[str, str]]) -> list[str]:
    """File names of the patches not flagged, lowest probability first."""
    return sorted(
        (n for n, r in rows.items() if r["decision"] != "1"),
        key=lambda n: float(rows[n]["p_final"]),
    )


def draw(rows: dict[str, dict[str, str]], fraction: dict[str, float], out: Path) -> None:
    """Each missed patch above the same patch with its crack mask in red."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from PIL import Image

    names = missed(rows)
    fig, axes = plt.subplots(2, len(names), figsize=(1.9 * len(names), 4.3), squeeze=False)
    for i, n in enumerate(names):
        image = np.asarray(Image.open(DAIS / "images" / "crack" / n).convert("RGB")).copy()
        mask = np.asarray(Image.open(DAIS / "masks" / n).convert("L")) > 127
        overlay = image.copy()
        overlay[mask] = (255, 0, 0)
        axes[0, i].imshow(image)
        axes[1, i].imshow(overlay)
        axes[0, i].set_title(
            f"{Path(n).stem}\np={float(rows[n]['p_final']):.2f} {rows[n]['stage1_label']}",
            fontsize=8,
        )
        axes[1, i].set_title(f"crack {fraction[n]:.1%}", fontsize=8)
        for ax in axes[:, i]:
            ax.set_axis_off()
    fig.suptitle(
        "Dais test patches the shipped model misses (top) and their crack masks", fontsize=9
    )
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=72)
    plt.close(fig)


def main() -> int:
    """Parse ``SPLIT=CSV`` pairs, write the report and the picture."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("per_image", nargs="+", help="SPLIT=PATH of a per-image CSV")
    ap.add_argument("--split-csv", type=Path, required=True, help="the run's split.csv")
    ap.add_argument("--manifest", type=Path, default=DAIS / "manifest.csv")
    ap.add_argument(
        "--also", action="append", default=[], help="NAME=PATH: another model's test CSV"
    )
    research = ROOT / "research"
    ap.add_argument("--out-md", type=Path, default=research / "evaluation" / "dais-misses.md")
    ap.add_argument("--out-png", type=Path, default=research / "img" / "dais_misses.png")
    args = ap.parse_args()
    pairs = [a.split("=", 1) for a in args.per_image]
    splits = {s: read_rows(Path(p)) for s, p in pairs}
    also = {name: read_rows(Path(p)) for name, p in (a.split("=", 1) for a in args.also)}
    fraction = {
        n: float(v) for n, v in read_column(args.manifest, "file", "crack_pixel_fraction").items()
    }
    photo = read_column(args.split_csv, "path", "group", dataset="dais-masonry")
    lines = [
        "# Dais masonry: which crack patches the shipped model misses",
        "",
        "Generated by (the per-image CSVs: `scripts/eval_shipped.py --run-dir RUN --split SPLIT "
        "--datasets dais-masonry --per-image --out ../runs/dais-SPLIT`, the run being the "
        "shipped model's split):",
        "",
        "```bash",
        "python " + " ".join(["research/probes/dais_misses.py", *sys.argv[1:]]),
        "```",
        "",
        *report(splits, fraction, photo, also),
        "",
        f"![missed test patches](../img/{args.out_png.name})",
        "",
    ]
    args.out_md.parent.mkdir(parents=True, exist_ok=True)
    args.out_md.write_text("\n".join(lines), encoding="utf-8")
    if "test" in splits and missed(splits["test"]):
        draw(splits["test"], fraction, args.out_png)
    print(f"written: {args.out_md}, {args.out_png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
