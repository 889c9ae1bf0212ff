"""Scene mode: a whole survey photo judged tile by tile, at the scale of the training patches.

The default of ``heritage classify``. A surveyor's photo is a whole scene (facade, sky,
trees, street, cars, people); the classifier was trained on 224-256 px close-ups of
wall surfaces. Scene mode therefore:

1. **Working image.** Photos whose longer side exceeds ``max_side`` are reduced to it
   (JPEG draft decoding does most of the work); smaller photos keep their pixels. A tile of
   ``tile_size`` px of the working image then covers ``tile_size`` px of a photo up to
   ``max_side`` px long (the training patches' own scale: SDNET2018 and Özgenel patches are
   227-256 px crops of 12-16 megapixel photos) and ``tile_size × long side / max_side`` px
   of a larger one (448 px of a 4032 px phone photo: half the training scale, the price of
   about one photo per second on two CPU cores; ``docs/benchmarks.md``).
2. **Close-ups.** A photo whose shorter side is below ``close_up_side`` px (less than
   two tiles) is one close-up: it is classified exactly as in whole-image mode (shorter
   side resized to the model's input, centre crop), so close-up photos and patches get the
   very answer they got before scene mode existed. The wall gate does not judge them
   (``gate_close_ups``, off by default): a photo of at most one tile is a surface the
   surveyor aimed at, and the gate, fitted on tiles of whole scenes, refused 3 Dais and 18
   SaltSpot test patches, so close-ups would have become worse than in whole-image mode.
3. **Tiles.** Otherwise overlapping ``tile_size`` windows (``overlap``; halved, then
   none, when that keeps the count within ``max_tiles``) cover the whole working image
   (:func:`heritage.model.tiling.tile_windows`, no centre crop), and stage 1 runs
   on them in batches without a CAM: one forward pass gives each tile's defect
   probability and its pooled features. This pass runs on a copy of the stage-1 network
   with batch norm folded into the convolutions, in channels-last memory order and, on a
   CPU with native bfloat16 (``precision`` ``auto``), in bfloat16 autocast
   (:mod:`heritage.model.fold`; ``docs/benchmarks-scene.md``).
   **Refinement:** around the ``refine_candidates`` strongest tiles whose probability
   reaches ``refine_min_p`` (wall or not), 8 windows shifted by a quarter tile are scored
   too, so that a defect cut in two by the grid is also seen whole.
4. **Wall gate** (:mod:`heritage.model.wallgate`): a tile whose features lie far from every
   class of training wall patch is not a wall surface for this model (sky, foliage,
   vehicles, people, glass, signs) and cannot raise a flag. A photo without a single wall
   tile is ``not_assessable``.
5. **Decision.** A wall tile is flagged when its probability reaches ``tile_threshold``;
   the photo is flagged when at least ``min_flagged_tiles`` tiles are (one for a
   close-up). ``p_final`` is the largest probability of a wall tile.
6. **Explanation** (the cascade's last step): Grad-CAM and stage 2 run only on the
   ``explain_tiles`` strongest wall tiles of a flagged photo, on the strongest one of a
   photo that is not flagged. The heat map is a mosaic at the working image's
   size (each explained tile's CAM × its probability, maximum where tiles overlap); the
   overlay shows it over the photo, outlines the flagged tiles (the strongest one thicker)
   and greys out what the gate did not accept as wall.

torch is imported inside the functions.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from heritage.kernel.errors import ModelError
from heritage.model.scenesettings import SceneSettings

if TYPE_CHECKING:
    from PIL import Image

    from heritage.model.predict import Result, TwoStageClassifier
    from heritage.model.wallgate import WallGate

log = logging.getLogger(__name__)

#: ``observations.decision`` of a photo none of whose tiles is a wall surface
DECISION_NOT_ASSESSABLE = "not_assessable"
MODE_SCENE = "scene"
MODE_CLOSE_UP = "close_up"

#: colours of the outlines drawn on scene overlays (RGB)
FLAGGED_OUTLINE = (255, 40, 40)
STRONGEST_OUTLINE = (255, 255, 0)


@dataclass(frozen=True, eq=False)
class SceneResult:
    """One photo's scene-mode answer.

    ``windows`` are tile boxes in working-image pixels, ``scale`` the factor from working
    image to original photo pixels; ``best_box`` is the strongest wall tile's box in
    original photo pixels (``None`` without a wall tile). ``heatmap`` (float32, working
    image size; the model-input crop for a close-up) and ``overlay`` (uint8) are what the
    survey writes as PNGs.
    """

    mode: str
    decision: str
    flagged: bool
    p_stage1: float
    p_stage2: float | None
    p_final: float
    label: str
    score: float
    cam_method: str
    cam_layer: str
    cam_empty: bool
    heatmap: np.ndarray
    overlay: np.ndarray
    n_tiles: int
    n_wall_tiles: int
    n_flagged_tiles: int
    best_box: tuple[int, int, int, int] | None
    windows: list[tuple[int, int, int, int]] = field(default_factory=list)
    tile_p: list[float] = field(default_factory=list)
    tile_wall: list[bool] = field(default_factory=list)
    scale: float = 1.0


def working_image(image: Image.Image, max_side: int) -> tuple[Image.Image, float]:
    """``image`` reduced so its longer side is at most ``max_side`` px, and the factor
    from working-image pixels to ``image`` pixels (1.0 when it was small enough)."""
    from PIL import Image

    w, h = image.size
    if max(w, h) <= max_side:
        return image, 1.0
    s = max_side / max(w, h)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    return image.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0), max(w, h) / max(size)


def even_batches(n: int, most: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of the fewest batches of at most ``most`` items covering ``n``
    items, their sizes differing by at most one (61 tiles, at most 12: 11, 10, 10, 10, 10,
    10), so that no batch is a small remainder."""
    if n <= 0:
        return []
    count = -(-n // max(1, most))
    size, extra = divmod(n, count)
    bounds, start = [], 0
    for i in range(count):
        stop = start + size + (i < extra)
        bounds.append((start, stop))
        start = stop
    return bounds


#: how areas the gate did not accept are drawn: ``GREY_KEEP`` of the pixel plus the rest of
#: a light grey made from its brightness (``0.6 * mean + 90``)
GREY_KEEP = 0.35


def greyed(rgb: np.ndarray) -> np.ndarray:
    """``rgb`` (uint8 H×W×3) faded towards a light grey of its own brightness: how the
    overlay shows tiles that are not a wall surface. One pass of ``cv2.transform`` (an
    affine map of the three channels), several times faster than the same sum in numpy
    on a 1,280 px overlay; values are truncated like ``astype(np.uint8)``."""
    import cv2

    fade = (1.0 - GREY_KEEP) * 0.6 / 3.0  # weight of each channel in the grey
    matrix = np.full((3, 4), fade, dtype=np.float32)
    matrix[:, :3] += GREY_KEEP * np.eye(3, dtype=np.float32)
    matrix[:, 3] = (1.0 - GREY_KEEP) * 90.0 - 0.5  # cv2 rounds; - 0.5 truncates
    return cv2.transform(np.ascontiguousarray(rgb, dtype=np.uint8), matrix)


class SceneClassifier:
    """Scene mode on top of a :class:`~heritage.model.predict.TwoStageClassifier`."""

    def __init__(
        self,
        clf: TwoStageClassifier,
        settings: SceneSettings | None = None,
        gate: WallGate | None = None,
        *,
        overlay_max_px: int | None = 2048,
    ) -> None:
        self.clf = clf
        self.card = clf.card
        self.settings = settings or SceneSettings.from_card(getattr(clf.card, "scene", None))
        self.gate = gate
        self.overlay_max_px = overlay_max_px
        self.threshold = (
            float(self.settings.tile_threshold)
            if self.settings.tile_threshold is not None
            else float(self.card.threshold)
        )
        self._features: list[Any] = []
        self.precision = resolve_precision(self.settings.precision, clf.device)
        self._tile_net = fast_copy(clf.stage1, clf.card.input_size, clf.device)
        head = _head_module(self._tile_net)
        self._hook = head.register_forward_pre_hook(self._keep_features)

    def _keep_features(self, module: Any, args: tuple) -> None:
        self._features.append(args[0].detach().flatten(1).float().cpu())

    def close(self) -> None:
        """Remove the feature hook from the stage-1 network."""
        self._hook.remove()

    def __enter__(self) -> SceneClassifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ stage 1, no CAM

    def score_tiles(self, rgbs: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Stage-1 defect probability (N,) and pooled features (N×D) of model-input tiles
        (uint8 S×S×3), in batches, without a CAM."""
        import torch

        from heritage.model.preprocess import normalise

        card, clf = self.card, self.clf
        bf16 = self.precision == "bfloat16"
        probs, feats = [], []
        for start, stop in even_batches(len(rgbs), self.settings.batch_size):
            chunk = rgbs[start:stop]
            self._features.clear()
            x = normalise(chunk, card.mean, card.std).to(clf.device)
            x = x.contiguous(memory_format=torch.channels_last)
            with (
                torch.inference_mode(),
                torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16),
            ):
                logits = self._tile_net(x)
            p = torch.softmax(logits.float(), dim=-1).cpu().numpy()
            probs.append(p[:, clf.positive_idx].sum(axis=1))
            feats.append(self._features[-1].numpy())
        self._features.clear()
        return np.concatenate(probs), np.concatenate(feats)

    def wall_mask(self, features: np.ndarray) -> np.ndarray:
        """Boolean per tile: the gate accepts it as a wall surface (all True without gate)."""
        if self.gate is None:
            return np.ones(len(features), dtype=bool)
        return self.gate.is_wall(features)

    # ------------------------------------------------------------ one photo

    def classify(self, image: Image.Image) -> SceneResult:
        """Classify one photo (RGB, orientation applied) as the module docstring says."""
        from heritage.model.preprocess import to_model_rgb

        st = self.settings
        rgb = image if image.mode == "RGB" else image.convert("RGB")
        work, scale = working_image(rgb, st.max_side)
        width, height = work.size
        size = self.card.input_size
        if min(width, height) < st.close_up_side:
            return self._close_up(work, scale)
        windows = st.windows(width, height)
        rgbs = [to_model_rgb(work.crop(w), size) for w in windows]
        p, feats = self.score_tiles(rgbs)
        wall = self.wall_mask(feats)
        if st.refine_candidates:
            windows, p, wall = self._refine(work, windows, p, wall)
        done: dict[int, Result] = {}
        if self.card.decision_stage == "stage2":  # the decision needs every wall tile's CAM
            idx = [int(i) for i in np.flatnonzero(wall)]
            for j in range(0, len(idx), st.batch_size):
                chunk = idx[j : j + st.batch_size]
                answers = self.clf.classify([work.crop(windows[i]) for i in chunk])
                done.update(zip(chunk, answers, strict=True))
            p = np.array([done[i].p_final if i in done else 0.0 for i in range(len(windows))])
        hit = wall & (p >= self.threshold)
        n_wall, n_hit = int(wall.sum()), int(hit.sum())
        flagged = n_hit >= st.min_flagged_tiles
        order = [int(i) for i in np.argsort(-np.where(wall, p, -1.0), kind="stable") if wall[i]]
        explain = order[: st.explain_tiles if flagged else 1]
        todo = [i for i in explain if i not in done]
        if todo:
            answers = self.clf.classify([work.crop(windows[i]) for i in todo])
            done.update(zip(todo, answers, strict=True))
        results = [done[i] for i in explain]
        best = results[0] if results else None
        decision = (
            DECISION_NOT_ASSESSABLE
            if n_wall == 0
            else ("conservation_needed" if flagged else "not_flagged")
        )
        heat = self._mosaic(width, height, [windows[i] for i in explain], results, p[explain])
        shown = self._overlay(work, heat, windows, wall, hit, explain[0] if explain else None)
        best_box = None
        if explain:
            left, top, right, bottom = windows[explain[0]]
            best_box = (
                round(left * scale),
                round(top * scale),
                min(image.size[0], round(right * scale)),
                min(image.size[1], round(bottom * scale)),
            )
        p_final = float(p[explain[0]]) if explain else 0.0
        log.debug(
            "%d tiles over %dx%d (scale %.2f): %d wall, %d flagged, max p %.3f",
            len(windows), width, height, scale, n_wall, n_hit, p_final,
        )  # fmt: skip
        return SceneResult(
            mode=MODE_SCENE,
            decision=decision,
            flagged=flagged,
            p_stage1=float(best.p_stage1) if best is not None else 0.0,
            p_stage2=best.p_stage2 if best is not None else None,
            p_final=p_final,
            label=best.stage1.label if best is not None else "",
            score=best.stage1.score if best is not None else 0.0,
            cam_method=best.cam_method if best is not None else self.clf.cam_method,
            cam_layer=self.card.cam_layer,
            cam_empty=all(r.cam_empty for r in results) if results else True,
            heatmap=heat,
            overlay=shown,
            n_tiles=len(windows),
            n_wall_tiles=n_wall,
            n_flagged_tiles=n_hit,
            best_box=best_box,
            windows=windows,
            tile_p=[float(v) for v in p],
            tile_wall=[bool(v) for v in wall],
            scale=scale,
        )

    def _refine(
        self,
        work: Image.Image,
        windows: list[tuple[int, int, int, int]],
        p: np.ndarray,
        wall: np.ndarray,
    ) -> tuple[list[tuple[int, int, int, int]], np.ndarray, np.ndarray]:
        """``windows``, ``p`` and ``wall`` extended by the shifted neighbours of the
        strongest candidate tiles (see the module docstring)."""
        from heritage.model.preprocess import to_model_rgb

        st = self.settings
        width, height = work.size
        seen = set(windows)
        extra: list[tuple[int, int, int, int]] = []
        for i in np.argsort(-p, kind="stable")[: st.refine_candidates]:
            if p[i] < st.refine_min_p:
                break
            for w in st.neighbours(windows[int(i)], width, height):
                if w not in seen:
                    seen.add(w)
                    extra.append(w)
        if not extra:
            return windows, p, wall
        size = self.card.input_size
        p2, feats2 = self.score_tiles([to_model_rgb(work.crop(w), size) for w in extra])
        return (
            windows + extra,
            np.concatenate([p, p2]),
            np.concatenate([wall, self.wall_mask(feats2)]),
        )

    def _close_up(self, work: Image.Image, scale: float) -> SceneResult:
        """The whole photo as one tile, exactly as whole-image mode sees it."""
        from heritage.model.preprocess import to_model_rgb

        r: Result = self.clf.classify([work])[0]
        wall = True
        if self.settings.gate_close_ups and self.gate is not None:
            _, feats = self.score_tiles([to_model_rgb(work, self.card.input_size)])
            wall = bool(self.wall_mask(feats)[0])
        hit = wall and r.p_final >= self.threshold
        decision = (
            DECISION_NOT_ASSESSABLE
            if not wall
            else ("conservation_needed" if hit else "not_flagged")
        )
        width, height = work.size
        # the model's centre crop of the photo, in original photo pixels
        short = min(width, height)
        left, top = (width - short) // 2, (height - short) // 2
        box = tuple(round(v * scale) for v in (left, top, left + short, top + short))
        return SceneResult(
            mode=MODE_CLOSE_UP,
            decision=decision,
            flagged=hit,
            p_stage1=r.p_stage1,
            p_stage2=r.p_stage2,
            p_final=r.p_final,
            label=r.stage1.label,
            score=r.stage1.score,
            cam_method=r.cam_method,
            cam_layer=r.cam_layer,
            cam_empty=r.cam_empty,
            heatmap=r.cam,
            overlay=r.overlay,
            n_tiles=1,
            n_wall_tiles=int(wall),
            n_flagged_tiles=int(hit),
            best_box=box if wall else None,  # type: ignore[arg-type]
            windows=[(left, top, left + short, top + short)],
            tile_p=[r.p_final],
            tile_wall=[wall],
            scale=scale,
        )

    # ------------------------------------------------------------ pictures

    def _mosaic(
        self,
        width: int,
        height: int,
        windows: Sequence[tuple[int, int, int, int]],
        results: Sequence[Result],
        weights: np.ndarray,
    ) -> np.ndarray:
        from heritage.model.tiling import stitch

        if not results:
            return np.zeros((height, width), dtype=np.float32)
        return stitch(width, height, windows, [r.cam for r in results], [float(w) for w in weights])

    def _overlay(
        self,
        work: Image.Image,
        heat: np.ndarray,
        windows: Sequence[tuple[int, int, int, int]],
        wall: np.ndarray,
        hit: np.ndarray,
        strongest: int | None,
    ) -> np.ndarray:
        """The heat map over the photo, non-wall areas greyed, flagged tiles outlined."""
        from PIL import Image, ImageDraw

        from heritage.model.explain import overlay
        from heritage.model.tiling import resize_map

        width, height = work.size
        f = 1.0
        shown = work
        if self.overlay_max_px and max(width, height) > self.overlay_max_px:
            f = self.overlay_max_px / max(width, height)
            size = (max(1, round(width * f)), max(1, round(height * f)))
            shown = work.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
            heat = resize_map(heat, *size)
        sw, sh = shown.size
        covered = np.zeros((sh, sw), dtype=bool)
        for window, ok in zip(windows, wall, strict=True):
            if ok:
                left, top, right, bottom = (round(v * f) for v in window)
                covered[top:bottom, left:right] = True
        out = overlay(np.asarray(shown, dtype=np.uint8), heat, self.card.stage2_cam_alpha)
        if not covered.all():
            np.copyto(out, greyed(out), where=~covered[..., None])
        pic = Image.fromarray(out)
        draw = ImageDraw.Draw(pic)
        line = max(2, round(min(sw, sh) / 200))

        def outline(i: int, colour: tuple[int, int, int], width: int) -> None:
            left, top, right, bottom = (round(v * f) for v in windows[i])
            draw.rectangle([left, top, right - 1, bottom - 1], outline=colour, width=width)

        for i in np.flatnonzero(hit):
            outline(int(i), FLAGGED_OUTLINE, line)
        if strongest is not None and hit[strongest]:
            outline(strongest, STRONGEST_OUTLINE, 2 * line)
        return np.asarray(pic, dtype=np.uint8)


def resolve_precision(precision: str, device: str) -> str:
    """``"float32"`` or ``"bfloat16"`` for the tile pass: ``"auto"`` is bfloat16 on a CPU
    whose oneDNN runs bfloat16 natively (AVX512-BF16 or AMX), float32 elsewhere (on a
    CPU without it bfloat16 is emulated and slower than float32; GPUs keep float32)."""
    if precision != "auto":
        return precision
    if not str(device).startswith("cpu"):
        return "float32"
    import torch

    try:
        native = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        native = False
    return "bfloat16" if native else "float32"


def fast_copy(stage1: Any, input_size: int, device: str) -> Any:
    """The stage-1 network for the tile pass: batch norm folded (:mod:`heritage.model.fold`)
    and channels-last, or ``stage1`` itself when folding is refused."""
    import torch

    from heritage.model.fold import fold_batch_norm

    example = torch.zeros(2, 3, input_size, input_size, device=device)
    example[1].normal_(generator=torch.Generator(device=device).manual_seed(0))
    try:
        return fold_batch_norm(stage1, example).to(memory_format=torch.channels_last)
    except ValueError as exc:
        log.warning("tile pass without folded batch norm: %s", exc)
        return stage1


def _head_module(model: Any) -> Any:
    """The last ``torch.nn.Linear`` of a classifier: its input is the pooled feature."""
    import torch

    last = None
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            last = module
    if last is None:
        raise ModelError("the stage-1 network has no linear head; scene mode cannot read features")
    return last


def load_scene_classifier(
    clf: TwoStageClassifier, *, overlay_max_px: int | None = 2048, use_gate: bool = True
) -> SceneClassifier:
    """A :class:`SceneClassifier` with the settings and wall gate of ``clf``'s card.

    The gate file named in the card's ``scene`` section is read from the model folder and
    checked against its sha256 before it is parsed (safetensors, no unpickling).
    """
    from heritage.model.card import verified_file_bytes
    from heritage.model.wallgate import load_gate

    settings = SceneSettings.from_card(getattr(clf.card, "scene", None))
    gate = None
    if use_gate and settings.gate_file:
        data = verified_file_bytes(
            clf.loaded.model_dir, settings.gate_file, settings.gate_sha256 or "", "scene.gate_file"
        )
        gate = load_gate(data, float(settings.gate_threshold or 0.0))
    return SceneClassifier(clf, settings, gate, overlay_max_px=overlay_max_px)
