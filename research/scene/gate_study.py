"""Compare wall gates on cached tiles (research/scene/extract_tiles.py outputs).

Gates: (a) Mahalanobis OOD on stage-1 features (fit on training patches, threshold a
quantile of validation patches), (b) colour (vegetation/sky share), (c) both.
For each gate and tile threshold / min-tiles rule: share of validation patches kept as
wall, validation patch accuracy per dataset, photos flagged among facades-spb tuning
photos and the 9 Arezzo demo photos.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from ood_gates import colour_fractions, fit_feature_gate
from PIL import Image

from heritage.model.predict import load_image

R = Path("runs/scene")


def load(name):
    return dict(np.load(R / f"{name}.npz"))


def colour(d, name, max_side=2016):
    cache = R / f"{name}.colour.npy"
    if cache.exists():
        return np.load(cache)
    out = np.zeros((len(d["img"]), 2), np.float32)
    cur, im = -1, None
    for j, (i, win) in enumerate(zip(d["img"], d["win"])):
        if i != cur:
            im = load_image(d["paths"][i])
            cur = i
            w, h = im.size
            if max(w, h) > max_side:
                s = max_side / max(w, h)
                im = im.resize(
                    (round(w * s), round(h * s)), Image.Resampling.BILINEAR, reducing_gap=2.0
                )
        out[j] = colour_fractions(np.asarray(im.crop(tuple(win)).resize((112, 112))))
    np.save(cache, out)
    return out


def pos(d):
    labs = list(d["labels"])
    return d["probs"][:, labs.index("crack")] + d["probs"][:, labs.index("salt_damage")]


def main():
    tr, va = load("train"), load("val")
    fac, arz = load("fac_tune"), load("arezzo")
    ytr = tr["probs"].argmax(1)  # placeholder if labels missing

    # labels of training patches from their folder names
    def lab(paths):
        return np.array([Path(p).parent.name for p in paths])

    ltr = lab(tr["paths"])[tr["img"]]
    gate0 = fit_feature_gate(
        tr["feats"].astype(np.float64),
        ltr,
        n_components=int(sys.argv[1]) if len(sys.argv) > 1 else 64,
    )
    dva = gate0.distances(va["feats"])
    dfac = gate0.distances(fac["feats"])
    darz = gate0.distances(arz["feats"])
    cfac, carz, cva = colour(fac, "fac_tune"), colour(arz, "arezzo"), colour(va, "val")
    print("val dist quantiles", np.quantile(dva, [0.5, 0.9, 0.95, 0.99, 0.995, 1.0]).round(1))
    print("fac dist quantiles", np.quantile(dfac, [0.05, 0.25, 0.5, 0.75, 0.95]).round(1))
    print("arz dist quantiles", np.quantile(darz, [0.05, 0.25, 0.5, 0.75, 0.95]).round(1))
    pva, pfac, parz = pos(va), pos(fac), pos(arz)
    yva = np.isin(lab(va["paths"]), ["crack", "salt_damage"])[va["img"]]
    dsva = np.array([Path(p).parts[-3] for p in va["paths"]])[va["img"]]
    for q in [0.95, 0.99, 0.995, 1.0]:
        thr = float(np.quantile(dva, q))
        for use_col in [False, True]:
            for T in [0.692, 0.8, 0.9, 0.95]:
                for k in [1, 2, 3]:

                    def photo_flags(d, dist, col, p):
                        wall = dist <= thr
                        if use_col:
                            wall &= (col[:, 0] < 0.25) & (col[:, 1] < 0.25)
                        hit = wall & (p >= T)
                        n = np.bincount(d["img"], weights=hit, minlength=len(d["paths"]))
                        nw = np.bincount(d["img"], weights=wall, minlength=len(d["paths"]))
                        return (n >= k), (nw == 0)

                    ff, fna = photo_flags(fac, dfac, cfac, pfac)
                    af, ana = photo_flags(arz, darz, carz, parz)
                    wall_va = dva <= thr
                    if use_col:
                        wall_va &= (cva[:, 0] < 0.25) & (cva[:, 1] < 0.25)
                    dec = wall_va & (pva >= T)
                    accs = {
                        ds[:5]: round(float((dec[dsva == ds] == yva[dsva == ds]).mean()), 3)
                        for ds in sorted(set(dsva))
                    }
                    rec = float(dec[yva].mean())
                    if k == 1 or True:
                        print(
                            f"q={q} col={int(use_col)} T={T} k={k}: val kept {wall_va.mean():.3f} rec {rec:.3f} {accs} | fac flag {ff.mean():.3f} na {fna.mean():.3f} | arz flag {af.sum()} na {ana.sum()}"
                        )


if __name__ == "__main__":
    main()
