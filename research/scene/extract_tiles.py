"""Stage-1 tile probabilities, pooled features and colour statistics, cached for the gate study.

Research helper (not product code): for every image of a list, cuts the tiles that the
default scene mode would cut (:func:`heritage.model.tiling.tile_windows` on the working image),
runs stage 1 of a model once per tile (no CAM), and stores per tile the window, the
stage-1 class probabilities, the 1280-d pooled features (float16) and the colour
statistics of :func:`heritage.model.scene.colour_stats`. Patches (no larger than a tile) are one
tile. Output: one ``.npz`` per image list.

    .venv/bin/python research/scene/extract_tiles.py LIST.txt OUT.npz [--model DIR]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("listfile")
    ap.add_argument("out")
    ap.add_argument("--model", default=None)
    ap.add_argument("--max-side", type=int, default=2016)
    ap.add_argument("--overlap", type=float, default=0.5)
    ap.add_argument("--imagenet", action="store_true", help="ImageNet EfficientNet-Lite0 instead")
    args = ap.parse_args()

    from heritage.model.card import load_model
    from heritage.model.predict import load_image
    from heritage.model.preprocess import normalise, to_model_rgb
    from heritage.model.tiling import tile_windows

    loaded = load_model(args.model)
    card = loaded.card
    net = loaded.stage1.eval()
    if args.imagenet:
        from heritage.model.zoo import build_model

        net = build_model("efficientnet_lite0", 1000, pretrained="imagenet").eval()
    feats: list[torch.Tensor] = []
    net._avg_pooling.register_forward_hook(lambda m, i, o: feats.append(o.flatten(1)))
    paths = [Path(p) for p in Path(args.listfile).read_text().split("\n") if p.strip()]
    rows_img, rows_win, probs, fvec = [], [], [], []
    batch: list[np.ndarray] = []
    meta: list[tuple[int, tuple[int, int, int, int]]] = []

    def flush() -> None:
        if not batch:
            return
        feats.clear()
        with torch.inference_mode():
            logits = net(normalise(batch, card.mean, card.std))
        probs.append(torch.softmax(logits, -1).numpy())
        fvec.append(feats[0].numpy().astype(np.float16))
        for i, w in meta:
            rows_img.append(i)
            rows_win.append(w)
        batch.clear()
        meta.clear()

    sizes = []
    for i, p in enumerate(paths):
        im = load_image(p)
        w, h = im.size
        if max(w, h) > args.max_side:
            s = args.max_side / max(w, h)
            im = im.resize(
                (round(w * s), round(h * s)), Image.Resampling.BILINEAR, reducing_gap=2.0
            )
        w, h = im.size
        sizes.append((w, h))
        wins = (
            [(0, 0, w, h)]
            if min(w, h) < 2 * card.input_size
            else tile_windows(w, h, card.input_size, args.overlap)
        )
        for win in wins:
            batch.append(to_model_rgb(im.crop(win), card.input_size))
            meta.append((i, win))
            if len(batch) >= 32:
                flush()
        if i % 50 == 0:
            print(f"{i}/{len(paths)}", file=sys.stderr, flush=True)
    flush()
    np.savez_compressed(
        args.out,
        paths=np.array([str(p) for p in paths]),
        sizes=np.array(sizes),
        img=np.array(rows_img),
        win=np.array(rows_win),
        probs=np.concatenate(probs),
        feats=np.concatenate(fvec),
        labels=np.array(card.stage1.labels),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
