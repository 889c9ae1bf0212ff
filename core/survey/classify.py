"""Classifying photos for the survey: one batch of photos through the model.

:func:`classify_batch` decodes a batch of photos, runs the model on them in the mode of
the :class:`ClassifyConfig` (scene mode with the wall gate, whole image or full-resolution
tiles) and writes each photo's Grad-CAM overlay, heat map and thumbnail into the overlays
folder; it never touches the GeoPackage. The pipeline (:mod:`heritage.survey.pipeline`)
runs it through an executor: :class:`LocalExecutor` in this process, or the Dask executor
(:mod:`heritage.survey.distributed`) on workers.

Heavy libraries are imported inside the functions.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from heritage.kernel.records import Photo, SkipReason
from heritage.survey.priority import DEFAULT_CONFIG, PriorityConfig
from heritage.survey.sites import SITE_GAP_M

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

    from heritage.model.card import LoadedModel
    from heritage.model.predict import TwoStageClassifier
    from heritage.model.scene import SceneClassifier

logger = logging.getLogger(__name__)


#: ``invalid_photos.reason`` of a readable file the model failed on
CLASSIFICATION_FAILED = "classification_failed"
#: heat-map level counted as defect by ``defect_area_fraction`` (priority.py's default)
AREA_THRESHOLD = 0.5
#: ``decision`` values
DECISION_FLAGGED = "conservation_needed"
DECISION_NOT_FLAGGED = "not_flagged"
#: ``decision`` of a photo with no wall surface the model can judge (scene mode's gate)
DECISION_NOT_ASSESSABLE = "not_assessable"
#: ``inference_mode`` choices of :class:`ClassifyConfig`
MODES = ("scene", "whole", "tiles")


@dataclass(frozen=True, slots=True)
class ClassifyConfig:
    """Everything ``heritage classify`` needs (see :mod:`heritage.survey.pipeline`).

    ``start``: ``(lon, lat)`` in WGS84 or a vector file whose first feature is the
    start; ``None`` starts at the highest-priority building. ``model_dir`` ``None``
    uses :func:`heritage.model.card.default_model_dir`. ``scene_overlay_px`` caps the
    longer side of scene-mode overlays (JPEG) and heat maps (PNG), enough to see where on
    the facade; reports and map tips decode them quickly. ``overlay_max_px`` caps the
    longer side of tiled-mode overlays and heat maps (``None``: full size).
    ``priority.confidence_floor`` is replaced by the decision threshold each photo was
    classified with (the score's zero; recorded in its ``threshold`` column).
    ``decode_workers``: threads that decode the next batch while the model works on
    this one (0: decode in turn, the default). ``scheduler`` (a dask.distributed
    address) or ``workers`` (> 0: a local Dask cluster of that many processes)
    classify on Dask workers instead (:mod:`heritage.survey.distributed`); the GeoPackage is
    still written here, in input order.
    ``reclassify``: photos of the GeoPackage classified by another model (or model
    version) are classified again by this one and their observation rows replaced
    (each batch: the old rows deleted, the new ones written); their reviews, in the
    ``reviews`` table, are kept and applied to the new rows. A stopped run resumes
    (photos done by this model are not classified twice).
    """

    photo_dirs: tuple[Path, ...]
    output: Path
    model_dir: Path | None = None
    device: str = "auto"
    cam_method: str | None = None
    batch_size: int = 8
    mode: str = "scene"
    tile_size: int = 224
    tile_overlap: float = 0.25
    embed_overlays: bool = False
    footprints: Path | None = None
    max_distance_m: float = 25.0
    cluster_eps_m: float = 30.0
    start: tuple[float, float] | Path | None = None
    network: Path | None = None
    by_priority: bool = False
    site_gap_m: float = SITE_GAP_M
    thumbnail_px: int = 480
    overlay_max_px: int | None = 2048
    scene_overlay_px: int = 1280
    max_pixels: int | None = None
    priority: PriorityConfig = DEFAULT_CONFIG
    decode_workers: int = 0
    scheduler: str | None = None
    workers: int = 0
    reclassify: bool = False

    def __post_init__(self) -> None:
        if not self.photo_dirs:
            raise ValueError("give at least one photo folder")
        if self.decode_workers < 0 or self.workers < 0:
            raise ValueError("decode_workers and workers must be >= 0")
        if self.scheduler and self.workers:
            raise ValueError("give either a scheduler address or a number of local workers")
        if self.batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if self.thumbnail_px < 16:
            raise ValueError("thumbnail_px must be at least 16")
        if self.max_distance_m < 0 or self.cluster_eps_m <= 0:
            raise ValueError("max_distance_m must be >= 0 and cluster_eps_m > 0")
        if self.site_gap_m <= 0:
            raise ValueError("site_gap_m must be > 0")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")

    @property
    def tiles(self) -> bool:
        """Full-resolution tiled mode (:mod:`heritage.model.tiling`, no wall gate)."""
        return self.mode == "tiles"

    @property
    def inference_mode(self) -> str:
        """``"scene"``, ``"whole"`` or ``"tiles"``."""
        return self.mode


@dataclass(frozen=True, eq=False)
class Answer:
    """One photo's model answer, whichever the mode."""

    label: str
    score: float
    p_stage1: float
    p_stage2: float | None
    p_final: float
    decision: bool
    cam_method: str
    cam_layer: str
    cam_empty: bool
    heatmap: np.ndarray | None  # None once sent back from a worker (PhotoOutcome)
    overlay: np.ndarray | None
    n_tiles: int
    area_fraction: float
    n_wall_tiles: int | None = None
    n_flagged_tiles: int | None = None
    best_box: tuple[int, int, int, int] | None = None
    #: ``observations.decision``; empty: from ``decision`` (flagged or not)
    verdict: str = ""

    @property
    def decision_label(self) -> str:
        """``conservation_needed``, ``not_flagged`` or ``not_assessable``."""
        if self.verdict:
            return self.verdict
        return DECISION_FLAGGED if self.decision else DECISION_NOT_FLAGGED


def scene_classifier(clf: TwoStageClassifier, cfg: ClassifyConfig) -> SceneClassifier:
    """The scene-mode wrapper of ``clf`` (made once per classifier and kept on it, so it
    lives exactly as long as the classifier; gate verified when made)."""
    from heritage.model.scene import load_scene_classifier

    scene = getattr(clf, "_scene", None)
    if scene is None:
        scene = load_scene_classifier(clf, overlay_max_px=cfg.scene_overlay_px)
        clf._scene = scene  # type: ignore[attr-defined]
    return scene


def _answer_scene(clf: TwoStageClassifier, image: Image.Image, cfg: ClassifyConfig) -> Answer:
    from heritage.model.tiling import resize_map
    from heritage.survey.priority import defect_area_fraction

    r = scene_classifier(clf, cfg).classify(image)
    area = defect_area_fraction(r.heatmap, AREA_THRESHOLD)  # at the working size
    heat = r.heatmap
    if r.mode == "scene" and heat.shape[:2] != r.overlay.shape[:2]:
        heat = resize_map(heat, r.overlay.shape[1], r.overlay.shape[0])  # the overlay's size
    return Answer(
        r.label,
        r.score,
        r.p_stage1,
        r.p_stage2,
        r.p_final,
        r.flagged,
        r.cam_method,
        r.cam_layer,
        r.cam_empty,
        heat,
        r.overlay,
        r.n_tiles,
        area,
        n_wall_tiles=r.n_wall_tiles,
        n_flagged_tiles=r.n_flagged_tiles,
        best_box=r.best_box,
        verdict=r.decision,
    )


def _answers_whole(clf: TwoStageClassifier, images: list[Image.Image]) -> list[Answer]:
    from heritage.survey.priority import defect_area_fraction

    return [
        Answer(
            r.stage1.label,
            r.stage1.score,
            r.p_stage1,
            r.p_stage2,
            r.p_final,
            r.decision,
            r.cam_method,
            r.cam_layer,
            r.cam_empty,
            r.cam,
            r.overlay,
            1,
            defect_area_fraction(r.cam, AREA_THRESHOLD),
        )
        for r in clf.classify(images)
    ]


def _answer_tiled(clf: TwoStageClassifier, image: Image.Image, cfg: ClassifyConfig) -> Answer:
    import numpy as np
    from PIL import Image

    from heritage.model.explain import overlay
    from heritage.model.tiling import TileConfig, classify_tiled, resize_map
    from heritage.survey.priority import defect_area_fraction

    t = classify_tiled(clf, image, TileConfig(cfg.tile_size, cfg.tile_overlap, cfg.batch_size))
    area = defect_area_fraction(t.heatmap, AREA_THRESHOLD)  # at full resolution
    heat, shown = t.heatmap, image
    width, height = image.size
    if cfg.overlay_max_px and max(width, height) > cfg.overlay_max_px:
        scale = cfg.overlay_max_px / max(width, height)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        shown = image.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
        heat = resize_map(t.heatmap, *size)
    rgb = np.asarray(shown, dtype=np.uint8)
    return Answer(
        t.best.stage1.label,
        t.best.stage1.score,
        t.p_stage1,
        t.p_stage2,
        t.p_final,
        t.decision,
        t.best.cam_method,
        t.best.cam_layer,
        t.cam_empty,
        heat,
        overlay(rgb, heat, clf.card.stage2_cam_alpha),
        t.n_tiles,
        area,
    )


def _classify_images(
    clf: TwoStageClassifier, images: list[Image.Image], cfg: ClassifyConfig
) -> list[Answer | str]:
    """One answer (or an error message) per image; a failing batch is retried one by one."""
    if cfg.mode in ("tiles", "scene"):
        answer_one = _answer_tiled if cfg.mode == "tiles" else _answer_scene
        out: list[Answer | str] = []
        for im in images:
            try:
                out.append(answer_one(clf, im, cfg))
            except (RuntimeError, ValueError, OSError) as exc:
                logger.warning("%s classification failed: %s", cfg.mode, exc)
                out.append(f"classification failed: {exc}")
        return out
    try:
        return list(_answers_whole(clf, images))
    except (RuntimeError, ValueError, OSError) as exc:
        if len(images) == 1:
            return [f"classification failed: {exc}"]
        logger.warning("batch failed (%s); classifying its photos one by one", exc)
    single: list[Answer | str] = []
    for im in images:
        single += _classify_images(clf, [im], cfg)
    return single


def _write_outputs(
    image: Image.Image, answer: Answer, sha: str, folder: Path, thumb_px: int
) -> tuple[Path, Path, Path]:
    from heritage.model.explain import heatmap_png, save_jpeg

    stem = sha[:20]
    overlay_path = save_jpeg(folder / f"{stem}_overlay.jpg", answer.overlay)
    heatmap_path = heatmap_png(folder / f"{stem}_heatmap.png", answer.heatmap)
    thumb = image.copy()
    thumb.thumbnail((thumb_px, thumb_px))
    thumb_path = folder / f"{stem}_thumb.jpg"
    thumb.save(thumb_path, format="JPEG", quality=85)
    return overlay_path, heatmap_path, thumb_path


@dataclass(frozen=True, eq=False)
class PhotoOutcome:
    """What classifying one queued photo gave (small enough to send between processes).

    ``answer`` (its heat map and overlay arrays dropped) and the written ``paths``
    (overlay, heat map, thumbnail), or ``None`` and the ``reason``/``message`` of its
    ``invalid_photos`` row.
    """

    answer: Answer | None
    paths: tuple[Path, Path, Path] | None
    reason: str = ""
    message: str = ""


class DecodeSize(NamedTuple):
    """How :func:`decode_photo` decodes a photo for a mode.

    ``min_side``/``min_long_side``: JPEG draft decoding may reduce the photo while its
    sides stay at least this long (:func:`heritage.model.predict.load_survey_image`).
    ``max_side``: the decoded photo is then reduced to scene mode's working image
    (:func:`heritage.model.scene.working_image`), so that resize runs in the decoding
    thread, beside the model, rather than before the model in the classifying one.
    """

    min_side: int | None = None
    min_long_side: int | None = None
    max_side: int | None = None


def decode_sides(cfg: ClassifyConfig, card: Any) -> DecodeSize:
    """How photos are decoded: full size in tiled mode, scene mode's working image in
    scene mode, about the model input (and the thumbnail) in whole-image mode."""
    if cfg.mode == "tiles":
        return DecodeSize()
    if cfg.mode == "scene":
        from heritage.model.scenesettings import SceneSettings

        side = SceneSettings.from_card(getattr(card, "scene", None)).max_side
        return DecodeSize(None, side, side)
    return DecodeSize(card.input_size, cfg.thumbnail_px)


def decode_photo(path: str | Path, sides: tuple[int | None, ...]) -> Image.Image | str:
    """The decoded photo (``sides``: a :class:`DecodeSize`), or the ``invalid_photos``
    message when it cannot be decoded."""
    from heritage.model.predict import load_survey_image

    size = DecodeSize(*sides)
    try:
        image = load_survey_image(path, size.min_side, size.min_long_side)
    except Exception as exc:  # Pillow raises many types for broken data
        logger.warning("cannot decode %s: %s", path, exc)
        return f"the image cannot be decoded ({exc})"
    if size.max_side:
        from heritage.model.scene import working_image

        image, _ = working_image(image, size.max_side)
    return image


def _box_in_photo_pixels(answer: Answer, photo: Photo, image: Image.Image) -> Answer:
    """The answer with its strongest-tile box scaled from the decoded image (JPEG draft
    decoding and scene mode's working size may have reduced it) to the photo's own
    pixels, orientation applied (ratio of the longer sides, which orientation does not
    change)."""
    if answer.best_box is None or not photo.width or not photo.height:
        return answer
    long_side, short_side = max(photo.width, photo.height), min(photo.width, photo.height)
    f = long_side / max(image.size)
    if abs(f - 1.0) < 1e-9:
        return answer
    landscape = image.size[0] >= image.size[1]
    width, height = (long_side, short_side) if landscape else (short_side, long_side)
    left, top, right, bottom = answer.best_box
    box = (
        round(left * f),
        round(top * f),
        min(round(right * f), width),
        min(round(bottom * f), height),
    )
    return dataclasses.replace(answer, best_box=box)


def classify_batch(
    clf: TwoStageClassifier,
    photos: list[Photo],
    cfg: ClassifyConfig,
    folder: Path,
    images: list[Image.Image | str] | None = None,
) -> list[PhotoOutcome]:
    """Decode (unless ``images`` are given), classify and write the overlay, heat map
    and thumbnail of each photo into ``folder``: one outcome per photo, in order.

    The per-photo step of ``heritage classify``, run in this process or on a Dask
    worker (:mod:`heritage.survey.distributed`); it never touches the GeoPackage.
    """
    if images is None:
        sides = decode_sides(cfg, clf.card)
        images = [decode_photo(p.path, sides) for p in photos]
    unreadable = str(SkipReason.UNREADABLE_IMAGE)
    outcomes: list[PhotoOutcome | None] = [
        PhotoOutcome(None, None, unreadable, im) if isinstance(im, str) else None for im in images
    ]
    ok = [i for i, im in enumerate(images) if not isinstance(im, str)]
    decoded: list[Image.Image] = [images[i] for i in ok]  # type: ignore[misc]
    answers = _classify_images(clf, decoded, cfg)
    for i, image, answer in zip(ok, decoded, answers, strict=True):
        if isinstance(answer, str):
            outcomes[i] = PhotoOutcome(None, None, CLASSIFICATION_FAILED, answer)
            continue
        answer = _box_in_photo_pixels(answer, photos[i], image)
        paths = _write_outputs(image, answer, photos[i].sha256, folder, cfg.thumbnail_px)
        light = dataclasses.replace(answer, heatmap=None, overlay=None)
        outcomes[i] = PhotoOutcome(light, paths)
    return [o for o in outcomes if o is not None]


class BatchExecutor(Protocol):
    """Classifies batches of photos for :func:`run_survey`.

    ``submit`` starts a batch and returns a handle; ``result`` waits for it and gives
    one :class:`PhotoOutcome` per photo. ``depth`` batches may be in flight before the
    oldest is waited for (0: synchronous).
    """

    depth: int

    def submit(self, photos: list[Photo]) -> Any: ...

    def result(self, handle: Any) -> list[PhotoOutcome]: ...

    def close(self) -> None: ...


class LocalExecutor:
    """Classify in this process; ``decode_workers`` threads decode the next batch
    (JPEG decoding releases the GIL) while the model works on the current one."""

    def __init__(
        self, clf: TwoStageClassifier, cfg: ClassifyConfig, folder: Path, decode_workers: int = 0
    ) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.clf, self.cfg, self.folder = clf, cfg, folder
        self.sides = decode_sides(cfg, clf.card)
        self.pool = (
            ThreadPoolExecutor(decode_workers, thread_name_prefix="heritage-decode")
            if decode_workers > 0
            else None
        )
        self.depth = 1 if self.pool is not None else 0

    def submit(self, photos: list[Photo]) -> Any:
        """Start decoding ``photos`` (in the pool; at :meth:`result` without one)."""
        if self.pool is None:
            return photos, None
        return photos, [self.pool.submit(decode_photo, p.path, self.sides) for p in photos]

    def result(self, handle: Any) -> list[PhotoOutcome]:
        """Classify the decoded batch here."""
        photos, futures = handle
        images = None if futures is None else [f.result() for f in futures]
        return classify_batch(self.clf, photos, self.cfg, self.folder, images)

    def close(self) -> None:
        """Stop the decoding threads."""
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


def cam_gradients_only(model: Any, cam_layer: str) -> list[Any]:
    """Make Grad-CAM's backward pass stop at the CAM layer of an inference-only model.

    Freezes the parameters, detaches the network's input and makes the CAM layer's
    output (when gradients are on) the first tensor that requires a gradient, so the
    backward pass runs through the head only: no weight gradients, no gradient of the
    input. The heat maps are the same (the gradient w.r.t. the CAM layer's activations
    does not change); on CPU the CAM step is several times faster. Returns the hook
    handles. Only for models that are not trained afterwards.
    """
    import torch

    from heritage.model.explain import resolve_layer

    for param in model.parameters():
        param.requires_grad_(False)

    def detach_input(module: Any, args: tuple) -> tuple:
        return (args[0].detach(), *args[1:]) if args else args

    def grad_from_here(module: Any, inputs: Any, output: Any) -> None:
        grad_on = torch.is_grad_enabled() and isinstance(output, torch.Tensor)
        if grad_on and not output.requires_grad:
            output.requires_grad_(True)

    # registered before the CAM's own hooks, so they see an output that needs a gradient
    return [
        model.register_forward_pre_hook(detach_input),
        resolve_layer(model, cam_layer).register_forward_hook(grad_from_here),
    ]


def make_classifier(
    loaded: LoadedModel,
    device: str,
    cam_method: str | None = None,
    *,
    cam_head_only: bool = True,
    channels_last: bool = True,
) -> TwoStageClassifier:
    """The survey's classifier: :class:`~heritage.model.predict.TwoStageClassifier` with the
    CAM backward pass limited to the head (:func:`cam_gradients_only`) and stage 2 in
    channels-last memory format (its input converted by a pre-hook; faster on CPU).
    Both change the speed only (``bench/throughput.py`` measures them)."""
    import torch

    from heritage.model.predict import TwoStageClassifier

    if cam_head_only:
        cam_gradients_only(loaded.stage1, loaded.card.cam_layer)
    if channels_last and loaded.stage2 is not None:
        loaded.stage2.to(memory_format=torch.channels_last)

        def to_channels_last(module: Any, args: tuple) -> tuple:
            return (args[0].contiguous(memory_format=torch.channels_last), *args[1:])

        loaded.stage2.register_forward_pre_hook(to_channels_last)
    return TwoStageClassifier(loaded, device=device, cam_method=cam_method)
