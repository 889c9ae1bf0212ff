"""Two-stage inference: stage 1 -> Grad-CAM -> overlay -> stage 2.

The pre-processing is :mod:`heritage.model.preprocess`, the one training uses for
validation; stage-2 inputs are built by :func:`stage2_inputs` at inference and in
training, so that stage 2 sees at inference exactly the kind of overlay it was trained on.

Pipeline for a batch of photos (:meth:`TwoStageClassifier.classify`):

1. each photo (EXIF orientation applied, RGB) is resized so its shorter side is
   ``card.input_size`` and centre-cropped to a square (bilinear, antialiased): the
   "model-input RGB" image;
2. stage 1 runs once on the normalised batch, inside the CAM (``card.cam_method`` on
   ``card.cam_layer``): its logits give the softmax probabilities (``p_stage1`` is the
   sum of those of ``card.positive_labels``) and the heat map explains the stage-1
   predicted class (or all positive classes, see ``cam_target``);
3. the heat map is blended over the model-input RGB image with heat-map weight
   ``card.stage2_cam_alpha`` (jet colours), the overlay is normalised like the photo
   and stage 2 gives ``p_stage2`` = sigmoid of its single logit;
4. ``p_final`` is ``p_stage2`` or ``p_stage1`` as ``card.decision_stage`` says and the
   decision is ``p_final >= card.threshold``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from heritage.kernel.errors import ModelError
from heritage.kernel.records import Prediction
from heritage.model.cardcheck import CAM_TARGETS
from heritage.model.preprocess import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    normalise,
    resolve_device,
    to_model_rgb,
    to_rgb,
)

if TYPE_CHECKING:
    import torch

    from heritage.model.card import LoadedModel
    from heritage.model.explain import CamExplainer

log = logging.getLogger(__name__)


_heif_registered = False


def _register_heif() -> None:
    global _heif_registered
    if not _heif_registered:
        _heif_registered = True
        try:
            from pillow_heif import register_heif_opener

            register_heif_opener()
        except ImportError:  # pragma: no cover - HEIC is optional
            log.debug("pillow_heif not available: HEIC photos cannot be read")


def load_image(path: str | Path) -> Image.Image:
    """Open a photo fully decoded, EXIF orientation applied, as RGB.

    Raises OSError/ValueError (PIL's errors) for unreadable files.
    """
    from PIL import ImageOps

    _register_heif()
    with Image.open(path) as im:
        im.load()
        im = ImageOps.exif_transpose(im)
        return to_rgb(im)


def stage2_inputs(
    rgbs: Sequence[np.ndarray],
    cams: Sequence[np.ndarray] | np.ndarray,
    alpha: float,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> tuple[list[np.ndarray], torch.Tensor]:
    """Overlays (uint8, one per image) and the normalised batch stage 2 takes.

    Training must build stage-2 inputs with this function (same alpha, same colours).
    """
    from heritage.model.explain import overlay

    overlays = [overlay(rgb, cam, alpha) for rgb, cam in zip(rgbs, cams, strict=True)]
    return overlays, normalise(overlays, mean, std)


@dataclass(frozen=True, eq=False)
class Result:
    """The two-stage answer for one image.

    ``p_stage1``/``p_stage2``/``p_final`` are P(conservation needed); ``cam`` is float32
    input_size×input_size in [0, 1]; ``overlay`` is the uint8 image stage 2 saw (or would
    see); ``cam_method`` the CAM method actually used (fallback when the first was empty);
    ``cam_empty`` True when no method gave a usable map (``cam`` is then all zero).
    """

    stage1: Prediction
    p_stage1: float
    p_stage2: float | None
    p_final: float
    decision: bool
    cam: np.ndarray
    cam_method: str
    overlay: np.ndarray
    cam_layer: str
    cam_empty: bool = False


class TwoStageClassifier:
    """Classify photos with a loaded two-stage model (see the module docstring).

    ``cam_method`` and ``cam_target`` override the card's; ``cam_target`` is "predicted"
    (explain the stage-1 winning class) or "positive" (explain the sum of the positive
    classes' logits). Holds CAM hooks on the stage-1 network: use as a context manager
    or call :meth:`close`.
    """

    def __init__(
        self,
        loaded: LoadedModel,
        device: str = "cpu",
        cam_method: str | None = None,
        cam_target: str | None = None,
    ) -> None:
        from heritage.model.explain import CamExplainer

        self.loaded = loaded
        self.card = card = loaded.card
        self.device = resolve_device(device)
        self.stage1 = loaded.stage1.to(self.device).eval()
        self.stage2 = loaded.stage2.to(self.device).eval() if loaded.stage2 is not None else None
        self.labels = tuple(card.stage1.labels)
        self.positive_idx = card.positive_indices
        if not self.positive_idx:
            raise ModelError(
                f"none of the positive labels {card.positive_labels} is a stage-1 label "
                f"{self.labels}; fix model.json"
            )
        self.cam_target = cam_target or card.cam_target
        if self.cam_target not in CAM_TARGETS:
            raise ValueError(f"cam_target must be one of {CAM_TARGETS}, got {self.cam_target!r}")
        self.cam_method = (cam_method or card.cam_method).lower()
        fallback = "gradcam" if self.cam_method == "eigencam" else "eigencam"
        self._explainer: CamExplainer = CamExplainer(
            self.stage1,
            card.cam_layer,
            method=self.cam_method,
            fallback=fallback,
            device=self.device,
        )

    def close(self) -> None:
        """Remove the CAM hooks from the stage-1 network."""
        self._explainer.close()

    def __enter__(self) -> TwoStageClassifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def preprocess(self, pil_images: Sequence[Image.Image]) -> torch.Tensor:
        """Normalised N×3×S×S batch of the photos (S = ``card.input_size``), on the CPU."""
        rgbs = [to_model_rgb(im, self.card.input_size) for im in pil_images]
        return normalise(rgbs, self.card.mean, self.card.std)

    def classify(self, images: Sequence[Image.Image]) -> list[Result]:
        """Classify a batch of PIL images (orientation already applied)."""
        import torch

        if not images:
            return []
        card = self.card
        rgbs = [to_model_rgb(im, card.input_size) for im in images]
        x = normalise(rgbs, card.mean, card.std).to(self.device)
        # one stage-1 forward pass: the CAM's, whose logits give the probabilities too;
        # no targets = explain each image's winning class, which is the stage-1 label
        targets: list | None = None
        if self.cam_target == "positive":
            from heritage.model.explain import positive_targets

            targets = positive_targets(len(images), self.positive_idx)
        cams = self._explainer.explain(x, targets)
        probs = torch.softmax(torch.from_numpy(cams.logits), dim=-1).numpy()
        pred = probs.argmax(axis=1)
        p1 = probs[:, self.positive_idx].sum(axis=1)
        overlays, x2 = stage2_inputs(rgbs, cams.maps, card.stage2_cam_alpha, card.mean, card.std)
        p2: np.ndarray | None = None
        if self.stage2 is not None:
            with torch.inference_mode():
                logits = self.stage2(x2.to(self.device)).float().reshape(len(images), -1)[:, 0]
                p2 = torch.sigmoid(logits).cpu().numpy()
        results = []
        for i in range(len(images)):
            pred_i = Prediction(
                label=self.labels[pred[i]],
                score=float(probs[i, pred[i]]),
                probabilities={lab: float(probs[i, j]) for j, lab in enumerate(self.labels)},
            )
            ps2 = float(p2[i]) if p2 is not None else None
            pf = ps2 if (card.decision_stage == "stage2" and ps2 is not None) else float(p1[i])
            results.append(
                Result(
                    stage1=pred_i,
                    p_stage1=float(p1[i]),
                    p_stage2=ps2,
                    p_final=pf,
                    decision=bool(pf >= card.threshold),
                    cam=cams.maps[i],
                    cam_method=cams.methods[i],
                    overlay=overlays[i],
                    cam_layer=card.cam_layer,
                    cam_empty=cams.empty[i],
                )
            )
        return results

    def classify_paths(
        self, paths: Iterable[str | Path], batch_size: int = 16
    ) -> Iterator[tuple[Path, Result | str]]:
        """Yield ``(path, Result)`` or ``(path, error message)`` in input order.

        A file that cannot be opened or decoded yields its message and the batch goes on.
        """
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        chunk: list[Path] = []
        for p in paths:
            chunk.append(Path(p))
            if len(chunk) == batch_size:
                yield from self._classify_chunk(chunk)
                chunk = []
        if chunk:
            yield from self._classify_chunk(chunk)

    def _classify_chunk(self, paths: list[Path]) -> Iterator[tuple[Path, Result | str]]:
        loaded: list[tuple[int, Image.Image]] = []
        errors: dict[int, str] = {}
        for i, p in enumerate(paths):
            try:
                loaded.append((i, load_image(p)))
            except (OSError, ValueError, Image.DecompressionBombError) as exc:
                log.warning("cannot read %s: %s", p, exc)
                errors[i] = f"unreadable image: {exc}"
        results = self.classify([im for _, im in loaded]) if loaded else []
        by_index: dict[int, Result] = {i: r for (i, _), r in zip(loaded, results, strict=True)}
        for i, p in enumerate(paths):
            yield p, by_index[i] if i in by_index else errors[i]


def load_survey_image(
    path: str | Path, min_side: int | None = None, min_long_side: int | None = None
) -> Image.Image:
    """Open a photo as RGB with its EXIF orientation applied.

    With ``min_side``/``min_long_side``, a JPEG is decoded in Pillow's draft mode at
    the smallest DCT scale (1/2, 1/4, 1/8) whose result keeps the shorter side at
    least ``min_side`` px and the longer side at least ``min_long_side`` px (model
    input and thumbnail): a 20-megapixel JPEG then decodes in a fraction of the time
    and memory. Without them the full resolution is decoded. Raises Pillow's errors
    for unreadable files.
    """
    from PIL import Image, ImageOps

    _register_heif()
    with Image.open(path) as im:
        if (min_side or min_long_side) and im.format in {"JPEG", "MPO"}:
            w, h = im.size
            r = max((min_side or 0) / min(w, h), (min_long_side or 0) / max(w, h))
            if r < 1.0:
                im.draft("RGB", (math.ceil(w * r), math.ceil(h * r)))
        im.load()
        out = ImageOps.exif_transpose(im)
        return out if out.mode == "RGB" else out.convert("RGB")
