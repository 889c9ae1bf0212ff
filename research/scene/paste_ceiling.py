"""How many of the pasted-patch misses of ``scripts/eval_scenes.py`` are the patch classifier's
own misses? (issue 19, 2026-12-07 c; a diagnostic, nothing is chosen with it)

For every row of ``docs/evaluation/scenes.json``'s ``paste`` check (one test patch pasted
into one held-out facade), the patch alone is classified as a close-up (whole-image mode,
which is how 0.5.0 judged the test patches) and the rows are counted by (detected alone,
found in the facade). A row whose patch is missed alone can only be found through its
context; the share of rows whose patch is detected alone is therefore about the most scene
mode can reach without a better patch classifier.

It reads the results the evaluation already wrote (no new look at the held-out photos) and
regenerates the test split to find the patch files (about 15 s).

Usage: ``.venv/bin/python research/scene/paste_ceiling.py``
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import eval_scenes  # noqa: E402  (scripts/ is not a package)


def patch_files() -> dict[tuple[str, str], Path]:
    """``(data set, file name) -> path`` of the test split the shipped model was trained with."""
    with tempfile.TemporaryDirectory() as tmp:
        items = eval_scenes.test_split(Path(tmp))
    return {(dataset, path.name): path for path, dataset, _ in items}


def detected_alone(names: list[str], dataset: str, files: dict, clf) -> dict[str, bool]:
    """Whether the shipped model flags each patch on its own (whole-image mode)."""
    from PIL import Image

    out = {}
    for name in names:
        with Image.open(files[(dataset, name)]) as im:
            out[name] = bool(clf.classify([im.convert("RGB")])[0].decision)
    return out


def main() -> int:
    from heritage.model.card import load_model
    from heritage.survey.classify import make_classifier

    results = json.loads((ROOT / "docs" / "evaluation" / "scenes.json").read_text())
    files = patch_files()
    clf = make_classifier(load_model(ROOT / "models" / "heritage-default"), "cpu")
    print(
        "| data set | rows | distinct patches | detected alone (patches) | rows: alone, found |"
        " alone, missed | not alone, found | not alone, missed | rows with a detectable patch |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for dataset, rows in results["paste"].items():
        names = sorted({r["patch"] for r in rows})
        alone = detected_alone(names, dataset, files, clf)
        n = Counter((alone[r["patch"]], bool(r["found"])) for r in rows)
        detectable = n[(True, True)] + n[(True, False)]
        print(
            f"| {dataset} | {len(rows)} | {len(names)} | {sum(alone.values())} | "
            f"{n[(True, True)]} | {n[(True, False)]} | {n[(False, True)]} | "
            f"{n[(False, False)]} | {detectable} ({detectable / len(rows):.1%}) |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
