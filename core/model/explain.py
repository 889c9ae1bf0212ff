"""Grad-CAM explanations for the stage-1 classifier (pytorch-grad-cam underneath).

One :class:`CamExplainer` wraps one pytorch-grad-cam object built once for a model and
a target layer (a module path such as ``"features.12"``, resolved with
``model.get_submodule``) and reused for every batch; its forward hooks are removed by
:meth:`CamExplainer.close` (or on leaving the ``with`` block).

A heat map that comes back empty (all zero, constant, or NaN: pytorch-grad-cam
min-max scales every map, so a constant map becomes all zero) is recomputed with the
fallback method; ``CamResult.methods`` records, per image, the method whose map was
kept. If the fallback is empty too the map is all zeros and ``CamResult.empty`` is
True for that image.

This module imports torch and pytorch-grad-cam at the top: import it lazily from
anything that light commands load.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from pytorch_grad_cam import (
    EigenCAM,
    GradCAM,
    GradCAMPlusPlus,
    HiResCAM,
    LayerCAM,
    XGradCAM,
)
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from heritage.kernel.errors import ModelError, OutputNotWritableError

log = logging.getLogger(__name__)

#: method name -> pytorch-grad-cam class. ScoreCAM/AblationCAM are deliberately absent:
#: they run one forward pass per channel and are far too slow for survey batches.
CAM_METHODS: dict[str, type] = {
    "gradcam": GradCAM,
    "gradcam++": GradCAMPlusPlus,
    "eigencam": EigenCAM,
    "layercam": LayerCAM,
    "xgradcam": XGradCAM,
    "hirescam": HiResCAM,
}

#: a map whose maximum is at or below this is treated as empty
EMPTY_EPS = 1e-6

Target = int | Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True, eq=False)
class CamResult:
    """Heat maps of one batch.

    ``maps`` is float32 N×H×W in [0, 1] (H, W of the input batch); ``methods[i]`` is the
    CAM method whose map was kept for image i (the fallback's name when the first map was
    empty); ``empty[i]`` is True when every method gave an empty map (then ``maps[i]`` is 0).
    ``logits`` is the model's float32 N×K output from the CAM's own forward pass, so a
    caller that needs the scores as well does not run the network a second time.
    """

    maps: np.ndarray
    methods: list[str]
    empty: list[bool]
    logits: np.ndarray | None = None


class PositiveClassTarget:
    """CAM target "conservation needed": the sum of the logits of the positive classes.

    Use instead of a class index to explain the evidence for all defect classes at once,
    e.g. ``explainer.explain(batch, [PositiveClassTarget([0, 2])] * len(batch))``.
    """

    def __init__(self, indices: Sequence[int]) -> None:
        if not indices:
            raise ValueError("PositiveClassTarget needs at least one class index")
        self.indices = [int(i) for i in indices]

    def __call__(self, model_output: torch.Tensor) -> torch.Tensor:
        return model_output[..., self.indices].sum(dim=-1)

    def __repr__(self) -> str:
        return f"PositiveClassTarget({self.indices})"


def positive_targets(n: int, indices: Sequence[int]) -> list[PositiveClassTarget]:
    """``n`` copies of :class:`PositiveClassTarget` (one per image of a batch)."""
    target = PositiveClassTarget(indices)
    return [target] * n


def resolve_layer(model: torch.nn.Module, target_layer: str) -> torch.nn.Module:
    """The sub-module named by the dotted path ``target_layer`` (``model.get_submodule``).

    Raises ModelError when the path does not exist in the model.
    """
    try:
        return model.get_submodule(target_layer)
    except AttributeError as exc:
        top = ", ".join(name for name, _ in list(model.named_children())[:12])
        raise ModelError(
            f"CAM target layer {target_layer!r} does not exist in this "
            f"{type(model).__name__} (top-level modules: {top}). Fix 'cam_layer' in "
            "model.json (e.g. the value of heritage.model.zoo.cam_target_layer(arch))."
        ) from exc


def _check_method(name: str) -> str:
    key = name.lower().strip()
    if key not in CAM_METHODS:
        raise ValueError(
            f"unknown CAM method {name!r}; choose one of {', '.join(sorted(CAM_METHODS))}"
        )
    return key


def _empty_mask(maps: np.ndarray) -> np.ndarray:
    """Per image: True when its map is non-finite anywhere or has no positive value."""
    flat = maps.reshape(len(maps), -1)
    finite = np.isfinite(flat).all(axis=1)
    peak = np.where(finite, np.nanmax(np.where(np.isfinite(flat), flat, 0.0), axis=1), 0.0)
    return ~finite | (peak <= EMPTY_EPS)


class CamExplainer:
    """Grad-CAM (or another method of :data:`CAM_METHODS`) for one model and target layer.

    The pytorch-grad-cam object is built once here (the fallback's on first need) and
    reused for every :meth:`explain` call; use as a context manager or call :meth:`close`
    to remove its hooks from the model. The model is moved to ``device``.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        target_layer: str,
        method: str = "gradcam",
        fallback: str | None = "eigencam",
        device: str | torch.device = "cpu",
    ) -> None:
        self.method = _check_method(method)
        fb = _check_method(fallback) if fallback else None
        self.fallback = fb if fb != self.method else None
        self.device = torch.device(device)
        self.model = model.to(self.device)
        self.target_layer = target_layer
        self._layer = resolve_layer(model, target_layer)
        self._cams: dict[str, object] = {}
        self._closed = False
        self._cam(self.method)

    # -- lifecycle -------------------------------------------------------------------
    def _cam(self, name: str) -> object:
        if self._closed:
            raise RuntimeError("CamExplainer is closed")
        cam = self._cams.get(name)
        if cam is None:
            was_training = self.model.training
            cam = CAM_METHODS[name](model=self.model, target_layers=[self._layer])
            self.model.train(was_training)  # BaseCAM switches the model to eval
            self._cams[name] = cam
        return cam

    def close(self) -> None:
        """Remove the hooks from the model; the explainer cannot be used afterwards."""
        for cam in self._cams.values():
            cam.activations_and_grads.release()
        self._cams.clear()
        self._closed = True

    def __enter__(self) -> CamExplainer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- work ------------------------------------------------------------------------
    def _run(
        self, name: str, batch: torch.Tensor, targets: list | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Heat maps and the model's logits (from the same forward pass) of one method."""
        cam = self._cam(name)
        with torch.inference_mode(False), torch.enable_grad():
            # a clone made outside inference mode is an ordinary tensor; requiring its
            # gradient makes the graph exist even when every parameter is frozen
            x = batch.detach().clone().to(self.device).requires_grad_(True)
            maps = cam(input_tensor=x, targets=targets)
            logits = cam.outputs.detach().float().cpu().numpy().reshape(len(x), -1)
            cam.outputs = None  # do not keep the graph alive until the next batch
            cam.activations_and_grads.clear()
        self.model.zero_grad(set_to_none=True)
        return np.asarray(maps, dtype=np.float32), logits

    def explain(self, batch: torch.Tensor, targets: Sequence[Target] | None = None) -> CamResult:
        """Heat maps for a normalised N×3×H×W batch.

        ``targets``: one per image, a class index (``ClassifierOutputTarget``) or a callable
        on the model output such as :class:`PositiveClassTarget`; None explains each
        image's highest-scoring class. The result carries the logits of that forward pass.
        """
        if batch.ndim != 4:
            raise ValueError(f"expected an N×C×H×W batch, got shape {tuple(batch.shape)}")
        n = batch.shape[0]
        if targets is not None and len(targets) != n:
            raise ValueError(f"{len(targets)} targets for {n} images")
        cam_targets = (
            None
            if targets is None
            else [ClassifierOutputTarget(int(t)) if _is_index(t) else t for t in targets]
        )
        was_training = self.model.training
        self.model.eval()
        try:
            maps, logits = self._run(self.method, batch, cam_targets)
            if cam_targets is None:  # the fallback explains the same (winning) classes
                cam_targets = [ClassifierOutputTarget(int(c)) for c in logits.argmax(axis=1)]
            empty = _empty_mask(maps)
            methods = [self.method] * n
            if empty.any() and self.fallback is not None:
                idx = np.flatnonzero(empty)
                sub_targets = [cam_targets[i] for i in idx]
                log.info(
                    "%s gave %d empty heat map(s); retrying with %s",
                    self.method,
                    len(idx),
                    self.fallback,
                )
                fb_maps, _ = self._run(self.fallback, batch[torch.as_tensor(idx)], sub_targets)
                fb_empty = _empty_mask(fb_maps)
                for j, i in enumerate(idx):
                    maps[i] = fb_maps[j]
                    methods[i] = self.fallback
                    empty[i] = fb_empty[j]
        finally:
            self.model.train(was_training)
        maps[empty] = 0.0
        maps = np.clip(np.nan_to_num(maps, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)
        return CamResult(
            maps=maps.astype(np.float32), methods=methods, empty=empty.tolist(), logits=logits
        )


def _is_index(t: object) -> bool:
    return isinstance(t, int | np.integer) or (isinstance(t, torch.Tensor) and t.numel() == 1)


def _resize_cam(cam: np.ndarray, height: int, width: int) -> np.ndarray:
    import cv2

    cam = np.nan_to_num(np.asarray(cam, dtype=np.float32), nan=0.0)
    if cam.shape != (height, width):
        cam = cv2.resize(cam, (width, height), interpolation=cv2.INTER_LINEAR)
    return np.clip(cam, 0.0, 1.0)


def overlay(rgb: np.ndarray, cam: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """The heat map ``cam`` (float H×W in [0, 1]) in the jet colour map over ``rgb``.

    ``rgb`` is uint8 H×W×3; ``cam`` is resized to it when needed; ``alpha`` is the weight
    of the heat map (0: the photo alone, 1: the heat map alone). Returns uint8 H×W×3.
    Uses ``pytorch_grad_cam.utils.image.show_cam_on_image`` (which rescales the blend so
    its brightest channel is 255).
    """
    from pytorch_grad_cam.utils.image import show_cam_on_image

    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"rgb must be uint8 H×W×3, got {rgb.dtype} {rgb.shape}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    heat = _resize_cam(cam, rgb.shape[0], rgb.shape[1])
    img = rgb.astype(np.float32) / 255.0
    return show_cam_on_image(img, heat, use_rgb=True, image_weight=1.0 - alpha)


def heatmap_rgb(cam: np.ndarray) -> np.ndarray:
    """The heat map alone as a jet-coloured uint8 H×W×3 image."""
    import cv2

    heat = _resize_cam(cam, *np.asarray(cam).shape[:2])
    bgr = cv2.applyColorMap(np.uint8(np.round(255 * heat)), cv2.COLORMAP_JET)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


#: zlib level of the PNGs written per photo (the heat map): 1 encodes a 224-px image ~35 %
#: faster than Pillow's default 6 for files ~10 % larger (heat maps ~40 %)
PNG_COMPRESS_LEVEL = 1
#: JPEG quality of the overlay written per photo: a photo with the heat map blended in is
#: a photograph, and at 1,280 px JPEG writes it ~15x faster than PNG (level 1) in a file
#: ~6x smaller (docs/benchmarks-scene.md); the heat map alone stays a lossless PNG
OVERLAY_JPEG_QUALITY = 90


def _save_image(path: str | Path, rgb_uint8: np.ndarray, fmt: str, **options: int) -> Path:
    from PIL import Image

    path = Path(path)
    arr = np.asarray(rgb_uint8)
    if arr.dtype != np.uint8:
        raise ValueError(f"saving an image needs uint8 pixels, got {arr.dtype}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr).save(path, format=fmt, **options)
    except OSError as exc:
        raise OutputNotWritableError(
            f"cannot write {fmt} {path}: {exc}; choose a writable output folder"
        ) from exc
    return path


def save_png(path: str | Path, rgb_uint8: np.ndarray) -> Path:
    """Write a uint8 H×W×3 (or H×W) array as PNG; parent folders are created."""
    return _save_image(path, rgb_uint8, "PNG", compress_level=PNG_COMPRESS_LEVEL)


def save_jpeg(path: str | Path, rgb_uint8: np.ndarray, quality: int = OVERLAY_JPEG_QUALITY) -> Path:
    """Write a uint8 H×W×3 (or H×W) array as JPEG; parent folders are created."""
    return _save_image(path, rgb_uint8, "JPEG", quality=quality)


def heatmap_png(path: str | Path, cam: np.ndarray) -> Path:
    """Write the heat map alone (jet colours) as PNG."""
    return save_png(path, heatmap_rgb(cam))
