"""Two-stage training: stage 1 classifier, Grad-CAM overlays, stage 2 on the overlays.

:func:`train_two_stage` runs the whole recipe into a run folder (split, per-epoch
metrics, checkpoints, overlays, figures, ``metrics.json``) and writes the model folder
with :func:`heritage.model.card.save_model`. Every step resumes: the split is reused,
``fit`` continues from its checkpoint, overlays already on disk are kept.

Grad-CAM target: the stage-1 evidence for *conservation needed*, i.e. the sum of the
positive classes' logits (:class:`heritage.model.explain.PositiveClassTarget`), not the
predicted class. It can be computed at inference without labels like the predicted
class, but its colours always mean the same thing ("red = defect evidence"), whereas
with the predicted class a clean wall predicted ``no_crack`` would be painted red where
it looks *intact*, and stage 2 would have to learn two opposite meanings of red.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from heritage.io.fileio import atomic_path, write_json
from heritage.kernel.errors import DataError
from heritage.kernel.progress import NullProgress, Progress

if TYPE_CHECKING:
    import numpy as np
    import torch

    from heritage.model.card import ModelCard
    from heritage.training.data import Item

log = logging.getLogger(__name__)

DEFAULT_POSITIVES = ("crack", "salt_damage")
STAGE2_LABELS = ("conservation_needed",)


@dataclass(frozen=True)
class DataConfig:
    """What the model learns from: data folders, split, positive classes, augmentation."""

    data_dirs: tuple[str, ...]
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    positive: tuple[str, ...] = DEFAULT_POSITIVES
    #: folders whose every image is one more positive example (of ``extra_positive_class``)
    extra_positives: tuple[str, ...] = ()
    extra_positive_class: str = "crack"
    max_per_class: int | None = None
    #: dataset name -> K: its training images are seen K times per epoch (both stages);
    #: for a small dataset that matters most, e.g. real heritage masonry (dais-masonry)
    oversample: dict[str, int] = field(default_factory=dict)
    #: probability that a crack-free stage-1 training image gets a real crack painted on
    #: (heritage.training.crackpaint) and is labelled ``extra_positive_class``; 0 = never
    paint_cracks: float = 0.0
    #: folder of crack masks named like training images (e.g. dais-masonry/masks); only
    #: masks of training-split images are used
    paint_masks: str | None = None
    licences: dict[str, str] = field(default_factory=dict)  # dataset -> licence override


@dataclass(frozen=True)
class StageConfig:
    """One of the two networks and how it is fitted."""

    arch: str
    pretrained: str | None = None  # None, "imagenet" or a state-dict path
    epochs: int = 15
    batch_size: int = 32
    lr: float = 1e-4
    freeze: int = 0  # leading trunk modules kept frozen (modelzoo.freeze_leading)
    #: a network already trained on this data and split (state dict, e.g. a row of
    #: ``python -m research.compare``): used as it is, not trained (stage 1 only)
    weights: str | None = None


@dataclass(frozen=True)
class CamConfig:
    """The Grad-CAM overlays stage 2 is trained on (and inference draws)."""

    method: str = "gradcam"
    #: module name in the stage-1 network; None = the architecture's default
    #: (:func:`heritage.model.zoo.cam_target_layer`)
    layer: str | None = None
    target: str = "positive"  # "positive" (sum of positive logits) or "predicted"
    alpha: float = 0.5  # weight of the heat map in the overlay


@dataclass(frozen=True)
class RunConfig:
    """How the run is carried out: device, seed, loaders, schedule, checkpoints."""

    device: str = "auto"
    seed: int = 0
    workers: int = 0
    cache_images: bool = False
    patience: int = 3
    scheduler: str = "plateau"
    precision: str = "fp32"  # training arithmetic of both stages (heritage.training.fit.autocast)
    checkpoint_every: int = 50
    resume: bool = False


@dataclass(frozen=True)
class OutputConfig:
    """What the run writes: the model folder and its card, the run folder."""

    model_dir: str
    run_dir: str | None = None  # None: <model_dir>-run next to the model folder
    model_id: str = "heritage-two-stage"
    version: str = "0.1.0"
    notes: str = ""
    command_line: str = ""
    fp16: bool = False  # store float16 weights; every metric is measured on them


#: the flat names of :class:`TrainConfig`'s settings (``heritage train``'s options, and
#: the keys of ``config.json`` and of the card's ``training["config"]``), in their
#: recorded order -> (group, field); group None: a field of TrainConfig itself
FLAT_NAMES: dict[str, tuple[str | None, str]] = {
    "data_dirs": ("data", "data_dirs"),
    "model_dir": ("output", "model_dir"),
    "run_dir": ("output", "run_dir"),
    "arch": ("stage1", "arch"),
    "freeze": ("stage1", "freeze"),
    "stage2_arch": ("stage2", "arch"),
    "pretrained": ("stage1", "pretrained"),
    "stage1_weights": ("stage1", "weights"),
    "stage2_pretrained": ("stage2", "pretrained"),
    "epochs": ("stage1", "epochs"),
    "batch_size": ("stage1", "batch_size"),
    "lr": ("stage1", "lr"),
    "stage2_epochs": ("stage2", "epochs"),
    "stage2_batch_size": ("stage2", "batch_size"),
    "stage2_lr": ("stage2", "lr"),
    "patience": ("run", "patience"),
    "image_size": (None, "image_size"),
    "device": ("run", "device"),
    "seed": ("run", "seed"),
    "val_fraction": ("data", "val_fraction"),
    "test_fraction": ("data", "test_fraction"),
    "positive": ("data", "positive"),
    "extra_positives": ("data", "extra_positives"),
    "extra_positive_class": ("data", "extra_positive_class"),
    "max_per_class": ("data", "max_per_class"),
    "oversample": ("data", "oversample"),
    "paint_cracks": ("data", "paint_cracks"),
    "paint_masks": ("data", "paint_masks"),
    "skip_stage2": (None, "skip_stage2"),
    "workers": ("run", "workers"),
    "resume": ("run", "resume"),
    "cache_images": ("run", "cache_images"),
    "cam_method": ("cam", "method"),
    "cam_layer": ("cam", "layer"),
    "cam_target": ("cam", "target"),
    "cam_alpha": ("cam", "alpha"),
    "threshold": (None, "threshold"),
    "checkpoint_every": ("run", "checkpoint_every"),
    "scheduler": ("run", "scheduler"),
    "precision": ("run", "precision"),
    "model_id": ("output", "model_id"),
    "version": ("output", "version"),
    "notes": ("output", "notes"),
    "command_line": ("output", "command_line"),
    "licences": ("data", "licences"),
    "fp16": ("output", "fp16"),
}


@dataclass(frozen=True)
class TrainConfig:
    """Everything ``heritage train`` needs, by group; recorded flat (:meth:`flat`) as
    ``config.json`` in the run folder and in the model card."""

    data: DataConfig
    output: OutputConfig
    stage1: StageConfig = field(default_factory=lambda: StageConfig("mobilenet_v3_small"))
    stage2: StageConfig = field(
        default_factory=lambda: StageConfig("resnet18", epochs=10, batch_size=16, lr=5e-5)
    )
    cam: CamConfig = field(default_factory=CamConfig)
    run: RunConfig = field(default_factory=RunConfig)
    image_size: int = 224
    skip_stage2: bool = False  # train stage 1 only
    threshold: float | None = 0.5  # None: chosen on validation (max. balanced accuracy)

    @classmethod
    def from_flat(cls, **settings: Any) -> TrainConfig:
        """The config from flat settings (the names of :data:`FLAT_NAMES`, e.g. the
        options of ``heritage train``); those not given keep their defaults.

        Raises TypeError for an unknown name.
        """
        unknown = sorted(set(settings) - set(FLAT_NAMES))
        if unknown:
            raise TypeError(f"unknown training setting(s): {', '.join(unknown)}")
        groups: dict[str | None, dict[str, Any]] = {}
        for name, value in settings.items():
            group, attr = FLAT_NAMES[name]
            groups.setdefault(group, {})[attr] = value
        top = groups.pop(None, {})
        defaults = cls(data=DataConfig(()), output=OutputConfig(""))
        parts = {g: replace(getattr(defaults, g), **kw) for g, kw in groups.items()}
        return replace(defaults, **parts, **top)

    def flat(self) -> dict[str, Any]:
        """The settings by flat name, in :data:`FLAT_NAMES` order (the inverse of
        :meth:`from_flat`)."""
        return {
            name: getattr(self if group is None else getattr(self, group), attr)
            for name, (group, attr) in FLAT_NAMES.items()
        }

    @property
    def resolved_run_dir(self) -> Path:
        """The run folder (default: ``<model_dir>-run`` beside the model folder)."""
        if self.output.run_dir:
            return Path(self.output.run_dir)
        m = Path(self.output.model_dir)
        return m.parent / f"{m.name}-run"


def _stage_seed(cfg: TrainConfig, stage: int) -> int:
    """The seed of ``stage`` (1 or 2): its initial weights, its loaders' order, its fit."""
    return cfg.run.seed + stage - 1


def _seeded_network(cfg: TrainConfig, stage: int, num_outputs: int) -> torch.nn.Module:
    """A new network of ``stage``, built right after seeding with :func:`_stage_seed`, so
    its random initial weights (all of them without ``--pretrained``, the new head with
    it) depend on ``--seed`` alone, not on what ran before."""
    from heritage.model.zoo import build_model
    from heritage.training.fit import set_seed

    net = cfg.stage1 if stage == 1 else cfg.stage2
    set_seed(_stage_seed(cfg, stage))
    return build_model(net.arch, num_outputs, net.pretrained)


def _fit_config(cfg: TrainConfig, stage: int, device: str) -> Any:
    from heritage.training.fit import FitConfig

    net = cfg.stage1 if stage == 1 else cfg.stage2
    return FitConfig(
        epochs=net.epochs,
        lr=net.lr,
        patience=cfg.run.patience,
        scheduler=cfg.run.scheduler,  # type: ignore[arg-type]
        precision=cfg.run.precision,  # type: ignore[arg-type]
        device=device,
        checkpoint_every=cfg.run.checkpoint_every,
        resume=cfg.run.resume,
        seed=_stage_seed(cfg, stage),
    )


def overlay_path(run_dir: Path, item: Item) -> Path:
    """Where the Grad-CAM overlay of ``item`` is cached in the run folder."""
    stem = Path(item.rel).stem
    return (
        run_dir
        / "cam_overlays"
        / item.split
        / item.dataset
        / item.label
        / f"{stem}_{item.sha256[:10]}.png"
    )


def _state_digest(model: torch.nn.Module) -> str:
    import hashlib

    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def make_overlays(
    model: torch.nn.Module,
    items: Sequence[Item],
    run_dir: Path,
    *,
    arch: str,
    positive_indices: Sequence[int],
    image_size: int,
    cam_method: str = "gradcam",
    cam_target: str = "positive",
    cam_layer: str | None = None,
    alpha: float = 0.5,
    device: str = "cpu",
    batch_size: int = 16,
    progress: Progress | None = None,
) -> dict[str, int]:
    """Write the Grad-CAM overlay PNG of every item (skipping those already there).

    The overlays of a different stage-1 model or CAM setting (weights digest, method,
    target, layer, alpha, size) are removed first. Returns counts: ``written``,
    ``skipped``, ``fallback`` (maps that needed the fallback CAM method), ``empty`` and
    ``replaced`` (1 when stale overlays were removed).
    """
    import shutil

    from heritage.model.explain import CamExplainer, positive_targets, save_png
    from heritage.model.predict import stage2_inputs
    from heritage.model.preprocess import normalise, to_model_rgb
    from heritage.model.zoo import cam_target_layer
    from heritage.training.data import open_rgb

    progress = progress or NullProgress()
    root = run_dir / "cam_overlays"
    marker = root / "stage1_digest.txt"
    layer = cam_layer or cam_target_layer(arch)
    digest = f"{_state_digest(model)} {cam_method} {cam_target} {alpha} {image_size}"
    if layer != cam_target_layer(arch):  # (the default layer keeps older digests valid)
        digest += f" {layer}"
    replaced = root.is_dir() and (not marker.is_file() or marker.read_text().strip() != digest)
    if replaced:
        log.info("overlays in %s belong to another stage-1 model or CAM: recomputing", root)
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    marker.write_text(digest + "\n")

    todo = [it for it in items if not overlay_path(run_dir, it).is_file()]
    counts = {
        "written": 0,
        "skipped": len(items) - len(todo),
        "fallback": 0,
        "empty": 0,
        "replaced": int(replaced),
    }
    progress.start("Grad-CAM overlays", total=len(items))
    progress.step(counts["skipped"])
    model.eval()
    with CamExplainer(model, layer, cam_method, device=device) as cam:
        for start in range(0, len(todo), batch_size):
            progress.check_cancelled()
            chunk = todo[start : start + batch_size]
            # the same preprocessing and overlay functions as inference (heritage.model.predict)
            rgbs = [to_model_rgb(open_rgb(it.path), image_size) for it in chunk]
            x = normalise(rgbs)
            # no targets: the CAM explains each image's predicted class from its own pass
            targets: list | None = None
            if cam_target == "positive":
                targets = positive_targets(len(chunk), positive_indices)
            res = cam.explain(x, targets)
            overlays, _ = stage2_inputs(rgbs, res.maps, alpha)
            for it, ov, used, empty in zip(chunk, overlays, res.methods, res.empty, strict=True):
                out = overlay_path(run_dir, it)
                with atomic_path(out) as tmp:
                    save_png(tmp, ov)
                counts["written"] += 1
                counts["fallback"] += int(used != cam_method)
                counts["empty"] += int(empty)
            progress.step(len(chunk))
    log.info("overlays: %s", counts)
    return counts


# --------------------------------------------------------------------------- metrics


def binary_metrics(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, Any]:
    """Binary metrics of ``p >= threshold`` (:func:`heritage.model.metrics.binary_metrics`)."""
    from heritage.model.metrics import binary_metrics as _binary_metrics

    return _binary_metrics(y, p, threshold)


def mcnemar(y: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray) -> dict[str, Any]:
    """Paired counts and exact McNemar test of stage 1 (a) against stage 2 (b) on the same images.

    ``b_stage1_only_right``: stage 1 right, stage 2 wrong; ``c_stage2_only_right``: the
    reverse; two-sided exact binomial p-value (:func:`heritage.model.metrics.mcnemar`).
    """
    import numpy as np

    from heritage.model.metrics import mcnemar as _mcnemar

    y = np.asarray(y)
    r = _mcnemar(np.asarray(pred_a) == y, np.asarray(pred_b) == y)
    return {"b_stage1_only_right": r["b"], "c_stage2_only_right": r["c"], "p_value": r["p_value"]}


def choose_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """The threshold maximising balanced accuracy on (validation) data; 0.5 if undefined."""
    import numpy as np
    from sklearn.metrics import roc_curve

    if len(set(np.asarray(y).astype(int).tolist())) < 2:
        return 0.5
    fpr, tpr, thr = roc_curve(y, p)
    j = tpr - fpr
    best = int(np.argmax(j))
    if j[best] <= 0:  # no threshold beats chance on validation
        return 0.5
    return float(np.clip(thr[best], 0.0, 1.0))


# --------------------------------------------------------------------------- orchestration


def oversample_indices(items: Sequence[Item], factors: dict[str, int]) -> list[int]:
    """Indices into ``items`` for one training epoch: each item of a dataset named in
    ``factors`` appears K times (K >= 1), every other item once.

    The images are stored (and, with ``--cache-images``, decoded) once; only the
    sampler repeats them. Only the training split is oversampled, so validation and
    test figures stay per image. Raises DataError for a dataset name that is not among
    the items, which would otherwise be a silent typo.
    """
    known = {it.dataset for it in items}
    unknown = sorted(set(factors) - known)
    if unknown:
        raise DataError(
            f"--oversample names unknown dataset(s) {', '.join(unknown)}; "
            f"the training split holds {', '.join(sorted(known))}"
        )
    bad = sorted(name for name, k in factors.items() if k < 1)
    if bad:
        raise DataError(f"--oversample needs K >= 1 (got {bad[0]}={factors[bad[0]]})")
    out: list[int] = []
    for i, it in enumerate(items):
        out.extend([i] * factors.get(it.dataset, 1))
    if factors:
        log.info("oversampled training split: %d images, %d shown per epoch", len(items), len(out))
    return out


def _positive_indices(classes: Sequence[str], positives: Sequence[str]) -> list[int]:
    idx = [i for i, c in enumerate(classes) if c in set(positives)]
    if not idx:
        raise DataError(
            f"none of the positive classes {list(positives)} is among the data's classes "
            f"{list(classes)}; name them with --positive"
        )
    if len(idx) == len(classes):
        raise DataError(
            f"every class {list(classes)} is positive; add negative examples (e.g. no_crack)"
        )
    return idx


def _probs_stage1(model: Any, loader: Any, device: str, pos: list[int]) -> tuple[Any, Any, Any]:
    from heritage.training.fit import predict_proba

    probs, labels = predict_proba(model, loader, device)
    return probs[:, pos].sum(axis=1), probs.argmax(axis=1), labels.astype(int)


def painting_dataset(
    cfg: TrainConfig,
    train_ds: Any,
    by_split: dict[str, list[Item]],
    classes: Sequence[str],
    pos: Sequence[int],
) -> Any:
    """The stage-1 training dataset with cracks painted on its crack-free images.

    The masks are those of ``cfg.data.paint_masks`` named like a training image and like no
    validation or test image, so no crack of the held-out splits is seen in training.
    """
    from heritage.training.crackpaint import CrackPaintingDataset, training_masks

    if not cfg.data.paint_masks:
        raise DataError("--paint-cracks needs --paint-masks DIR (crack masks named like images)")
    if cfg.data.extra_positive_class not in classes:
        raise DataError(
            f"--paint-cracks labels painted images {cfg.data.extra_positive_class!r}, which is not "
            f"among the classes {list(classes)}"
        )
    held_out = {it.path.name for s in ("val", "test") for it in by_split[s]}
    names = {it.path.name for it in by_split["train"]} - held_out
    try:
        masks = training_masks(Path(cfg.data.paint_masks), names, cfg.image_size)
    except (OSError, ValueError) as exc:
        raise DataError(str(exc)) from exc
    negative = [i for i in range(len(classes)) if i not in pos]
    log.info(
        "painting cracks from %d training masks on %.0f %% of the crack-free training images",
        len(masks),
        100 * cfg.data.paint_cracks,
    )
    return CrackPaintingDataset(
        train_ds,
        masks,
        negative,
        classes.index(cfg.data.extra_positive_class),
        cfg.data.paint_cracks,
    )


@dataclass
class _Data:
    """The run's split: its items by split, classes, positive classes, epoch indices."""

    settings: Any  # heritage.training.data.SplitSettings
    items: list[Item]
    split_info: dict[str, Any]
    classes: list[str]
    pos: list[int]  # indices of the positive classes
    positives: tuple[str, ...]
    by_split: dict[str, list[Item]]
    train_indices: list[int]  # one training epoch (oversampled datasets repeated)

    def labels(self, split: str) -> np.ndarray:
        """1 for the ``split`` items of a positive class, else 0."""
        import numpy as np

        return np.array([it.label in self.positives for it in self.by_split[split]], dtype=int)


def _load_data(cfg: TrainConfig, run_dir: Path, progress: Progress) -> _Data:
    """Step 1: index the data folders and make (or reuse) the split."""
    from heritage.training import data as D

    progress.message("indexing and splitting the data")
    d = cfg.data
    settings = D.SplitSettings(
        data_dirs=tuple(str(Path(x).resolve()) for x in d.data_dirs),
        extra_positives=tuple(str(Path(x).resolve()) for x in d.extra_positives),
        extra_positive_class=d.extra_positive_class,
        val_fraction=d.val_fraction,
        test_fraction=d.test_fraction,
        seed=cfg.run.seed,
        max_per_class=d.max_per_class,
    )
    items, split_info = D.make_or_load_split(settings, run_dir)
    classes = D.class_names(items)
    pos = _positive_indices(classes, d.positive)
    by_split = {s: [it for it in items if it.split == s] for s in D.SPLITS}
    for s in ("train", "val"):
        if not by_split[s]:
            raise DataError(f"the {s} split is empty; add images or change the fractions")
    return _Data(
        settings=settings,
        items=items,
        split_info=split_info,
        classes=classes,
        pos=pos,
        positives=tuple(classes[i] for i in pos),
        by_split=by_split,
        train_indices=oversample_indices(by_split["train"], d.oversample),
    )


def _loaders(
    cfg: TrainConfig, data: _Data, datasets: dict[str, Any], stage: int, device: str
) -> dict[str, Any]:
    """The data loaders of every split for ``stage`` (only training shuffles)."""
    from heritage.training import data as D

    net = cfg.stage1 if stage == 1 else cfg.stage2
    return {
        s: D.make_loader(
            datasets[s],
            net.batch_size,
            shuffle=(s == "train"),
            workers=cfg.run.workers,
            device=device,
            seed=_stage_seed(cfg, stage),
            indices=data.train_indices if s == "train" else None,
        )
        for s in D.SPLITS
    }


def _train_stage1(
    cfg: TrainConfig, data: _Data, run_dir: Path, device: str, progress: Progress
) -> tuple[torch.nn.Module, Any, dict[str, Any] | None, dict[str, Any]]:
    """Step 2: stage 1 trained (or the finished one of ``stage1.weights`` loaded).

    Returns the network, its fit result (None when not trained), where a finished one
    came from, and the loaders of every split.
    """
    from heritage.model.preprocess import eval_transform
    from heritage.model.zoo import freeze_leading
    from heritage.training import data as D
    from heritage.training.fit import fit
    from heritage.training.plots import plot_curves

    size, s1 = cfg.image_size, cfg.stage1
    ds = {
        s: D.stage1_dataset(
            data.by_split[s],
            data.classes,
            D.train_transform(size) if s == "train" else eval_transform(size),
            D.cache_size_for(s, size) if cfg.run.cache_images else None,
            progress,
        )
        for s in D.SPLITS
    }
    if cfg.data.paint_cracks > 0:
        ds["train"] = painting_dataset(cfg, ds["train"], data.by_split, data.classes, data.pos)
    elif cfg.data.paint_masks:
        log.warning("--paint-masks is ignored without --paint-cracks P (P > 0)")
    loaders = _loaders(cfg, data, ds, 1, device)
    if s1.weights:
        stage1, source = load_trained_stage1(cfg, len(data.classes), run_dir)
        return stage1, None, source, loaders
    stage1 = _seeded_network(cfg, 1, len(data.classes))
    if s1.freeze:
        frozen = freeze_leading(stage1, s1.arch, s1.freeze)
        log.info("stage 1: %d leading modules frozen (up to %s)", len(frozen), frozen[-1])
    r1 = fit(stage1, loaders["train"], loaders["val"], _fit_config(cfg, 1, device), run_dir,
             "stage1", progress, loss="ce")  # fmt: skip
    plot_curves(r1.history, run_dir / "stage1_curves.png", f"stage 1 ({s1.arch})")
    return stage1, r1, None, loaders


def _train_stage2(
    cfg: TrainConfig,
    data: _Data,
    stage1: torch.nn.Module,
    run_dir: Path,
    device: str,
    progress: Progress,
    durations: dict[str, float],
) -> tuple[torch.nn.Module, Any, dict[str, int], dict[str, Any]]:
    """Steps 3 and 4: the Grad-CAM overlays of every image, stage 2 trained on them.

    Returns stage 2, its fit result, the overlay counts and the loaders of every split.
    """
    from heritage.model.card import round_to_fp16
    from heritage.model.preprocess import eval_transform
    from heritage.training import data as D
    from heritage.training.fit import fit
    from heritage.training.plots import plot_curves

    t = time.monotonic()
    overlay_counts = make_overlays(
        stage1,
        data.items,
        run_dir,
        arch=cfg.stage1.arch,
        positive_indices=data.pos,
        image_size=cfg.image_size,
        cam_method=cfg.cam.method,
        cam_target=cfg.cam.target,
        cam_layer=cfg.cam.layer,
        alpha=cfg.cam.alpha,
        device=device,
        batch_size=cfg.stage2.batch_size,
        progress=progress,
    )
    durations["overlays_s"] = round(time.monotonic() - t, 2)
    stale = run_dir / "stage2_checkpoint.pt"
    if overlay_counts["replaced"] and stale.is_file():
        log.info("stage 2 was trained on the replaced overlays: training it again")
        stale.unlink()
    t = time.monotonic()
    size = cfg.image_size
    ds2 = {
        s: D.ImageDataset(
            [overlay_path(run_dir, it) for it in data.by_split[s]],
            [float(it.label in data.positives) for it in data.by_split[s]],
            D.train_transform(size, color=False) if s == "train" else eval_transform(size),
        )
        for s in D.SPLITS
    }
    loaders2 = _loaders(cfg, data, ds2, 2, device)
    s2 = cfg.stage2
    stage2 = _seeded_network(cfg, 2, 1)
    r2 = fit(stage2, loaders2["train"], loaders2["val"], _fit_config(cfg, 2, device), run_dir,
             "stage2", progress, loss="bce")  # fmt: skip
    durations["stage2_s"] = round(time.monotonic() - t, 2)
    plot_curves(r2.history, run_dir / "stage2_curves.png", f"stage 2 ({s2.arch})")
    if cfg.output.fp16:
        round_to_fp16(stage2)
    return stage2, r2, overlay_counts, loaders2


def _decide(
    cfg: TrainConfig, y_val: np.ndarray, p1_val: np.ndarray, p2_val: np.ndarray | None
) -> tuple[dict[str, float], dict[str, Any], str]:
    """Step 5: each stage's threshold (given, or chosen on validation), their validation
    scores, and the deciding stage (higher balanced accuracy; tie: stage 1)."""
    thr = {
        "stage1": cfg.threshold if cfg.threshold is not None else choose_threshold(y_val, p1_val)
    }
    if p2_val is not None:
        thr["stage2"] = (
            cfg.threshold if cfg.threshold is not None else choose_threshold(y_val, p2_val)
        )
    val_scores = {"stage1": binary_metrics(y_val, p1_val, thr["stage1"])}
    if p2_val is not None:
        val_scores["stage2"] = binary_metrics(y_val, p2_val, thr["stage2"])

    def score(m: dict[str, Any]) -> float:
        return m["balanced_accuracy"] if m["balanced_accuracy"] is not None else m["accuracy"]

    decision = "stage1"
    if "stage2" in val_scores and score(val_scores["stage2"]) > score(val_scores["stage1"]):
        decision = "stage2"
    return thr, val_scores, decision


def _test_metrics(
    data: _Data, p1_test: tuple[Any, Any, Any], p2_test: np.ndarray | None, thr: dict[str, float]
) -> dict[str, Any]:
    """Step 6: test metrics per dataset and for ``"all"`` (stage 1, stage 2, McNemar)."""
    import numpy as np

    test_items = data.by_split["test"]
    datasets = sorted({it.dataset for it in test_items})
    p1_t, arg1_t, lab1_t = p1_test
    yt = data.labels("test")
    names = np.array([it.dataset for it in test_items])
    out: dict[str, Any] = {}
    for ds_name in [*datasets, "all"]:
        m = np.ones(len(test_items), bool) if ds_name == "all" else names == ds_name
        entry: dict[str, Any] = {
            "stage1": {
                **binary_metrics(yt[m], p1_t[m], thr["stage1"]),
                "multiclass_accuracy": float((arg1_t[m] == lab1_t[m]).mean()),
            }
        }
        if p2_test is not None:
            entry["stage2"] = binary_metrics(yt[m], p2_test[m], thr["stage2"])
            entry["mcnemar"] = mcnemar(yt[m], p1_t[m] >= thr["stage1"], p2_test[m] >= thr["stage2"])
        out[ds_name] = entry
    return out


def _evaluate(
    cfg: TrainConfig,
    data: _Data,
    p1: dict[str, Any],
    p2: dict[str, Any],
    fits: tuple[Any, Any],
    run_dir: Path,
) -> dict[str, Any]:
    """Steps 5 and 6: thresholds, deciding stage, test metrics and confusion figures."""
    from heritage.training.plots import plot_confusion

    r1, r2 = fits
    thr, val_scores, decision = _decide(
        cfg, data.labels("val"), p1["val"][0], p2["val"] if p2 else None
    )
    metrics: dict[str, Any] = {
        "decision_stage": decision,
        "decision_rule": "higher balanced accuracy on the validation split (tie: stage1)",
        "thresholds": thr,
        "validation": val_scores,
        "test": {},
        "stage1_best_epoch": r1.best_epoch if r1 else None,
        "stage2_best_epoch": r2.best_epoch if r2 else None,
    }
    if not data.by_split["test"]:
        log.warning("no test split: test metrics not computed")
        return metrics
    metrics["test"] = _test_metrics(data, p1["test"], p2["test"] if p2 else None, thr)
    for stage, v in metrics["test"]["all"].items():
        if stage == "mcnemar":
            continue
        plot_confusion(
            v["confusion"],
            ["no conservation", "conservation needed"],
            run_dir / f"confusion_{stage}.png",
            f"{stage} on the test split (threshold {thr[stage]:.2f})",
        )
    return metrics


def _write_model(
    cfg: TrainConfig,
    data: _Data,
    nets: tuple[torch.nn.Module, torch.nn.Module | None],
    metrics: dict[str, Any],
    training: dict[str, Any],
) -> ModelCard:
    """Step 7: the model card and the model folder (:func:`heritage.model.card.save_model`)."""
    from heritage.model.card import ModelCard, StageCard, save_model
    from heritage.model.preprocess import IMAGENET_MEAN, IMAGENET_STD
    from heritage.model.zoo import cam_target_layer

    stage1, stage2 = nets
    decision = metrics["decision_stage"]
    card = ModelCard(
        model_id=cfg.output.model_id,
        version=cfg.output.version,
        input_size=cfg.image_size,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        positive_labels=data.positives,
        stage1=StageCard(cfg.stage1.arch, "", "", len(data.classes), tuple(data.classes)),
        stage2=StageCard(cfg.stage2.arch, "", "", 1, STAGE2_LABELS) if stage2 is not None else None,
        cam_layer=cfg.cam.layer or cam_target_layer(cfg.stage1.arch),
        cam_method=cfg.cam.method,
        threshold=float(metrics["thresholds"][decision]),
        decision_stage=decision,
        stage2_cam_alpha=cfg.cam.alpha,
        cam_target=cfg.cam.target,
        training=training,
        metrics=metrics,
        notes=cfg.output.notes,
    )
    return save_model(cfg.output.model_dir, card, stage1, stage2, fp16=cfg.output.fp16)


def _training_record(
    cfg: TrainConfig,
    data: _Data,
    device: str,
    fits: tuple[Any, Any],
    stage1_source: dict[str, Any] | None,
    overlay_counts: dict[str, int],
    durations: dict[str, float],
) -> dict[str, Any]:
    """The card's ``training`` record: data, split, configuration, fits, durations."""
    import torch

    from heritage.model.provenance import release_version
    from heritage.training import data as D

    r1, r2 = fits
    licences = {}
    for d in (*data.settings.data_dirs, *data.settings.extra_positives):
        folder = Path(d).resolve()
        name = next((it.dataset for it in data.items if it.data_dir == folder), folder.name)
        licences[name] = cfg.data.licences.get(name) or D.dataset_licence(Path(d)) or "unknown"
    # no machine paths: data sets by name and content fingerprint, the split by its
    # fingerprint, torch without its build tag; save_model cuts any other absolute path
    return {
        "datasets": D.dataset_records(data.items, data.settings, licences),
        "classes": data.classes,
        "split": {**data.split_info, "fingerprint": D.split_fingerprint(data.items)},
        "counts_per_split": {s: len(data.by_split[s]) for s in D.SPLITS},
        # with --oversample, the training images shown per epoch (repeats included)
        "train_images_per_epoch": len(data.train_indices),
        "command_line": cfg.output.command_line,
        "config": cfg.flat(),
        "durations_s": durations,
        "device": device,
        "torch": release_version(torch.__version__),
        "stage1_fit": _fit_summary(r1) if r1 else stage1_source,
        "stage2_fit": _fit_summary(r2) if r2 else None,
        "overlays": overlay_counts,
    }


def train_two_stage(cfg: TrainConfig, progress: Progress | None = None) -> ModelCard:
    """Train stage 1, make Grad-CAM overlays, train stage 2, evaluate, save the model.

    The steps: split the data (:func:`_load_data`), train stage 1 (:func:`_train_stage1`),
    make the overlays and train stage 2 on them (:func:`_train_stage2`), choose the
    thresholds and the deciding stage on validation and score the test split
    (:func:`_evaluate`), write the model (:func:`_write_model`).

    Returns the model card written to ``cfg.output.model_dir``. The run folder receives
    ``config.json``, ``split.csv``, ``stage{1,2}_metrics.csv``, checkpoints,
    ``cam_overlays/``, ``metrics.json`` and the figures.
    """
    from heritage.model.card import round_to_fp16
    from heritage.model.preprocess import resolve_device

    progress = progress or NullProgress()
    t0 = time.monotonic()
    durations: dict[str, float] = {}
    run_dir = cfg.resolved_run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.run.device)
    write_json(run_dir / "config.json", {**cfg.flat(), "resolved_device": device})

    data = _load_data(cfg, run_dir, progress)
    durations["split_s"] = round(time.monotonic() - t0, 2)

    t = time.monotonic()
    stage1, r1, stage1_source, loaders = _train_stage1(cfg, data, run_dir, device, progress)
    durations["stage1_s"] = round(time.monotonic() - t, 2)
    if cfg.output.fp16:
        round_to_fp16(stage1)  # everything below sees the weights as they will be stored
    p1 = {
        s: _probs_stage1(stage1, loaders[s], device, data.pos)
        for s in ("val", "test")
        if data.by_split[s]
    }

    stage2, r2, overlay_counts, p2 = None, None, {}, {}
    if not cfg.skip_stage2:
        stage2, r2, overlay_counts, loaders2 = _train_stage2(
            cfg, data, stage1, run_dir, device, progress, durations
        )
        from heritage.training.fit import predict_proba

        p2 = {
            s: predict_proba(stage2, loaders2[s], device)[0]
            for s in ("val", "test")
            if data.by_split[s]
        }

    t = time.monotonic()
    metrics = _evaluate(cfg, data, p1, p2, (r1, r2), run_dir)
    durations["evaluate_s"] = round(time.monotonic() - t, 2)

    durations["total_s"] = round(time.monotonic() - t0, 2)
    training = _training_record(
        cfg, data, device, (r1, r2), stage1_source, overlay_counts, durations
    )
    card = _write_model(cfg, data, (stage1, stage2), metrics, training)
    write_json(run_dir / "metrics.json", metrics)
    progress.message(
        f"model written to {cfg.output.model_dir} (decision: {metrics['decision_stage']}); "
        f"run folder {run_dir}"
    )
    return card


def load_trained_stage1(
    cfg: TrainConfig, num_classes: int, run_dir: Path
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The finished stage 1 named by ``cfg.stage1.weights``, and where it came from.

    The file must hold every tensor of ``cfg.stage1.arch`` with a ``num_classes``-output head
    (safetensors, or a ``.pth`` state dict read with ``weights_only=True``). A
    ``split.csv`` beside it or one folder up (``python -m research.compare`` and ``heritage
    train`` leave one there) must equal the run's own: a network trained on another
    split has seen some of this run's test images, and its test metrics would flatter
    it. Without such a file the caller's word is taken, with a warning.

    Raises:
        ModelError: combined with ``pretrained``/``freeze`` (they shape training, and
            this stage 1 is not trained), or weights that do not fit.
        DataError: the split beside the weights differs from the run's.
        InputNotFoundError: the file does not exist.
    """
    from heritage.kernel.errors import InputNotFoundError, ModelError
    from heritage.model.zoo import build_model, load_state_dict_file
    from heritage.training.data import SPLIT_CSV, sha256_file

    path = Path(cfg.stage1.weights or "")
    if cfg.stage1.pretrained or cfg.stage1.freeze:
        raise ModelError(
            "a finished stage 1 (stage1_weights) is not trained again, so pretrained and "
            "freeze do not apply; leave them out"
        )
    if not path.is_file():
        raise InputNotFoundError(f"stage-1 weights not found: {path}")
    own_split = (run_dir / SPLIT_CSV).read_bytes()
    beside = [d / SPLIT_CSV for d in (path.parent, path.parent.parent)]
    found = next((f for f in beside if f.is_file()), None)
    if found is None:
        log.warning(
            "no %s beside %s: the test metrics are honest only if this stage 1 never saw "
            "the run's test split (%s)",
            SPLIT_CSV,
            path,
            run_dir / SPLIT_CSV,
        )
    elif found.read_bytes() != own_split:
        raise DataError(
            f"{path} was trained with the split in {found}, which differs from "
            f"{run_dir / SPLIT_CSV}: its test metrics here would include images it was "
            f"trained on. Copy {found} and its split_meta.json into {run_dir} to use its "
            "split."
        )
    model = build_model(cfg.stage1.arch, num_classes)
    state = load_state_dict_file(path)  # its own ModelError for an unreadable file
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # missing, unexpected or misshapen tensors
        first = str(exc).strip().splitlines()[0]
        raise ModelError(
            f"{path} is not a {cfg.stage1.arch} with {num_classes} classes ({first}); give the "
            "weights of a stage 1 trained on these classes"
        ) from exc
    source = {"weights": str(path.resolve()), "sha256": sha256_file(path),
              "split_checked": str(found.resolve()) if found else None,
              **_compare_row_provenance(path)}  # fmt: skip
    log.info("stage 1: %s used as trained (sha256 %s)", path, source["sha256"][:12])
    return model, source


def _compare_row_provenance(weights: Path) -> dict[str, Any]:
    """How a comparison row (``OUT/<arch>/model.safetensors`` of ``python -m research.compare``)
    was trained.

    Empty when the weights do not sit in such a row. The command line is that of the
    last ``compare`` run in OUT (the one that wrote ``results.json``); the row's own
    budget, epochs and training arithmetic are its ``result.json``'s.
    """
    import json

    row_file, run_file = weights.parent / "result.json", weights.parent.parent / "results.json"
    if not row_file.is_file():
        return {}
    row = json.loads(row_file.read_text(encoding="utf-8"))
    keep = ("arch", "budget", "epochs_run", "best_epoch", "train_precision")
    out: dict[str, Any] = {"compare_row": {k: row[k] for k in keep if k in row}}
    if run_file.is_file():
        out["compare_command_line"] = json.loads(run_file.read_text(encoding="utf-8")).get(
            "command_line"
        )
    return out


def _fit_summary(r: Any) -> dict[str, Any]:
    d = {k: v for k, v in asdict(r).items() if k not in ("history", "extra")}
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in d.items()}


def config_with(cfg: TrainConfig, **changes: Any) -> TrainConfig:
    """A copy of ``cfg`` with ``changes`` (frozen dataclass helper)."""
    return replace(cfg, **changes)
