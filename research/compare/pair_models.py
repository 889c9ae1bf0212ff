"""Pair two models' decisions on the same images: exact McNemar test per data set.

Reads the per-image CSVs that ``scripts/eval_shipped.py --per-image`` (or
``heritage evaluate --per-image``) wrote for model A and model B, matches the images by
data set, class and file name, and prints a Markdown table: images only A got right,
only B got right, the exact McNemar p, and the Grad-CAM pointing-game hits where masks
were used. Use it before replacing the shipped model: a higher accuracy that is within
noise is not a reason to ship.

    .venv/bin/python research/compare/pair_models.py /tmp/eval-030 /tmp/eval-040 --names 0.3.0,0.4.0
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import defaultdict
from pathlib import Path

Key = tuple[str, str, str]


def read_outcomes(path: Path) -> dict[Key, dict[str, str]]:
    """Rows of one or more per-image CSVs (a file or a folder of ``*.per_image.csv``)."""
    files = sorted(path.glob("*.per_image.csv")) if path.is_dir() else [path]
    if not files:
        raise SystemExit(f"no *.per_image.csv in {path}; run eval_shipped.py with --per-image")
    rows: dict[Key, dict[str, str]] = {}
    for f in files:
        with open(f, encoding="utf-8", newline="") as fh:
            for r in csv.DictReader(fh):
                if r.get("correct", "") == "":  # unreadable image: no decision
                    continue
                rows[(r["dataset"], r["class"], Path(r["path"]).name)] = r
    return rows


def pair(a: dict[Key, dict[str, str]], b: dict[Key, dict[str, str]]) -> dict[str, dict]:
    """Per data set (and ``all``): McNemar of the decisions, accuracies, pointing hits."""
    from heritage.model.metrics import mcnemar

    common = sorted(set(a) & set(b))
    if not common:
        raise SystemExit("the two evaluations share no image; were they run on the same split?")
    groups: dict[str, list[Key]] = defaultdict(list)
    for k in common:
        groups[k[0]].append(k)
    groups["all"] = common
    out: dict[str, dict] = {}
    for name, keys in groups.items():
        ca = [a[k]["correct"] == "1" for k in keys]
        cb = [b[k]["correct"] == "1" for k in keys]
        entry = mcnemar(ca, cb)
        entry["accuracy_a"] = sum(ca) / len(ca)
        entry["accuracy_b"] = sum(cb) / len(cb)
        hits = [k for k in keys if a[k].get("pointing_hit") and b[k].get("pointing_hit")]
        if hits:
            ha = [a[k]["pointing_hit"] == "1" for k in hits]
            hb = [b[k]["pointing_hit"] == "1" for k in hits]
            entry["pointing_a"], entry["pointing_b"], entry["n_masks"] = sum(ha), sum(hb), len(hits)
            entry["pointing_p"] = mcnemar(ha, hb)["p_value"]
        out[name] = entry
    out["_unmatched"] = {"only_a": len(set(a) - set(b)), "only_b": len(set(b) - set(a))}
    return out


def render(result: dict[str, dict], names: tuple[str, str]) -> str:
    """The Markdown table of :func:`pair`'s result."""
    na, nb = names
    lines = [
        f"| data set | n | accuracy {na} | accuracy {nb} | only {na} right | "
        f"only {nb} right | McNemar p | pointing hits {na} / {nb} (McNemar p) |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name in [*sorted(k for k in result if not k.startswith("_") and k != "all"), "all"]:
        r = result[name]
        pg = "–"
        if "n_masks" in r:
            hits = f"{r['pointing_a']} / {r['pointing_b']} of {r['n_masks']}"
            pg = f"{hits} (p {r['pointing_p']:.3g})"
        lines.append(
            f"| {name} | {r['n']} | {r['accuracy_a']:.3f} | {r['accuracy_b']:.3f} | {r['b']} | "
            f"{r['c']} | {r['p_value']:.3g} | {pg} |"
        )
    un = result["_unmatched"]
    if un["only_a"] or un["only_b"]:
        lines.append("")
        lines.append(f"Not paired: {un['only_a']} images only in {na}, {un['only_b']} in {nb}.")
    return "\n".join(lines) + "\n"


def main() -> int:
    """Print the paired table of two evaluations."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a", type=Path, help="per-image CSV or folder of model A")
    ap.add_argument("b", type=Path, help="per-image CSV or folder of model B")
    ap.add_argument("--names", default="A,B", help="labels of the two models, comma-separated")
    args = ap.parse_args()
    names = tuple(args.names.split(",", 1)) if "," in args.names else ("A", "B")
    sys.stdout.write(render(pair(read_outcomes(args.a), read_outcomes(args.b)), names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
