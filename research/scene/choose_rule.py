"""Choose the scene settings: learned wall gate (fine-tuned stage-1 features) x decision rule.

Fit: training patches (train.npz) vs tiles of half the facades-spb tuning photos (seeded
split by photo) + the non-Arezzo exif-gps photos (exif_neg.npz). Read: the other half of
the tuning photos, the validation patches, and - reported only, never used to choose -
the nine Arezzo demo photos. The rule (written before the grid ran): among settings that
keep >= 98 % of the validation patches as wall and lose at most 1 point of validation
recall against no gate at the card's threshold, take the fewest flagged tuning photos;
ties: the lower tile threshold, then the smaller min_flagged_tiles, then the smaller
quantile (more validation patches kept).
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


def photo_counts(d, mask, weights):
    n = len(d["paths"])
    return np.bincount(d["img"], weights=weights & mask, minlength=n)


def main():
    tr, va, fac, arz, neg = (load(n) for n in ("train", "val", "fac_tune", "arezzo", "exif_neg"))
    rng = np.random.default_rng(0)
    photos = rng.permutation(len(fac["paths"]))
    fit_ph = photos[: len(photos) // 2]
    fit = np.isin(fac["img"], fit_ph)
    read_ph = np.setdiff1d(np.arange(len(fac["paths"])), fit_ph)
    scene = np.vstack([fac["feats"][fit], neg["feats"]]).astype(np.float64)
    gate0 = fit_wall_gate(tr["feats"].astype(np.float64), scene, 64, 0.1)
    yva = np.isin(np.array([Path(p).parent.name for p in va["paths"]]), ["crack", "salt_damage"])[
        va["img"]
    ]
    dsva = np.array([Path(p).parts[-3] for p in va["paths"]])[va["img"]]
    pva, pfac, parz = pos(va), pos(fac), pos(arz)
    base_rec = float((pva[yva] >= 0.692).mean())
    rows = []
    for q in (0.005, 0.01, 0.02):
        g = with_quantile_threshold(gate0, va["feats"].astype(np.float64), q)
        wva, wfac, warz = (g.is_wall(x["feats"].astype(np.float64)) for x in (va, fac, arz))
        for T in (0.692, 0.8, 0.9):
            for k in (1, 2):
                dec = wva & (pva >= T)
                rec = float(dec[yva].mean())
                hf = photo_counts(fac, wfac, pfac >= T)[read_ph]
                nf = photo_counts(fac, wfac, np.ones_like(wfac))[read_ph]
                ha = photo_counts(arz, warz, parz >= T)
                na = photo_counts(arz, warz, np.ones_like(warz))
                accs = {
                    ds[:5]: round(float((dec[dsva == ds] == yva[dsva == ds]).mean()), 3)
                    for ds in sorted(set(dsva))
                }
                r = dict(
                    q=q,
                    T=T,
                    k=k,
                    thr=g.threshold,
                    kept=float(wva.mean()),
                    rec=rec,
                    fac_flag=int((hf >= k).sum()),
                    fac_n=len(read_ph),
                    fac_na=int((nf == 0).sum()),
                    arz_flag=int((ha >= k).sum()),
                    arz_na=int((na == 0).sum()),
                    accs=accs,
                )
                rows.append(r)
                print(r)
    ok = [r for r in rows if r["kept"] >= 0.98 and r["rec"] >= base_rec - 0.01]
    best = min(ok, key=lambda r: (r["fac_flag"], r["T"], r["k"], r["q"]))
    print("baseline val recall", base_rec)
    print("CHOSEN", best)


if __name__ == "__main__":
    main()


def show_arezzo(q=0.01, T=0.692, png="/tmp/arz_gate.png"):
    """Draw the Arezzo tiles: flagged (red), not wall (grey cross) under the chosen gate."""
    from PIL import Image, ImageDraw

    tr, fac, arz, neg, va = (load(n) for n in ("train", "fac_tune", "arezzo", "exif_neg", "val"))
    rng = np.random.default_rng(0)
    photos = rng.permutation(len(fac["paths"]))
    fit = np.isin(fac["img"], photos[: len(photos) // 2])
    scene = np.vstack([fac["feats"][fit], neg["feats"]]).astype(np.float64)
    g = with_quantile_threshold(
        fit_wall_gate(tr["feats"].astype(np.float64), scene, 64, 0.1),
        va["feats"].astype(np.float64),
        q,
    )
    s = g.scores(arz["feats"].astype(np.float64))
    p = pos(arz)
    out = Image.new("RGB", (640 * 3, 480 * 3))
    for i, path in enumerate(arz["paths"]):
        im = Image.open(path).convert("RGB")
        dr = ImageDraw.Draw(im)
        for j in np.flatnonzero(arz["img"] == i):
            w = [int(v) for v in arz["win"][j]]
            if s[j] >= g.threshold and p[j] >= T:
                dr.rectangle(w, outline=(255, 0, 0), width=3)
                dr.text((w[0] + 4, w[1] + 4), f"{p[j]:.2f}/{s[j]:.2f}", fill=(255, 255, 0))
            elif s[j] >= g.threshold:
                dr.rectangle(
                    [w[0] + 100, w[1] + 100, w[0] + 124, w[1] + 124], outline=(0, 255, 0), width=2
                )
        out.paste(im, ((i % 3) * 640, (i // 3) * 480))
    out.save(png)
