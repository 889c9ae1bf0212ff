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


def working_image(im: Image.Image, max_side: int = 2016) -> Image.Image:
    """``im`` as RGB, its longer side brought down to ``max_side`` (scene mode's working
    image)."""
    im = im.convert("RGB")
    w, h = im.size
    if max(w, h) > max_side:
        s = max_side / max(w, h)
        im = im.resize((round(w * s), round(h * s)), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return im


class TileScorer:
    """Stage 1 of ``net`` on batches of model-input tiles (uint8 S×S×3): appends each
    batch's class probabilities to ``probs`` and its pooled features (float16) to
    ``feats``; :meth:`add` scores every 32 tiles, :meth:`flush` the rest."""

    def __init__(self, net: torch.nn.Module, mean: tuple, std: tuple, batch_size: int = 32):
        self.net, self.mean, self.std, self.batch_size = net, mean, std, batch_size
        self.batch: list[np.ndarray] = []
        self.probs: list[np.ndarray] = []
        self.feats: list[np.ndarray] = []
        self._pooled: list[torch.Tensor] = []
        net._avg_pooling.register_forward_hook(lambda m, i, o: self._pooled.append(o.flatten(1)))

    def add(self, rgb: np.ndarray) -> None:
        """Queue one tile; score the queue when it holds a batch."""
        self.batch.append(rgb)
        if len(self.batch) >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        """Score the queued tiles."""
        from heritage.model.preprocess import normalise

        if not self.batch:
            return
        self._pooled.clear()
        with torch.inference_mode():
            logits = self.net(normalise(self.batch, self.mean, self.std))
        self.probs.append(torch.softmax(logits, -1).numpy())
        self.feats.append(self._pooled[0].numpy().astype(np.float16))
        self.batch.clear()


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
    from heritage.model.preprocess import to_model_rgb
    from heritage.model.tiling import tile_windows

    loaded = load_model(args.model)
    card = loaded.card
    net = loaded.stage1.eval()
    if args.imagenet:
        from heritage.model.zoo import build_model

        net = build_model("efficientnet_lite0", 1000, pretrained="imagenet").eval()
    scorer = TileScorer(net, card.mean, card.std)
    paths = [Path(p) for p in Path(args.listfile).read_text().split("\n") if p.strip()]
    rows_img, rows_win = [], []

    sizes = []
    for i, p in enumerate(paths):
        im = working_image(load_image(p), args.max_side)
        w, h = im.size
        sizes.append((w, h))
        wins = (
            [(0, 0, w, h)]
            if min(w, h) < 2 * card.input_size
            else tile_windows(w, h, card.input_size, args.overlap)
        )
        for win in wins:
            scorer.add(to_model_rgb(im.crop(win), card.input_size))
            rows_img.append(i)
            rows_win.append(win)
        if i % 50 == 0:
            print(f"{i}/{len(paths)}", file=sys.stderr, flush=True)
    scorer.flush()
    np.savez_compressed(
        args.out,
        paths=np.array([str(p) for p in paths]),
        sizes=np.array(sizes),
        img=np.array(rows_img),
        win=np.array(rows_win),
        probs=np.concatenate(scorer.probs),
        feats=np.concatenate(scorer.feats),
        labels=np.array(card.stage1.labels),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
