"""Fit scene mode's wall gate for a model and write it, with the scene settings, into the model.

The gate (:mod:`heritage.model.wallgate`) is a logistic regression on stage-1 features: training
patches of the split the model was trained with (positives) against tiles of whole-scene
photos without defects (negatives: the facades-spb photos that are not held out, and the
exif-gps photos other than the Arezzo ones). Its threshold is the ``--quantile`` of the
scores of the validation patches. The scene settings (overlap, tile budget, working size,
decision rule) are written as given; how they were chosen is in
``research/scene/README.md``.

The features come from ``research/scene/extract_tiles.py`` outputs (one tile per patch;
the scene photos' tiles as scene mode cuts them), so the fit is repeatable from them.

    .venv/bin/python scripts/fit_wall_gate.py --model models/heritage-default \\
        --train-npz runs/scene/train.npz --val-npz runs/scene/val.npz \\
        --scene-npz runs/scene/fac_tune.npz runs/scene/exif_neg.npz \\
        --quantile 0.01 --version 0.6.0
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
    ap.add_argument("--scene-npz", type=Path, nargs="+", required=True)
    ap.add_argument("--quantile", type=float, default=0.01)
    ap.add_argument("--components", type=int, default=64)
    ap.add_argument("--c", type=float, default=0.1, help="inverse L2 regularisation")
    ap.add_argument("--tile-threshold", type=float, default=None)
    ap.add_argument("--min-flagged-tiles", type=int, default=1)
    ap.add_argument("--overlap", type=float, default=0.5)
    ap.add_argument("--max-tiles", type=int, default=64)
    ap.add_argument("--max-side", type=int, default=2016)
    ap.add_argument("--version", default=None, help="new model version for the card")
    ap.add_argument("--notes", default="", help="text appended to the card's notes")
    a = ap.parse_args()

    from heritage.model.card import CARD_FILE, read_card
    from heritage.model.scenesettings import SceneSettings
    from heritage.model.wallgate import fit_wall_gate, save_gate, with_quantile_threshold

    card = read_card(a.model)
    tr, va = dict(np.load(a.train_npz)), dict(np.load(a.val_npz))
    scenes = [dict(np.load(p)) for p in a.scene_npz]
    scene_feats = np.vstack([s["feats"] for s in scenes]).astype(np.float64)
    gate = fit_wall_gate(tr["feats"].astype(np.float64), scene_feats, a.components, a.c)
    gate = with_quantile_threshold(gate, va["feats"].astype(np.float64), a.quantile)
    sha = save_gate(gate, a.model / GATE_FILE)
    settings = SceneSettings(
        overlap=a.overlap,
        max_tiles=a.max_tiles,
        max_side=a.max_side,
        tile_threshold=a.tile_threshold,
        min_flagged_tiles=a.min_flagged_tiles,
        gate_method="logistic",
        gate_file=GATE_FILE,
        gate_sha256=sha,
        gate_threshold=gate.threshold,
        gate_quantile=a.quantile,
        gate_fit={
            "train_patches": len(tr["feats"]),
            "scene_tiles": len(scene_feats),
            "scene_photos": int(sum(len(s["paths"]) for s in scenes)),
            "validation_patches": len(va["feats"]),
            "components": a.components,
            "c": a.c,
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


if __name__ == "__main__":
    sys.exit(main())
