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
class TrainConfig:
    """Everything ``heritage train`` needs; written as ``config.json`` into the run folder."""

    data_dirs: tuple[str, ...]
    model_dir: str
    run_dir: str | None = None  # None: <model_dir>-run next to the model folder
    arch: str = "mobilenet_v3_small"
    freeze: int = 0  # leading stage-1 trunk modules kept frozen (modelzoo.freeze_leading)
    stage2_arch: str = "resnet18"
    pretrained: str | None = None  # None, "imagenet" or a state-dict path (stage 1)
    #: a stage 1 already trained on this data and split (state dict, e.g. a row of
    #: ``python -m research.compare``): used as it is, only stage 2 is trained
    stage1_weights: str | None = None
    stage2_pretrained: str | None = None  # None, "imagenet" or a path (stage 2)
    epochs: int = 15
    batch_size: int = 32
    lr: float = 1e-4
    stage2_epochs: int = 10
    stage2_batch_size: int = 16
    stage2_lr: float = 5e-5
    patience: int = 3
    image_size: int = 224
    device: str = "auto"
    seed: int = 0
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    positive: tuple[str, ...] = DEFAULT_POSITIVES
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
    skip_stage2: bool = False
    workers: int = 0
    resume: bool = False
    cache_images: bool = False
    cam_method: str = "gradcam"
    #: Grad-CAM layer (module name in the stage-1 network); None = the architecture's
    #: default (:func:`heritage.model.zoo.cam_target_layer`)
    cam_layer: str | None = None
    cam_target: str = "positive"  # "positive" (sum of positive logits) or "predicted"
    cam_alpha: float = 0.5
    threshold: float | None = 0.5  # None: chosen on validation (max. balanced accuracy)
    checkpoint_every: int = 50
    scheduler: str = "plateau"
    precision: str = "fp32"  # training arithmetic of both stages (heritage.training.fit.autocast)
    model_id: str = "heritage-two-stage"
    version: str = "0.1.0"
    notes: str = ""
    command_line: str = ""
    licences: dict[str, str] = field(default_factory=dict)  # dataset -> licence override
    fp16: bool = False  # store float16 weights; every metric is measured on them

    @property
    def resolved_run_dir(self) -> Path:
        """The run folder (default: ``<model_dir>-run`` beside the model folder)."""
        if self.run_dir:
            return Path(self.run_dir)
        m = Path(self.model_dir)
        return m.parent / f"{m.name}-run"


def _fit_config(cfg: TrainConfig, stage: int, device: str) -> Any:
    from heritage.training.fit import FitConfig

    return FitConfig(
        epochs=cfg.epochs if stage == 1 else cfg.stage2_epochs,
        lr=cfg.lr if stage == 1 else cfg.stage2_lr,
        patience=cfg.patience,
        scheduler=cfg.scheduler,  # type: ignore[arg-type]
        precision=cfg.precision,  # type: ignore[arg-type]
        device=device,
        checkpoint_every=cfg.checkpoint_every,
        resume=cfg.resume,
        seed=cfg.seed + stage - 1,
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

    The masks are those of ``cfg.paint_masks`` named like a training image and like no
    validation or test image, so no crack of the held-out splits is seen in training.
    """
    from heritage.training.crackpaint import CrackPaintingDataset, training_masks

    if not cfg.paint_masks:
        raise DataError("--paint-cracks needs --paint-masks DIR (crack masks named like images)")
    if cfg.extra_positive_class not in classes:
        raise DataError(
            f"--paint-cracks labels painted images {cfg.extra_positive_class!r}, which is not "
            f"among the classes {list(classes)}"
        )
    held_out = {it.path.name for s in ("val", "test") for it in by_split[s]}
    names = {it.path.name for it in by_split["train"]} - held_out
    try:
        masks = training_masks(Path(cfg.paint_masks), names, cfg.image_size)
    except (OSError, ValueError) as exc:
        raise DataError(str(exc)) from exc
    negative = [i for i in range(len(classes)) if i not in pos]
    log.info(
        "painting cracks from %d training masks on %.0f %% of the crack-free training images",
        len(masks),
        100 * cfg.paint_cracks,
    )
    return CrackPaintingDataset(
        train_ds, masks, negative, classes.index(cfg.extra_positive_class), cfg.paint_cracks
    )


def train_two_stage(cfg: TrainConfig, progress: Progress | None = None) -> ModelCard:
    """Train stage 1, make Grad-CAM overlays, train stage 2, evaluate, save the model.

    Returns the model card written to ``cfg.model_dir``. The run folder receives
    ``config.json``, ``split.csv``, ``stage{1,2}_metrics.csv``, checkpoints,
    ``cam_overlays/``, ``metrics.json`` and the figures.
    """
    import numpy as np
    import torch

    from heritage.model.card import ModelCard, StageCard, round_to_fp16, save_model
    from heritage.model.preprocess import (
        IMAGENET_MEAN,
        IMAGENET_STD,
        eval_transform,
        resolve_device,
    )
    from heritage.model.zoo import build_model, cam_target_layer, freeze_leading
    from heritage.training import data as D
    from heritage.training.fit import fit
    from heritage.training.plots import plot_confusion, plot_curves

    progress = progress or NullProgress()
    t0 = time.monotonic()
    durations: dict[str, float] = {}
    run_dir = cfg.resolved_run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.device)
    write_json(run_dir / "config.json", {**asdict(cfg), "resolved_device": device})

    # 1. split -------------------------------------------------------------------
    progress.message("indexing and splitting the data")
    settings = D.SplitSettings(
        data_dirs=tuple(str(Path(d).resolve()) for d in cfg.data_dirs),
        extra_positives=tuple(str(Path(d).resolve()) for d in cfg.extra_positives),
        extra_positive_class=cfg.extra_positive_class,
        val_fraction=cfg.val_fraction,
        test_fraction=cfg.test_fraction,
        seed=cfg.seed,
        max_per_class=cfg.max_per_class,
    )
    items, split_info = D.make_or_load_split(settings, run_dir)
    classes = D.class_names(items)
    pos = _positive_indices(classes, cfg.positive)
    positives = tuple(classes[i] for i in pos)
    by_split = {s: [it for it in items if it.split == s] for s in D.SPLITS}
    for s in ("train", "val"):
        if not by_split[s]:
            raise DataError(f"the {s} split is empty; add images or change the fractions")
    train_indices = oversample_indices(by_split["train"], cfg.oversample)
    durations["split_s"] = round(time.monotonic() - t0, 2)

    # 2. stage 1 -----------------------------------------------------------------
    t = time.monotonic()
    ds = {
        s: D.stage1_dataset(
            by_split[s],
            classes,
            D.train_transform(cfg.image_size) if s == "train" else eval_transform(cfg.image_size),
            D.cache_size_for(s, cfg.image_size) if cfg.cache_images else None,
            progress,
        )
        for s in D.SPLITS
    }
    if cfg.paint_cracks > 0:
        ds["train"] = painting_dataset(cfg, ds["train"], by_split, classes, pos)
    elif cfg.paint_masks:
        log.warning("--paint-masks is ignored without --paint-cracks P (P > 0)")
    loaders = {
        s: D.make_loader(
            ds[s],
            cfg.batch_size,
            shuffle=(s == "train"),
            workers=cfg.workers,
            device=device,
            seed=cfg.seed,
            indices=train_indices if s == "train" else None,
        )
        for s in D.SPLITS
    }
    r1 = None
    if cfg.stage1_weights:
        stage1, stage1_source = load_trained_stage1(cfg, len(classes), run_dir)
    else:
        stage1 = build_model(cfg.arch, len(classes), cfg.pretrained)
        if cfg.freeze:
            frozen = freeze_leading(stage1, cfg.arch, cfg.freeze)
            log.info("stage 1: %d leading modules frozen (up to %s)", len(frozen), frozen[-1])
        r1 = fit(
            stage1,
            loaders["train"],
            loaders["val"],
            _fit_config(cfg, 1, device),
            run_dir,
            "stage1",
            progress,
            loss="ce",
        )
        plot_curves(r1.history, run_dir / "stage1_curves.png", f"stage 1 ({cfg.arch})")
    durations["stage1_s"] = round(time.monotonic() - t, 2)
    if cfg.fp16:
        round_to_fp16(stage1)  # everything below sees the weights as they will be stored

    # stage-1 probabilities on val and test
    p1: dict[str, Any] = {}
    for s in ("val", "test"):
        if by_split[s]:
            p1[s] = _probs_stage1(stage1, loaders[s], device, pos)

    # 3./4. overlays and stage 2 ----------------------------------------------------
    stage2 = None
    r2 = None
    p2: dict[str, Any] = {}
    overlay_counts: dict[str, int] = {}
    if not cfg.skip_stage2:
        t = time.monotonic()
        overlay_counts = make_overlays(
            stage1,
            items,
            run_dir,
            arch=cfg.arch,
            positive_indices=pos,
            image_size=cfg.image_size,
            cam_method=cfg.cam_method,
            cam_target=cfg.cam_target,
            cam_layer=cfg.cam_layer,
            alpha=cfg.cam_alpha,
            device=device,
            batch_size=cfg.stage2_batch_size,
            progress=progress,
        )
        durations["overlays_s"] = round(time.monotonic() - t, 2)
        stale = run_dir / "stage2_checkpoint.pt"
        if overlay_counts["replaced"] and stale.is_file():
            log.info("stage 2 was trained on the replaced overlays: training it again")
            stale.unlink()
        t = time.monotonic()
        pos_set = set(positives)
        ds2 = {
            s: D.ImageDataset(
                [overlay_path(run_dir, it) for it in by_split[s]],
                [float(it.label in pos_set) for it in by_split[s]],
                D.train_transform(cfg.image_size, color=False)
                if s == "train"
                else eval_transform(cfg.image_size),
            )
            for s in D.SPLITS
        }
        loaders2 = {
            s: D.make_loader(
                ds2[s],
                cfg.stage2_batch_size,
                shuffle=(s == "train"),
                workers=cfg.workers,
                device=device,
                seed=cfg.seed + 1,
                indices=train_indices if s == "train" else None,
            )
            for s in D.SPLITS
        }
        stage2 = build_model(cfg.stage2_arch, 1, cfg.stage2_pretrained)
        r2 = fit(
            stage2,
            loaders2["train"],
            loaders2["val"],
            _fit_config(cfg, 2, device),
            run_dir,
            "stage2",
            progress,
            loss="bce",
        )
        durations["stage2_s"] = round(time.monotonic() - t, 2)
        plot_curves(r2.history, run_dir / "stage2_curves.png", f"stage 2 ({cfg.stage2_arch})")
        if cfg.fp16:
            round_to_fp16(stage2)
        from heritage.training.fit import predict_proba

        for s in ("val", "test"):
            if by_split[s]:
                p2[s] = predict_proba(stage2, loaders2[s], device)[0]

    # 5./6. thresholds, decision stage (on validation), test metrics ------------------
    t = time.monotonic()
    y = {s: np.array([it.label in set(positives) for it in by_split[s]], dtype=int) for s in p1}
    thr = {
        "stage1": cfg.threshold
        if cfg.threshold is not None
        else choose_threshold(y["val"], p1["val"][0])
    }
    if p2:
        thr["stage2"] = (
            cfg.threshold if cfg.threshold is not None else choose_threshold(y["val"], p2["val"])
        )
    val_scores = {"stage1": binary_metrics(y["val"], p1["val"][0], thr["stage1"])}
    if p2:
        val_scores["stage2"] = binary_metrics(y["val"], p2["val"], thr["stage2"])

    def score(m: dict[str, Any]) -> float:
        return m["balanced_accuracy"] if m["balanced_accuracy"] is not None else m["accuracy"]

    decision = "stage1"
    if "stage2" in val_scores and score(val_scores["stage2"]) > score(val_scores["stage1"]):
        decision = "stage2"
    metrics: dict[str, Any] = {
        "decision_stage": decision,
        "decision_rule": "higher balanced accuracy on the validation split (tie: stage1)",
        "thresholds": thr,
        "validation": val_scores,
        "test": {},
        "stage1_best_epoch": r1.best_epoch if r1 else None,
        "stage2_best_epoch": r2.best_epoch if r2 else None,
    }
    test_items = by_split["test"]
    cm_total: dict[str, list] = {}
    if test_items:
        datasets = sorted({it.dataset for it in test_items})
        p1_t, arg1_t, lab1_t = p1["test"]
        yt = y["test"]
        names = np.array([it.dataset for it in test_items])
        for ds_name in [*datasets, "all"]:
            m = np.ones(len(test_items), bool) if ds_name == "all" else names == ds_name
            entry: dict[str, Any] = {
                "stage1": {
                    **binary_metrics(yt[m], p1_t[m], thr["stage1"]),
                    "multiclass_accuracy": float((arg1_t[m] == lab1_t[m]).mean()),
                }
            }
            if p2:
                entry["stage2"] = binary_metrics(yt[m], p2["test"][m], thr["stage2"])
                entry["mcnemar"] = mcnemar(
                    yt[m], p1_t[m] >= thr["stage1"], p2["test"][m] >= thr["stage2"]
                )
            metrics["test"][ds_name] = entry
        cm_total = {k: v["confusion"] for k, v in metrics["test"]["all"].items() if k != "mcnemar"}
    else:
        log.warning("no test split: test metrics not computed")
    durations["evaluate_s"] = round(time.monotonic() - t, 2)
    for stage, cm in cm_total.items():
        plot_confusion(
            cm,
            ["no conservation", "conservation needed"],
            run_dir / f"confusion_{stage}.png",
            f"{stage} on the test split (threshold {thr[stage]:.2f})",
        )

    # 7. model card ---------------------------------------------------------------
    durations["total_s"] = round(time.monotonic() - t0, 2)
    licences = {}
    for d in (*settings.data_dirs, *settings.extra_positives):
        name = next((it.dataset for it in items if str(it.data_dir) == d), Path(d).name)
        licences[name] = cfg.licences.get(name) or D.dataset_licence(Path(d)) or "unknown"
    training = {
        "data_dirs": list(settings.data_dirs),
        "extra_positives": list(settings.extra_positives),
        "licences": licences,
        "classes": classes,
        "split": split_info,
        "counts_per_split": {s: len(by_split[s]) for s in D.SPLITS},
        # with --oversample, the training images shown per epoch (repeats included)
        "train_images_per_epoch": len(train_indices),
        "command_line": cfg.command_line,
        "config": asdict(cfg),
        "durations_s": durations,
        "device": device,
        "torch": torch.__version__,
        "stage1_fit": _fit_summary(r1) if r1 else stage1_source,
        "stage2_fit": _fit_summary(r2) if r2 else None,
        "overlays": overlay_counts,
        "cam_target": cfg.cam_target,  # read by heritage.model.predict.TwoStageClassifier
        "run_dir": str(run_dir.resolve()),
    }
    card = ModelCard(
        model_id=cfg.model_id,
        version=cfg.version,
        input_size=cfg.image_size,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        positive_labels=positives,
        stage1=StageCard(cfg.arch, "", "", len(classes), tuple(classes)),
        stage2=StageCard(cfg.stage2_arch, "", "", 1, STAGE2_LABELS) if stage2 is not None else None,
        cam_layer=cfg.cam_layer or cam_target_layer(cfg.arch),
        cam_method=cfg.cam_method,
        threshold=float(thr[decision]),
        decision_stage=decision,
        stage2_cam_alpha=cfg.cam_alpha,
        training=training,
        metrics=metrics,
        notes=cfg.notes,
    )
    card = save_model(cfg.model_dir, card, stage1, stage2, fp16=cfg.fp16)
    write_json(run_dir / "metrics.json", metrics)
    progress.message(
        f"model written to {cfg.model_dir} (decision: {decision}); run folder {run_dir}"
    )
    return card


def load_trained_stage1(
    cfg: TrainConfig, num_classes: int, run_dir: Path
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The finished stage 1 named by ``cfg.stage1_weights``, and where it came from.

    The file must hold every tensor of ``cfg.arch`` with a ``num_classes``-output head
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

    path = Path(cfg.stage1_weights or "")
    if cfg.pretrained or cfg.freeze:
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
    model = build_model(cfg.arch, num_classes)
    state = load_state_dict_file(path)  # its own ModelError for an unreadable file
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # missing, unexpected or misshapen tensors
        first = str(exc).strip().splitlines()[0]
        raise ModelError(
            f"{path} is not a {cfg.arch} with {num_classes} classes ({first}); give the "
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
