"""ImageNet-feature learned gate with the exif-gps negatives, as a veto on candidate tiles.

Fit on in_train800 (positives) vs in_fac60 fit half + in_exif_neg (negatives); the
threshold is a validation quantile. Reads: validation patches, the other fac60 half,
Arezzo (report only). Combined with the fine-tuned gate of choose_rule (q=0.01).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from heritage.model.wallgate import fit_wall_gate, with_quantile_threshold

R = Path("runs/scene")


def load(n):
    return dict(np.load(R / f"{n}.npz"))


def pos(d):
    labs = list(d["labels"])
    return d["probs"][:, labs.index("crack")] + d["probs"][:, labs.index("salt_damage")]


def main(T=0.692):
    itr, iva, iarz, ifac, ineg = (
        load(f"in_{n}") for n in ("train800", "val", "arezzo", "fac60", "exif_neg")
    )
    va, arz, fac = load("val"), load("arezzo"), load("fac_tune")
    m60 = fac["img"] < 60
    pfac, pva, parz = pos(fac)[m60], pos(va), pos(arz)
    rng = np.random.default_rng(0)
    ph = rng.permutation(60)
    fit = np.isin(ifac["img"], ph[:30])
    yva = np.isin(np.array([Path(p).parent.name for p in va["paths"]]), ["crack", "salt_damage"])[
        va["img"]
    ]
    dsva = np.array([Path(p).parts[-3] for p in va["paths"]])[va["img"]]
    scene = np.vstack([ifac["feats"][fit], ineg["feats"]]).astype(np.float64)
    for c in (0.1, 0.01):
        g0 = fit_wall_gate(itr["feats"].astype(np.float64), scene, 64, c)
        for q in (0.005, 0.01, 0.02, 0.05):
            g = with_quantile_threshold(g0, iva["feats"].astype(np.float64), q)
            wva, warz, wfac = (g.is_wall(x["feats"].astype(np.float64)) for x in (iva, iarz, ifac))
            dec = wva & (pva >= T)
            accs = {
                ds[:5]: round(float((dec[dsva == ds] == yva[dsva == ds]).mean()), 3)
                for ds in sorted(set(dsva))
            }
            ha = np.bincount(arz["img"], weights=warz & (parz >= T), minlength=9)
            hf = np.bincount(ifac["img"], weights=wfac & (pfac >= T) & ~fit, minlength=60)
            print(
                f"C={c} q={q}: val kept {wva.mean():.3f} rec {dec[yva].mean():.3f} {accs} | arz flagged {(ha >= 1).sum()} {ha.astype(int).tolist()} | fac60-read flagged {(hf[ph[30:]] >= 1).sum()}/30"
            )


if __name__ == "__main__":
    main()
