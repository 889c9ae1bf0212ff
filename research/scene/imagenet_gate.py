"""Gate study on ImageNet EfficientNet-Lite0 features (in_*.npz) instead of the fine-tuned ones.

(a) Mahalanobis OOD to the training patches' classes, threshold a validation quantile;
(b) logistic regression training patches vs facades-spb tiles (half of fac60's photos).
The defect probabilities come from the shipped model's npz of the same tiles.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from ood_gates import fit_feature_gate
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


def lab(d):
    return np.array([Path(p).parent.name for p in d["paths"]])[d["img"]]


def main():
    itr, iva, iarz, ifac = (load(f"in_{n}") for n in ("train800", "val", "arezzo", "fac60"))
    va, arz, fac = load("val"), load("arezzo"), load("fac_tune")
    # fac60 = first 60 photos of fac_tune, same tiles in the same order
    m60 = fac["img"] < 60
    pfac = pos(fac)[m60]
    assert len(pfac) == len(ifac["feats"])
    pva, parz = pos(va), pos(arz)
    yva = np.isin(lab(va), ["crack", "salt_damage"])
    dsva = np.array([Path(p).parts[-3] for p in va["paths"]])[va["img"]]

    def report(name, s_va, s_arz, s_fac, t, T=0.692, k=1):
        wall = {"va": s_va >= t, "arz": s_arz >= t, "fac": s_fac >= t}
        dec = wall["va"] & (pva >= T)
        accs = {
            ds[:5]: round(float((dec[dsva == ds] == yva[dsva == ds]).mean()), 3)
            for ds in sorted(set(dsva))
        }
        ha = np.bincount(arz["img"], weights=wall["arz"] & (parz >= T), minlength=9)
        na = np.bincount(arz["img"], weights=wall["arz"], minlength=9) == 0
        hf = np.bincount(ifac["img"], weights=wall["fac"] & (pfac >= T), minlength=60)
        nf = np.bincount(ifac["img"], weights=wall["fac"], minlength=60) == 0
        print(
            f"{name} T={T} k={k}: val kept {wall['va'].mean():.3f} rec {dec[yva].mean():.3f} {accs} | arz flag {(ha >= k).sum()} na {na.sum()} | fac60 flag {(hf >= k).mean():.3f} na {nf.mean():.3f} wall tiles {wall['fac'].mean():.3f} arz wall tiles {wall['arz'].mean():.3f}"
        )

    for ncomp in (32, 64, 128):
        g = fit_feature_gate(itr["feats"].astype(np.float64), lab(itr), ncomp)
        d_va, d_arz, d_fac = (g.distances(x["feats"].astype(np.float64)) for x in (iva, iarz, ifac))
        for q in (0.95, 0.98, 0.99):
            t = float(np.quantile(d_va, q))
            report(f"maha k={ncomp} q={q}", -d_va, -d_arz, -d_fac, -t)
    rng = np.random.default_rng(0)
    ph = rng.permutation(60)
    fit = np.isin(ifac["img"], ph[:30])
    X = np.vstack([itr["feats"], ifac["feats"][fit]]).astype(np.float64)
    y = np.r_[np.ones(len(itr["feats"])), np.zeros(fit.sum())]
    w = np.where(y == 1, 0.5 / y.mean(), 0.5 / (1 - y.mean()))
    lr = make_pipeline(
        StandardScaler(), PCA(64, random_state=0), LogisticRegression(C=0.1, max_iter=3000)
    )
    lr.fit(X, y, logisticregression__sample_weight=w)
    s = [lr.predict_proba(x["feats"].astype(np.float64))[:, 1] for x in (iva, iarz, ifac)]
    for q in (0.01, 0.02, 0.05):
        t = float(np.quantile(s[0], q))
        report(f"LR q={q} (fac60 incl. its fit half)", *s, t)


if __name__ == "__main__":
    main()
