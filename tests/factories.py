"""What the tests build instead of reading real data: tiny models and generated inputs.

The one place where a test gets a model: :func:`tiny_card` writes the card,
:func:`tiny_nets` the random networks (seed 0, so every tiny model with the same
architectures has the same weights), :func:`tiny_model_dir` saves both as a model
folder. ``tests/conftest.py`` wraps them in fixtures; test modules import them as
``from factories import ...`` (``tests/`` is on ``sys.path`` through the conftest).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

    from heritage.model.card import ModelCard

#: stage-1 labels of the tiny models
LABELS = ("crack", "no_crack", "salt_damage")
#: the labels a tiny model counts as defects
POSITIVES = ("crack", "salt_damage")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# ------------------------------------------------------------------ tiny models


def tiny_card(
    *,
    model_id: str = "tiny",
    version: str = "0.0.1",
    input_size: int = 64,
    labels: tuple[str, ...] = LABELS,
    positives: tuple[str, ...] = POSITIVES,
    stage1: str = "mobilenet_v3_small",
    stage2: str | None = "resnet18",
    threshold: float = 0.5,
    **over,
) -> ModelCard:
    """A model card for random networks: ``stage1`` with one output per label, ``stage2``
    (one logit; ``None``: stage 1 decides), Grad-CAM on ``features.12``; ``over``
    replaces any other field (``mean``, ``training``, ``decision_stage``...)."""
    from heritage.model.card import ModelCard, StageCard

    card = ModelCard(
        model_id=model_id,
        version=version,
        input_size=input_size,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        positive_labels=positives,
        stage1=StageCard(stage1, "", "", len(labels), labels),
        stage2=StageCard(stage2, "", "", 1, ("conservation_needed",)) if stage2 else None,
        cam_layer="features.12",
        cam_method="gradcam",
        threshold=threshold,
        decision_stage="stage2" if stage2 else "stage1",
    )
    return dataclasses.replace(card, **over)


def tiny_nets(card: ModelCard) -> tuple[torch.nn.Module, torch.nn.Module | None]:
    """Random networks for ``card`` (seed 0), in eval mode; stage 2 is ``None`` when the
    card has none."""
    import torch

    from heritage.model.zoo import build_model

    torch.manual_seed(0)
    s1 = build_model(card.stage1.arch, card.stage1.num_outputs).eval()
    s2 = None
    if card.stage2 is not None:
        s2 = build_model(card.stage2.arch, card.stage2.num_outputs).eval()
    return s1, s2


def tiny_model_dir(path: Path, card: ModelCard | None = None, **card_args) -> Path:
    """Save a random tiny model folder at ``path``: ``card``, else
    ``tiny_card(**card_args)``; returns ``path``."""
    from heritage.model.card import save_model

    card = card if card is not None else tiny_card(**card_args)
    s1, s2 = tiny_nets(card)
    save_model(path, card, s1, s2)
    return path


# ------------------------------------------------------------------ generated inputs


def geotagged(
    path: Path,
    lat: float,
    lon: float,
    alt: float | None = None,
    size: tuple[int, int] = (16, 12),
    **save,
) -> Path:
    """A plain JPEG (or PNG) of ``size`` px with a GPS position written by Pillow."""
    from PIL import Image
    from PIL.TiffImagePlugin import IFDRational as R

    gps = {
        1: "N" if lat >= 0 else "S",
        2: (R(int(abs(lat) * 1e6), 1_000_000), R(0, 1), R(0, 1)),
        3: "E" if lon >= 0 else "W",
        4: (R(int(abs(lon) * 1e6), 1_000_000), R(0, 1), R(0, 1)),
    }
    if alt is not None:
        gps.update({5: 1 if alt < 0 else 0, 6: R(int(abs(alt) * 100), 100)})
    ex = Image.Exif()
    ex[0x8825] = gps
    shade = int(abs(lat * 1000)) % 200
    Image.new("RGB", size, (shade, 90, 60)).save(path, exif=ex, **save)
    return path


def geotagged_folder(folder: Path, n: int = 3, names: tuple[str, ...] = ()) -> Path:
    """``folder`` with ``n`` (or one per name of ``names``) geotagged JPEGs about 14 m
    apart in Arezzo; returns ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    names = names or tuple(f"p{i}.jpg" for i in range(n))
    for i, name in enumerate(names):
        geotagged(folder / name, 43.4630 + i * 1e-4, 11.8800 + i * 1e-4)
    return folder


def image_folder(root: Path, name: str, n: int = 12, groups: bool = False, seed: int = 0) -> Path:
    """``root/name/{crack,no_crack}/*.png`` (crack = dark line); ``groups``: a manifest."""
    from PIL import Image

    rows = []
    for c, cls in enumerate(("crack", "no_crack")):
        for i in range(n):
            rng = np.random.default_rng(seed * 1000 + c * 100 + i)
            a = rng.normal(150, 20, (40, 40, 3)).clip(0, 255).astype(np.uint8)
            if cls == "crack":
                x = int(rng.integers(5, 32))
                a[:, x : x + 3] = 20
            path = root / name / cls / f"{cls}_{i:02d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(a).save(path)
            rows.append(f"{cls}/{path.name},{cls},photo{i // 3}")
    if groups:
        (root / name / "manifest.csv").write_text("file,label,source_group\n" + "\n".join(rows))
    return root / name
