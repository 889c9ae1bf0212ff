"""Learned gate study: logistic regression 'training wall patch' vs 'facades-spb tile'.

Fit on training patches (positives) and the tiles of half of the facades-spb tuning
photos (negatives, split by photo with a seeded shuffle); read on the other half, the
Arezzo photos and the validation patches.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

R = Path("runs/scene")


def load(n):
    return dict(np.load(R / f"{n}.npz"))


def pos(d):
    labs = list(d["labels"])
    return d["probs"][:, labs.index("crack")] + d["probs"][:, labs.index("salt_damage")]


def main(C=0.1, ncomp=64):
    tr, va, fac, arz = load("train"), load("val"), load("fac_tune"), load("arezzo")
    rng = np.random.default_rng(0)
    photos = rng.permutation(len(fac["paths"]))
    fit_ph = set(photos[: len(photos) // 2].tolist())
    fmask = np.array([i in fit_ph for i in fac["img"]])
    X = np.vstack([tr["feats"], fac["feats"][fmask]]).astype(np.float64)
    y = np.r_[np.ones(len(tr["feats"])), np.zeros(fmask.sum())]
    w = np.where(y == 1, 0.5 / y.mean(), 0.5 / (1 - y.mean()))
    clf = make_pipeline(
        StandardScaler(), PCA(ncomp, random_state=0), LogisticRegression(C=C, max_iter=2000)
    )
    clf.fit(X, y, logisticregression__sample_weight=w)
    s_va = clf.predict_proba(va["feats"].astype(np.float64))[:, 1]
    s_fac = clf.predict_proba(fac["feats"].astype(np.float64))[:, 1]
    s_arz = clf.predict_proba(arz["feats"].astype(np.float64))[:, 1]
    dsva = np.array([Path(p).parts[-3] for p in va["paths"]])[va["img"]]
    yva = np.isin(np.array([Path(p).parent.name for p in va["paths"]]), ["crack", "salt_damage"])[
        va["img"]
    ]
    pva, pfac, parz = pos(va), pos(fac), pos(arz)
    hold = ~fmask
    for q in [0.005, 0.01, 0.02, 0.05]:
        t = float(np.quantile(s_va, q))
        for T in [0.692, 0.8, 0.9]:
            for k in [1, 2]:

                def ph(d, s, p, m=None):
                    wall = s >= t
                    hit = wall & (p >= T)
                    n = len(d["paths"])
                    nh = np.bincount(d["img"], weights=hit if m is None else hit & m, minlength=n)
                    nw = np.bincount(d["img"], weights=wall if m is None else wall & m, minlength=n)
                    nt = np.bincount(
                        d["img"], weights=np.ones(len(s)) if m is None else m, minlength=n
                    )
                    keep = nt > 0
                    return (nh[keep] >= k).mean(), (nw[keep] == 0).mean(), (nh[keep] >= k).sum()

                ff, fna, _ = ph(fac, s_fac, pfac, hold)
                af, ana, an = ph(arz, s_arz, parz)
                dec = (s_va >= t) & (pva >= T)
                accs = {
                    ds[:5]: round(float((dec[dsva == ds] == yva[dsva == ds]).mean()), 3)
                    for ds in sorted(set(dsva))
                }
                print(
                    f"q={q} t={t:.3f} T={T} k={k}: val kept {(s_va >= t).mean():.3f} rec {dec[yva].mean():.3f} {accs} | fac-hold flag {ff:.3f} na {fna:.3f} | arz flag {an} na {ana:.2f} | fac tiles wall {(s_fac[hold] >= t).mean():.3f}"
                )


if __name__ == "__main__":
    main(*(float(a) for a in sys.argv[1:2]))


def combined(C=0.1, ncomp=64, q=0.01, T=0.692, veg_max=(1.0, 0.5, 0.35, 0.25, 0.15), sky_max=1.0):
    """The learned gate plus a vegetation veto (colour), on the same reads."""
    import gate_study as g

    tr, va, fac, arz = load("train"), load("val"), load("fac_tune"), load("arezzo")
    rng = np.random.default_rng(0)
    photos = rng.permutation(len(fac["paths"]))
    fit_ph = set(photos[: len(photos) // 2].tolist())
    fmask = np.array([i in fit_ph for i in fac["img"]])
    X = np.vstack([tr["feats"], fac["feats"][fmask]]).astype(np.float64)
    y = np.r_[np.ones(len(tr["feats"])), np.zeros(fmask.sum())]
    w = np.where(y == 1, 0.5 / y.mean(), 0.5 / (1 - y.mean()))
    clf = make_pipeline(
        StandardScaler(), PCA(ncomp, random_state=0), LogisticRegression(C=C, max_iter=2000)
    )
    clf.fit(X, y, logisticregression__sample_weight=w)
    s = {
        n: clf.predict_proba(d["feats"].astype(np.float64))[:, 1]
        for n, d in [("va", va), ("fac", fac), ("arz", arz)]
    }
    col = {
        "va": g.colour(va, "val"),
        "fac": g.colour(fac, "fac_tune"),
        "arz": g.colour(arz, "arezzo"),
    }
    t = float(np.quantile(s["va"], q))
    yva = np.isin(np.array([Path(p).parent.name for p in va["paths"]]), ["crack", "salt_damage"])[
        va["img"]
    ]
    dsva = np.array([Path(p).parts[-3] for p in va["paths"]])[va["img"]]
    for vm in veg_max:
        wall = {k: (s[k] >= t) & (col[k][:, 0] <= vm) for k in s}
        dec = wall["va"] & (pos(va) >= T)
        hit_a = wall["arz"] & (pos(arz) >= T)
        na = np.bincount(arz["img"], weights=hit_a, minlength=9)
        accs = {
            ds[:5]: round(float((dec[dsva == ds] == yva[dsva == ds]).mean()), 3)
            for ds in sorted(set(dsva))
        }
        print(
            f"veg<={vm}: val kept {wall['va'].mean():.3f} rec {dec[yva].mean():.3f} {accs} | arz flagged {(na >= 1).sum()} tiles {hit_a.sum()} | arz na {(np.bincount(arz['img'], weights=wall['arz'], minlength=9) == 0).sum()}"
        )
    # which Arezzo tiles still flag
    hit_a = (s["arz"] >= t) & (pos(arz) >= T)
    for j in np.flatnonzero(hit_a):
        print(
            Path(arz["paths"][arz["img"][j]]).name,
            arz["win"][j],
            "gate %.3f p %.3f veg %.2f sky %.2f" % (s["arz"][j], pos(arz)[j], *col["arz"][j]),
        )
