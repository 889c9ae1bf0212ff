"""Refinement around candidate tiles: does a second look with shifted windows find a pasted
defect cut by the grid, and what does it cost on clean facades? (issue 19, 2026-12-07 b)

Gate: refitted like ``choose_rule.py`` on half of the facades-spb tuning photos (+ the
non-Arezzo exif-gps photos), because the shipped gate saw every tuning photo among its
negatives; threshold = 1 % quantile of the validation patches. Read: the other half of the
tuning photos (distinct files), each (a) as it is, (b) with a validation Dais crack patch,
(c) with a validation SaltSpot salt-damage patch pasted at a seeded place at native scale.
The nine Arezzo photos are reported, never used to choose. Held-out facades and test
patches are not read here.

Per photo the first pass (the card's grid) is scored, then the 8 quarter-tile shifts of
each of its 3 strongest tiles (by probability, wall or not); rules (K candidates, minimum
probability c) are then evaluated on the cached windows. Output: runs/scene/refine.json and
a table on stdout. Rule (written before it ran): among (K, c) with clean flagged photos at
most 1 more than K = 0, take the highest mean found rate of (b) and (c); ties: fewer extra
tiles.
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
import time
from pathlib import Path

import numpy as np

from heritage.model.card import load_model
from heritage.model.predict import load_image
from heritage.model.preprocess import to_model_rgb
from heritage.model.scene import SceneClassifier, SceneSettings, working_image
from heritage.model.wallgate import fit_wall_gate, with_quantile_threshold
from heritage.survey.pipeline import make_classifier

R = Path("runs/scene")
SHARED = Path("../shared/data")
K_MAX = 3


def load(n):
    return dict(np.load(R / f"{n}.npz"))


def half_gate():
    tr, va, fac, neg = (load(n) for n in ("train", "val", "fac_tune", "exif_neg"))
    rng = np.random.default_rng(0)
    photos = rng.permutation(len(fac["paths"]))
    fit_ph = photos[: len(photos) // 2]
    fit = np.isin(fac["img"], fit_ph)
    read_ph = np.setdiff1d(np.arange(len(fac["paths"])), fit_ph)
    scene = np.vstack([fac["feats"][fit], neg["feats"]]).astype(np.float64)
    gate = fit_wall_gate(tr["feats"].astype(np.float64), scene, 64, 0.1)
    gate = with_quantile_threshold(gate, va["feats"].astype(np.float64), 0.01)
    fit_files = {str(fac["paths"][i]) for i in fit_ph}
    read, seen = [], set()
    for i in read_ph:
        p = Path(str(fac["paths"][i]))
        sha = hashlib.sha256(p.read_bytes()).hexdigest()
        if sha not in seen and str(p) not in fit_files:
            seen.add(sha)
            read.append(p)
    return gate, read


def look(scene: SceneClassifier, im, box=None) -> dict:
    st = scene.settings
    work, scale = working_image(im.convert("RGB"), st.max_side)
    width, height = work.size
    size = scene.card.input_size
    windows = st.windows(width, height)
    p, feats = scene.score_tiles([to_model_rgb(work.crop(w), size) for w in windows])
    wall = scene.wall_mask(feats)
    extra, parent, seen = [], [], set(windows)
    for rank, i in enumerate(np.argsort(-p, kind="stable")[:K_MAX]):
        for w in st.neighbours(windows[int(i)], width, height):
            if w not in seen:
                seen.add(w)
                extra.append(w)
                parent.append(rank)
    p2, f2 = scene.score_tiles([to_model_rgb(work.crop(w), size) for w in extra])
    cand_p = np.sort(p)[::-1][:K_MAX]
    out = dict(
        p=p.tolist(),
        wall=wall.tolist(),
        p2=p2.tolist(),
        wall2=scene.wall_mask(f2).tolist(),
        parent=parent,
        cand_p=cand_p.tolist(),
    )
    if box is not None:  # which windows overlap the pasted patch (working-image pixels)
        x0, y0, x1, y1 = (v / scale for v in box)
        ov = [bool(w[0] < x1 and x0 < w[2] and w[1] < y1 and y0 < w[3]) for w in windows + extra]
        out["overlap"] = ov
    return out


def decide(r: dict, k: int, c: float, T: float):
    """(flagged, best window overlaps the paste or None, extra tiles) under rule (k, c)."""
    keep = [j for j, par in enumerate(r["parent"]) if par < k and r["cand_p"][par] >= c]
    p = np.array(r["p"] + [r["p2"][j] for j in keep])
    wall = np.array(r["wall"] + [r["wall2"][j] for j in keep], dtype=bool)
    n0 = len(r["p"])
    flagged = bool((wall & (p >= T)).any())
    ov = None
    if "overlap" in r and wall.any():
        idx = list(range(n0)) + [n0 + j for j in keep]
        best = int(np.argmax(np.where(wall, p, -1)))
        ov = r["overlap"][idx[best]]
    return flagged, ov, len(keep)


def main() -> None:
    t0 = time.time()
    gate, read = half_gate()
    print(f"half gate threshold {gate.threshold:.4f}; {len(read)} read photos", flush=True)
    val = [Path(p) for p in (R / "val.txt").read_text().split()]
    dais = [p for p in val if "dais-masonry" in str(p)]
    salt = [p for p in val if "saltspot-salt-damage/salt_damage" in str(p)]
    clf = make_classifier(load_model(Path("models/heritage-default")), "cpu")
    st = SceneSettings.from_card(clf.card.scene)
    scene = SceneClassifier(clf, st, gate)
    T = scene.threshold
    res: dict[str, list] = {"clean": [], "dais": [], "salt": [], "arezzo": []}
    rng = random.Random(7)
    for i, photo in enumerate(read):
        im = load_image(photo)
        res["clean"].append(look(scene, im))
        for name, pool in (("dais", dais), ("salt", salt)):
            patch = load_image(pool[rng.randrange(len(pool))]).convert("RGB")
            w, h = patch.size
            x, y = rng.randrange(0, im.width - w + 1), rng.randrange(0, im.height - h + 1)
            pasted = im.convert("RGB").copy()
            pasted.paste(patch, (x, y))
            res[name].append(look(scene, pasted, (x, y, x + w, y + h)))
        if i % 10 == 0:
            print(i, f"{time.time() - t0:.0f}s", flush=True)
    arezzo = sorted((SHARED / "exif-gps" / "gps").glob("DSCN*.jpg"))
    res["arezzo"] = [look(scene, load_image(p)) for p in arezzo]
    (R / "refine.json").write_text(json.dumps(res))
    rows = []
    for k in range(K_MAX + 1):
        for c in (0.1, 0.2, 0.3, 0.5) if k else (1.0,):
            d = {n: [decide(r, k, c, T) for r in res[n]] for n in res}
            row = dict(
                k=k,
                c=c,
                clean=sum(f for f, _, _ in d["clean"]),
                arezzo=sum(f for f, _, _ in d["arezzo"]),
                dais=sum(bool(f and o) for f, o, _ in d["dais"]),
                salt=sum(bool(f and o) for f, o, _ in d["salt"]),
                extra=float(np.mean([e for n in d for _, _, e in d[n]])),
            )
            rows.append(row)
            print(row, flush=True)
    n = len(read)
    base = rows[0]["clean"]
    ok = [r for r in rows if r["clean"] <= base + 1]
    best = max(ok, key=lambda r: (r["dais"] + r["salt"], -r["extra"]))
    print(f"n={n}; chosen by the rule: {best}; {time.time() - t0:.0f}s")
    (R / "refine_rows.json").write_text(json.dumps({"n": n, "rows": rows, "chosen": best}))


if __name__ == "__main__":
    sys.exit(main())
