"""Fit scene mode's wall gate for a model and write it, with the scene settings, into the model.

The gate (:mod:`heritage.model.wallgate`) is a logistic regression on stage-1 features: training
patches of the split the model was trained with (positives) against tiles of whole-scene
photos without defects (negatives: the facades-spb photos that are not held out, and the
exif-gps photos other than the Arezzo ones). Its threshold is the ``--quantile`` of the
scores of the validation patches. The scene settings (overlap, tile budget, working size,
decision rule) given on the command line are written, the others kept from the card; how
they were chosen is in ``research/scene/README.md``.

The features come from ``research/scene/extract_tiles.py`` outputs (one tile per patch;
the scene photos' tiles as scene mode cuts them) and ``research/scene/autumn_tiles.py``
(recoloured vegetation), so the fit is repeatable from them. ``--scene-npz FILE:N`` counts a
file's tiles N times. Scene settings the command line does not give are kept from the card.

    .venv/bin/python scripts/fit_wall_gate.py --model models/heritage-default \\
        --train-npz runs/scene/train.npz --val-npz runs/scene/val.npz \\
        --scene-npz runs/scene/fac_tune.npz runs/scene/exif_neg.npz \\
        --quantile 0.01 --version 0.6.0

Model 0.8.0 (autumn-foliage negatives, ``research/scene/autumn_gate.py``)::

    .venv/bin/python scripts/fit_wall_gate.py --model models/heritage-default \\
        --train-npz runs/scene/train.npz --val-npz runs/scene/val.npz \\
        --scene-npz runs/scene/fac_tune.npz runs/scene/exif_neg.npz runs/scene/autumn.npz:W \\
        --components K --c C --quantile 0.01 --version 0.8.0
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

GATE_FILE = "wall_gate.safetensors"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--train-npz", type=Path, required=True)
    ap.add_argument("--val-npz", type=Path, required=True)
    ap.add_argument("--scene-npz", nargs="+", required=True, help="FILE or FILE:REPEAT")
    ap.add_argument("--quantile", type=float, default=0.01)
    ap.add_argument("--components", type=int, default=64)
    ap.add_argument("--c", type=float, default=0.1, help="inverse L2 regularisation")
    ap.add_argument("--tile-threshold", type=float, default=None)
    ap.add_argument("--min-flagged-tiles", type=int, default=None)
    ap.add_argument("--overlap", type=float, default=None)
    ap.add_argument("--max-tiles", type=int, default=None)
    ap.add_argument("--max-side", type=int, default=None)
    ap.add_argument("--version", default=None, help="new model version for the card")
    ap.add_argument("--notes", default="", help="text appended to the card's notes")
    ap.add_argument("--negatives", default=None, help="what the scene tiles are, for the card")
    a = ap.parse_args()

    from heritage.model.card import CARD_FILE, read_card
    from heritage.model.scenesettings import SceneSettings
    from heritage.model.wallgate import fit_wall_gate, save_gate, with_quantile_threshold

    card = read_card(a.model)
    tr, va = dict(np.load(a.train_npz)), dict(np.load(a.val_npz))
    sources = [_source(arg) for arg in a.scene_npz]
    scenes = [(path, dict(np.load(path)), n) for path, n in sources]
    scene_feats = np.vstack([s["feats"] for _, s, n in scenes for _ in range(n)]).astype(np.float64)
    gate = fit_wall_gate(tr["feats"].astype(np.float64), scene_feats, a.components, a.c)
    gate = with_quantile_threshold(gate, va["feats"].astype(np.float64), a.quantile)
    sha = save_gate(gate, a.model / GATE_FILE)
    given = {
        "overlap": a.overlap,
        "max_tiles": a.max_tiles,
        "max_side": a.max_side,
        "tile_threshold": a.tile_threshold,
        "min_flagged_tiles": a.min_flagged_tiles,
    }
    settings = dataclasses.replace(
        card.scene or SceneSettings(),
        **{k: v for k, v in given.items() if v is not None},
        gate_method="logistic",
        gate_file=GATE_FILE,
        gate_sha256=sha,
        gate_threshold=gate.threshold,
        gate_quantile=a.quantile,
        gate_fit={
            "train_patches": len(tr["feats"]),
            "scene_tiles": len(scene_feats),
            "scene_photos": len({str(p) for _, s, _ in scenes for p in s["paths"]}),
            "scene_sources": {
                Path(path).name: {"tiles": len(s["feats"]), "repeat": n} for path, s, n in scenes
            },
            "validation_patches": len(va["feats"]),
            "components": a.components,
            "c": a.c,
            **({"negatives": a.negatives} if a.negatives else {}),
            "fitted": datetime.now(UTC).isoformat(timespec="seconds"),
            "how": "research/scene/README.md; scripts/fit_wall_gate.py",
        },
    )
    card = dataclasses.replace(
        card,
        scene=settings,
        version=a.version or card.version,
        notes=(card.notes + " " + a.notes).strip(),
    )
    (a.model / CARD_FILE).write_text(card.to_json(), encoding="utf-8")
    print(json.dumps({"gate_threshold": gate.threshold, "sha256": sha}, indent=1))
    return 0


def _source(arg: str) -> tuple[Path, int]:
    """``FILE`` or ``FILE:REPEAT`` of ``--scene-npz``."""
    path, _, rep = arg.rpartition(":") if arg.rpartition(":")[2].isdigit() else (arg, "", "1")
    if int(rep) < 1:
        sys.exit(f"--scene-npz {arg}: the repeat count must be at least 1")
    return Path(path), int(rep)


if __name__ == "__main__":
    sys.exit(main())
