"""What the networks see: the one pre-processing of evaluation, inference and training.

Defined once here and used by inference (:mod:`heritage.model.predict`, the scene mode),
training's validation and test sets (:mod:`heritage.training.data`) and the building of
stage-2 inputs, so that a model sees at inference exactly the pixels it was validated on:

* :func:`eval_geometry`: Resize of the shorter side to ``size`` (bilinear, antialiased),
  then CenterCrop(size);
* :func:`eval_transform`: RGB, that geometry, ToTensor, Normalize(mean, std) (PIL image ->
  normalised 3×size×size tensor);
* :func:`to_model_rgb` + :func:`normalise`: the same in two steps on uint8 arrays (the
  model-input RGB image is also what the Grad-CAM overlay is drawn on).

Also :func:`resolve_device`, the one answer to ``--device auto|cpu|cuda``.
torch and torchvision are imported inside the functions that use them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from heritage.kernel.errors import ModelError

if TYPE_CHECKING:
    import torch
    from PIL import Image

#: ImageNet channel statistics, the normalisation of every pretrained backbone here
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def to_rgb(im: Image.Image) -> Image.Image:
    """The image in RGB mode (a plain ``convert("RGB")`` unless it already is)."""
    return im if im.mode == "RGB" else im.convert("RGB")


def eval_geometry(size: int) -> Any:
    """The geometric part of the evaluation transform: Resize(shorter side) + CenterCrop."""
    from torchvision import transforms as T

    return T.Compose([T.Resize(size, antialias=True), T.CenterCrop(size)])


def eval_transform(
    size: int,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> Any:
    """The transform of evaluation and inference (PIL image -> normalised 3×size×size).

    RGB conversion, Resize of the shorter side to ``size`` (bilinear, antialiased),
    CenterCrop(size), ToTensor, Normalize(mean, std). EXIF orientation is applied when
    the file is opened (:func:`heritage.model.predict.load_image`).
    """
    from torchvision import transforms as T

    return T.Compose(
        [T.Lambda(to_rgb), eval_geometry(size), T.ToTensor(), T.Normalize(list(mean), list(std))]
    )


def to_model_rgb(image: Image.Image, size: int) -> np.ndarray:
    """The photo as the model sees it, before normalisation: uint8 size×size×3."""
    return np.asarray(eval_geometry(size)(to_rgb(image)), dtype=np.uint8).copy()


def normalise(
    rgbs: Sequence[np.ndarray] | np.ndarray,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> torch.Tensor:
    """uint8 H×W×3 images -> float N×3×H×W, ``(x/255 - mean)/std`` (= ToTensor + Normalize)."""
    import torch

    arr = np.stack([np.asarray(r, dtype=np.uint8) for r in rgbs])
    x = torch.from_numpy(arr).permute(0, 3, 1, 2).float().div(255.0)
    m = torch.tensor(list(mean), dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(list(std), dtype=torch.float32).view(1, 3, 1, 1)
    return (x - m) / s


def resolve_device(device: object = "auto") -> str:
    """The torch device name for ``--device``: ``"auto"`` (or None) gives ``"cuda"`` when a
    GPU is available, else ``"cpu"``; an unavailable CUDA raises ModelError.

    Accepts a name or a ``torch.device``; ``torch.device(resolve_device(x))`` for a device.
    """
    import torch

    name = str(device or "auto").lower()
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError("device 'cuda' was asked for but CUDA is not available; use --device cpu")
    return name
