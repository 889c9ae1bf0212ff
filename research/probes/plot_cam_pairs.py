"""Figure: Dais test patches with their crack mask and the heat maps of two CAM settings.

One row per patch: the photo with the mask's outline, then for each ``LAYER:METHOD``
the overlay the model would write, with the heat map's maximum marked (a ring within
the pointing-game tolerance of the crack is a hit, drawn green; a miss is drawn red).

    .venv/bin/python research/probes/plot_cam_pairs.py --pairs _blocks.10:gradcam,_blocks.14:hirescam \
        --rows 5 --out docs/img/cam_methods_dais.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from heritage.model.card import load_model
from heritage.model.explain import overlay
from heritage.model.metrics import pointing_game
from heritage.model.predict import load_image
from heritage.model.preprocess import normalise, to_model_rgb

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
from select_cam import dais_patches, heat_maps  # noqa: E402


def main() -> int:
    """Draw the figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=ROOT / "models" / "heritage-default")
    ap.add_argument("--run-dir", type=Path, default=ROOT.parent / "runs" / "heritage-ft2-run")
    ap.add_argument("--pairs", default="_blocks.10:gradcam,_blocks.14:hirescam")
    ap.add_argument("--rows", type=int, default=4, help="test patches shown (first by name)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    loaded = load_model(args.model)
    card, net = loaded.card, loaded.stage1.float().eval()
    positive = card.positive_indices
    items, masks = dais_patches(args.run_dir, card.input_size)
    test = sorted((it.path.name, i) for i, it in enumerate(items) if it.split == "test")
    chosen = [i for _, i in test[: args.rows]]
    rgbs = [to_model_rgb(load_image(items[i].path), card.input_size) for i in chosen]
    x = normalise(rgbs, card.mean, card.std)
    pairs = [tuple(p.split(":")) for p in args.pairs.split(",")]
    maps = {(layer, method): heat_maps(net, x, layer, method, positive) for layer, method in pairs}
    fig, axes = plt.subplots(
        len(chosen), 1 + len(pairs), figsize=(3 * (1 + len(pairs)), 3 * len(chosen))
    )
    axes = np.atleast_2d(axes)
    for r, i in enumerate(chosen):
        axes[r, 0].imshow(rgbs[r])
        axes[r, 0].contour(masks[i], levels=[0.5], colors="yellow", linewidths=0.8)
        axes[r, 0].set_title(f"{items[i].path.name}\ncrack mask", fontsize=8)
        for c, pair in enumerate(pairs, start=1):
            cam = maps[pair][r]
            hit = pointing_game(cam, masks[i])
            y, xx = np.unravel_index(int(np.argmax(cam)), cam.shape)
            axes[r, c].imshow(overlay(rgbs[r], cam, card.stage2_cam_alpha))
            axes[r, c].plot(xx, y, "o", ms=14, mfc="none", mec="lime" if hit else "red", mew=2)
            axes[r, c].set_title(f"{pair[1]} on {pair[0]}: {'hit' if hit else 'miss'}", fontsize=8)
    for ax in axes.ravel():
        ax.set_axis_off()
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=64)
    print(args.out)
    return 0


if __name__ == "__main__":
    torch.set_num_threads(2)
    sys.exit(main())
