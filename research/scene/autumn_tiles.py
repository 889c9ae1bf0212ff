"""Autumn-foliage negatives for the wall gate, made from green vegetation tiles (issue 19, third round).

The 0.7.0 gate's negatives hold green vegetation only, and it lets yellow, orange and brown
foliage through as "wall". This helper takes the vegetation tiles of the non-Arezzo exif-gps
photos (``exif_neg.npz``: wisteria and leaves, leaf litter with phlox, a rain-forest waterfall
in two crops, a tree beside a block of flats, three thumbnails) whose vegetation share (the ExG
colour rule of ``ood_gates.colour_fractions``) is at least ``--min-veg``, at the scene grid's
scale and at twice that scale (foliage further away), recolours their vegetation pixels into
autumn colours, and caches stage-1 probabilities and pooled features of each recoloured tile
exactly as ``extract_tiles.py`` does (float32 stage 1, one forward pass, no CAM).

The facades-spb tuning photos are not used as a source: their "vegetation" tiles (ExG) are
nearly all green-painted walls, awnings, shop signs and flower boxes (St Petersburg streets
hold very few trees), and recolouring those would teach the gate that brown walls are not walls.

Five variants per tile (seeded): yellow, orange, red-brown, dry (olive, desaturated, darker) and
mixed (a low-frequency random blend of green, yellow, orange and brown, as a turning tree looks).
Only the pixels whose hue is green (55-175 degrees, saturation >= 0.12) are recoloured, with a
softened mask, so flowers, sky and walls in the same tile keep their colours.

No Arezzo photo, held-out facade or test patch is read here.

    .venv/bin/python research/scene/autumn_tiles.py runs/scene/autumn.npz [--png sheet.png]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

R = Path("runs/scene")
#: (name, target hue in degrees, saturation factor, value factor)
VARIANTS = (
    ("yellow", 50.0, 1.0, 1.0),
    ("orange", 30.0, 1.1, 0.95),
    ("redbrown", 15.0, 0.8, 0.75),
    ("dry", 45.0, 0.45, 0.85),
    ("mixed", None, 1.0, 0.92),
)


def hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Vectorised HSV (h in degrees, s and v in 0..1) to float RGB in 0..1 (H×W×3)."""
    h = (h % 360.0) / 60.0
    i = np.floor(h).astype(int) % 6
    f = h - np.floor(h)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    table = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    out = np.zeros((*h.shape, 3), np.float32)
    for k, (r, g, b) in enumerate(table):
        m = i == k
        out[m, 0], out[m, 1], out[m, 2] = r[m], g[m], b[m]
    return out


def autumn(rgb: np.ndarray, variant: tuple, rng: np.random.Generator) -> np.ndarray:
    """``rgb`` (uint8 H×W×3) with its green vegetation recoloured as ``variant``."""
    name, hue, sat_f, val_f = variant
    hsv = np.asarray(Image.fromarray(rgb).convert("HSV"), dtype=np.float32)
    h, s, v = hsv[..., 0] * 360.0 / 255.0, hsv[..., 1] / 255.0, hsv[..., 2] / 255.0
    mask = ((h >= 55) & (h <= 175) & (s >= 0.12) & (v >= 0.06)).astype(np.uint8) * 255
    soft = Image.fromarray(mask).filter(ImageFilter.GaussianBlur(1.5))
    m = np.asarray(soft, dtype=np.float32)[..., None] / 255.0
    n_h, n_w = h.shape
    if hue is None:  # low-frequency field of target hues; some leaves stay green
        grid = rng.choice([110.0, 50.0, 35.0, 20.0], size=(6, 6), p=[0.2, 0.3, 0.3, 0.2])
        field = Image.fromarray(grid.astype(np.float32), mode="F").resize(
            (n_w, n_h), Image.Resampling.BILINEAR
        )
        target = np.asarray(field, dtype=np.float32)
    else:
        target = np.full_like(h, hue + rng.uniform(-5, 5))
    new_h = target + (h - 110.0) * 0.25
    new_s = np.clip(s * sat_f * rng.uniform(0.9, 1.1), 0, 1)
    new_v = np.clip(v * val_f * rng.uniform(0.9, 1.1), 0, 1)
    new = hsv_to_rgb(new_h, new_s, new_v)
    out = m * new + (1 - m) * (rgb.astype(np.float32) / 255.0)
    return np.clip(out * 255.0 + 0.5, 0, 255).astype(np.uint8)


def vegetation_tiles(min_veg: float) -> list[tuple[int, tuple[int, ...], int]]:
    """``(exif_neg photo index, window, scale)`` of the vegetation tiles: the scene grid's
    tiles (scale 1, from ``exif_neg.npz``) and windows twice the tile size with stride one
    tile (scale 2: foliage seen from further away, as on a hillside or across a park),
    each kept when its vegetation share reaches ``min_veg``."""
    from extract_tiles import working_image
    from ood_gates import colour_fractions

    from heritage.model.predict import load_image
    from heritage.model.tiling import tile_windows

    d = dict(np.load(R / "exif_neg.npz"))
    cache = R / "exif_neg.colour.npy"
    if cache.exists():
        col = np.load(cache)
    else:  # same computation as gate_study.colour
        col = np.zeros((len(d["img"]), 2), np.float32)
        cur, im = -1, None
        for j, (i, win) in enumerate(zip(d["img"], d["win"], strict=True)):
            if i != cur:
                im, cur = working_image(load_image(d["paths"][i])), i
            col[j] = colour_fractions(np.asarray(im.crop(tuple(win)).resize((112, 112))))
        np.save(cache, col)
    out = [
        (int(d["img"][j]), tuple(int(v) for v in d["win"][j]), 1)
        for j in np.flatnonzero(col[:, 0] >= min_veg)
    ]
    for i, (w, h) in enumerate(d["sizes"]):
        if min(w, h) < 448:
            continue
        im = working_image(load_image(d["paths"][i]))
        for win in tile_windows(int(w), int(h), 448, 0.5):
            rgb = np.asarray(im.crop(win).resize((112, 112)))
            if colour_fractions(rgb)[0] >= min_veg:
                out.append((i, tuple(int(v) for v in win), 2))
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--min-veg", type=float, default=0.1)
    ap.add_argument("--png", default=None, help="write a contact sheet of some variants")
    args = ap.parse_args()

    from extract_tiles import TileScorer, working_image

    from heritage.model.card import load_model
    from heritage.model.predict import load_image
    from heritage.model.preprocess import to_model_rgb

    loaded = load_model(None)
    card, net = loaded.card, loaded.stage1.eval()
    scorer = TileScorer(net, card.mean, card.std)
    rng = np.random.default_rng(19)
    rows: dict[str, list] = {k: [] for k in ("img", "scale", "path", "win", "variant")}
    sheet = []

    d = dict(np.load(R / "exif_neg.npz"))
    tiles = vegetation_tiles(args.min_veg)
    print(f"{len(tiles)} vegetation windows", file=sys.stderr, flush=True)
    cur, im = None, None
    for n, (i, win, scale) in enumerate(tiles):
        if i != cur:
            im, cur = working_image(load_image(d["paths"][i])), i
        base = to_model_rgb(im.crop(win), card.input_size)
        for k, var in enumerate(VARIANTS):
            rgb = autumn(base, var, rng)
            scorer.add(rgb)
            if len(sheet) < 60 and n % 5 == 0:
                sheet.append(rgb)
            for key, val in zip(rows, (i, scale, str(d["paths"][i]), win, k), strict=True):
                rows[key].append(val)
        if n % 50 == 0:
            print(f"{n}/{len(tiles)}", file=sys.stderr, flush=True)
    scorer.flush()
    np.savez_compressed(
        args.out,
        img=np.array(rows["img"]),
        scale=np.array(rows["scale"]),
        paths=np.array(rows["path"]),
        win=np.array(rows["win"]),
        variant=np.array(rows["variant"]),
        variants=np.array([v[0] for v in VARIANTS]),
        probs=np.concatenate(scorer.probs),
        feats=np.concatenate(scorer.feats),
        labels=np.array(card.stage1.labels),
    )
    if args.png and sheet:
        cols = 10
        s = card.input_size
        canvas = Image.new("RGB", (cols * s, ((len(sheet) + cols - 1) // cols) * s))
        for i, rgb in enumerate(sheet):
            canvas.paste(Image.fromarray(rgb), ((i % cols) * s, (i // cols) * s))
        canvas.save(args.png)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
