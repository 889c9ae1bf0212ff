"""Backbone comparison on one split with one budget: the paper's Table 1 on our data.

:func:`run_compare` trains AlexNet, GoogLeNet, VGG16, InceptionV3, MobileNetV3-Small
and the two-stage model on the same split (``split.csv`` written once into the output
folder and reused) with the same budget: epochs, Adam, learning rate, a cosine schedule
(or ReduceLROnPlateau) + early stopping (:func:`heritage.training.fit.fit`), the same augmentation
(:func:`heritage.training.data.train_transform`) and batch size. Each network is scored on the
test split for the binary decision "conservation needed" (positive classes, default
``crack`` and ``salt_damage``: the stage-1 probability of the positive classes summed,
at ``threshold``) and for its class accuracy, and measured: parameters, size of its fp32
safetensors file, CPU images/s. The table puts the paper's published accuracy beside ours.

Input size: each network at its own default (299 px for InceptionV3, 224 px otherwise)
unless ``image_size`` is given, then all at that size (InceptionV3 at least 75 px, the
smallest input its stem accepts).

The two-stage row is :func:`heritage.training.train.train_two_stage` with the MobileNetV3 of
the same budget as stage 1 (its finished checkpoint is reused, not retrained) and a
ResNet-18 stage 2 trained with the same epochs, learning rate and batch size on the
Grad-CAM overlays. Its accuracy is that of the decision stage chosen on validation.

Every row is resumable: with ``resume`` a finished architecture (``<arch>/result.json``)
is skipped and an unfinished one continues from its ``fit`` checkpoint. Rows are trained
cheapest first (:func:`run_order`), each from its own seed, so a run stopped part-way
already holds the most rows and the order changes no result.

A full run spans many working sessions, and the output folder (weights, checkpoints) is
too large to keep anywhere but the machine it runs on. With ``rows_dir`` every finished
row's figures (``result.json`` and its per-image decisions) are also copied there, a
folder small enough to commit; a later run on a machine that lost the output folder
takes them back instead of training the row again, if its split is the same file for
file (:func:`heritage.training.data.split_fingerprint`) and the budget is the same.

A row whose output folder was lost before ``rows_dir`` existed can be kept as a
*figures-only* row: a ``result.json`` in ``rows_dir`` with ``"figures_only": true`` and
a ``figures_source`` saying where its numbers were copied from (the committed table of
the run). It is taken back like any archived row, under the same split and budget
checks, and counts as finished; the table marks it with a dagger and says it has no
per-image decisions (so it is never paired image by image) and which figures are
unknown. Delete its file to train the row again.
"""

from __future__ import annotations

import csv
import filecmp
import json
import logging
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from heritage.io.fileio import atomic_path, write_json
from heritage.kernel.errors import DataError, ModelError
from heritage.kernel.progress import NullProgress, Progress
from heritage.model import zoo as modelzoo
from heritage.model.measure import measure_throughput, param_count
from heritage.training.train import DEFAULT_POSITIVES

if TYPE_CHECKING:
    import torch

    from heritage.training.data import Item

log = logging.getLogger(__name__)

TWO_STAGE = "two_stage"
EFFICIENTNET = "efficientnet_lite0"
CNN_ARCHS = ("alexnet", "googlenet", "vgg16", "inception_v3", "mobilenet_v3_small")
DEFAULT_ARCHS = (*CNN_ARCHS, TWO_STAGE)
#: Table 1 of the paper: published accuracy (%) per model
PAPER_ACCURACY: dict[str, float] = {
    "alexnet": 84.7,
    "googlenet": 86.5,
    "vgg16": 88.3,
    "inception_v3": 89.1,
    "mobilenet_v3_small": 91.5,
    TWO_STAGE: 92.7,
}
DISPLAY = {
    "alexnet": "AlexNet",
    "googlenet": "GoogLeNet",
    "vgg16": "VGG16",
    "inception_v3": "InceptionV3",
    "mobilenet_v3_small": "MobileNetV3-Small",
    TWO_STAGE: "Two-stage (MobileNetV3 + Grad-CAM + ResNet-18)",
    EFFICIENTNET: "efficientnet_lite0 (ImageNet)",
}
INCEPTION_MIN_SIZE = 75
#: GFLOPs of one forward pass at the network's default input (torchvision's model docs;
#: EfficientNet-Lite0 as EfficientNet-B0). Only used to train the cheap rows first, so
#: that a long run stopped part-way (hours on a CPU) already has the most rows.
FORWARD_GFLOPS: dict[str, float] = {
    "mobilenet_v3_small": 0.06,
    EFFICIENTNET: 0.39,
    "alexnet": 0.71,
    "googlenet": 1.5,
    "inception_v3": 5.71,
    "vgg16": 15.47,
}
RESULT_FILE = "result.json"
#: per test image: decision, probability, right or wrong (``heritage evaluate
#: --per-image``'s format, so ``research/compare/pair_models.py`` pairs any two rows)
PER_IMAGE_FILE = "test.per_image.csv"
CSV_FIELDS = (
    "model",
    "arch",
    "input_px",
    "paper_accuracy",
    "accuracy",
    "precision",
    "recall",
    "f1",
    "class_accuracy",
    "params_m",
    "size_mb",
    "cpu_images_per_s",
    "cpu_threads",
    "epochs_run",
    "train_seconds",
    "test_images",
    "train_precision",
    "figures_only",
)
#: the Model cell's mark of a row kept as figures only (see the module doc)
FIGURES_ONLY_MARK = " †"


# --------------------------------------------------------------------------- measuring


def save_fp32(model: torch.nn.Module, path: Path) -> int:
    """Write the state dict as an fp32 safetensors file; return its size in bytes."""
    from safetensors.torch import save_file

    tensors = {
        k: (v.detach().float() if v.is_floating_point() else v.detach()).cpu().contiguous().clone()
        for k, v in model.state_dict().items()
    }
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt"})
    return path.stat().st_size


def input_size_for(arch: str, image_size: int | None) -> int:
    """Input edge of ``arch`` in the comparison (see the module docstring)."""
    from heritage.model.zoo import default_input_size

    base = "mobilenet_v3_small" if arch in (TWO_STAGE, EFFICIENTNET) else arch
    if image_size is None:
        return default_input_size(base)
    return max(image_size, INCEPTION_MIN_SIZE) if base == "inception_v3" else image_size


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class CompareConfig:
    """Settings of :func:`run_compare` (``python -m research.compare``)."""

    data_dirs: tuple[str, ...]
    out_dir: str
    archs: tuple[str, ...] = DEFAULT_ARCHS
    epochs: int = 15
    image_size: int | None = None  # None: each arch's default (299 inception_v3, else 224)
    batch_size: int = 32
    lr: float = 1e-4
    patience: int = 3
    scheduler: str = "cosine"  # the same rates for every row (plateau reacts to val noise)
    #: training arithmetic of the rows trained by this call ("fp32" or "bf16" autocast);
    #: a row resumed from its checkpoint keeps the precision it was started with.
    #: Not part of :meth:`budget`: it changes rounding, not epochs, rates or data, so
    #: finished rows are reused; each row records its own and the table names them.
    precision: str = "fp32"
    pretrained: str | None = None  # None (scratch) or "imagenet", for every network
    stage2_arch: str = "resnet18"
    max_per_class: int | None = None
    extra_positives: tuple[str, ...] = ()
    positive: tuple[str, ...] = DEFAULT_POSITIVES
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    seed: int = 0
    threshold: float = 0.5
    device: str = "auto"
    workers: int = 0
    cache_images: bool = True
    resume: bool = False
    checkpoint_every: int = 50
    efficientnet: bool = True  # add the optional row when its packages are installed
    bench_batch_size: int = 32
    bench_warmup: int = 2
    bench_batches: int = 5
    keep_checkpoints: bool = False  # keep fit checkpoints of finished rows (VGG16: ~2 GB)
    table_only: bool = False  # write the table of the rows finished so far; train nothing
    #: finished rows' figures are copied here and taken back from here (see module doc)
    rows_dir: str | None = None
    command_line: str = ""

    def split_settings(self) -> Any:
        """The :class:`heritage.training.data.SplitSettings` shared by every row."""
        from heritage.training.data import SplitSettings

        return SplitSettings(
            data_dirs=tuple(str(Path(d).resolve()) for d in self.data_dirs),
            extra_positives=tuple(str(Path(d).resolve()) for d in self.extra_positives),
            val_fraction=self.val_fraction,
            test_fraction=self.test_fraction,
            seed=self.seed,
            max_per_class=self.max_per_class,
        )

    def budget(self) -> dict[str, Any]:
        """What must be equal for a finished row to be reused."""
        keys = (
            "epochs",
            "image_size",
            "batch_size",
            "lr",
            "patience",
            "scheduler",
            "pretrained",
            "stage2_arch",
            "seed",
            "threshold",
            "positive",
        )
        d = asdict(self)
        return {k: (list(d[k]) if isinstance(d[k], tuple) else d[k]) for k in keys}


# --------------------------------------------------------------------------- runs


def run_order(archs: Sequence[str]) -> list[str]:
    """The order rows are trained in: cheapest first (:data:`FORWARD_GFLOPS`), the
    two-stage row straight after the MobileNetV3 row whose checkpoint it reuses.

    The table keeps the order asked for; only the training order changes. Each row is
    seeded on its own, so the order does not change any row's result.
    """
    order = sorted(archs, key=lambda a: FORWARD_GFLOPS.get(a, float("inf")))
    if TWO_STAGE in order and "mobilenet_v3_small" in order:
        order.remove(TWO_STAGE)
        order.insert(order.index("mobilenet_v3_small") + 1, TWO_STAGE)
    return order


class _Data:
    """The split and its loaders for one input size at a time (images cached once per size)."""

    def __init__(self, cfg: CompareConfig, items: list[Item], device: str, progress: Progress):
        from heritage.training import data as D

        self.cfg, self.device, self.progress = cfg, device, progress
        self.classes = D.class_names(items)
        self.by = {s: [it for it in items if it.split == s] for s in D.SPLITS}
        self.pos = [i for i, c in enumerate(self.classes) if c in set(cfg.positive)]
        if not self.pos or len(self.pos) == len(self.classes):
            raise DataError(
                f"positive classes {list(cfg.positive)} against the data's classes "
                f"{self.classes}: need at least one positive and one negative class"
            )
        for s in D.SPLITS:
            if not self.by[s]:
                raise DataError(f"the {s} split is empty; add images or change --max-per-class")
        self._loaders: dict[int, dict[str, Any]] = {}

    def loaders(self, size: int) -> dict[str, Any]:
        from heritage.model.preprocess import eval_transform
        from heritage.training import data as D

        if size not in self._loaders:
            out = {}
            for s in D.SPLITS:
                tf = D.train_transform(size) if s == "train" else eval_transform(size)
                cache = D.cache_size_for(s, size) if self.cfg.cache_images else None
                ds = D.stage1_dataset(self.by[s], self.classes, tf, cache, self.progress)
                out[s] = D.make_loader(
                    ds,
                    self.cfg.batch_size,
                    shuffle=s == "train",
                    workers=self.cfg.workers,
                    device=self.device,
                    seed=self.cfg.seed,
                )
            self._loaders = {size: out}  # keep one size in memory at a time
        return self._loaders[size]

    def release(self) -> None:
        """Drop the loaders and their image cache."""
        self._loaders = {}

    def test_loader(self, size: int) -> Any:
        """The test split at ``size`` without caching (for scoring a finished row again)."""
        from heritage.model.preprocess import eval_transform
        from heritage.training import data as D

        if size in self._loaders:
            return self._loaders[size]["test"]
        ds = D.stage1_dataset(self.by["test"], self.classes, eval_transform(size))
        return D.make_loader(ds, self.cfg.batch_size, shuffle=False, device=self.device)

    def score_test(
        self, probs: Any, labels: Any, threshold: float
    ) -> tuple[Any, Any, Any, list[dict[str, Any]]]:
        """Per-image decisions on the test split from stage-1 probabilities in test order.

        Returns the summed probability of the positive classes, the truth (positive or
        not), the correctness of each decision (arrays) and one row per image for
        :data:`PER_IMAGE_FILE`.
        """
        import numpy as np

        items = self.by["test"]
        labels = np.asarray(labels).astype(int)
        if len(items) != len(labels) or any(
            self.classes[k] != it.label for k, it in zip(labels, items, strict=True)
        ):
            raise ValueError("the test loader's labels are not in the test split's order")
        p_pos = np.asarray(probs)[:, self.pos].sum(axis=1)
        truth = np.isin(labels, self.pos)
        said = p_pos >= threshold
        correct = said == truth
        top = np.asarray(probs).argmax(axis=1)
        rows = [
            {
                "path": str(it.path),
                "dataset": it.dataset,
                "class": it.label,
                "y_true": int(t),
                "stage1_label": self.classes[int(k)],
                "p_stage1": float(p),
                "p_final": float(p),
                "decision": int(d),
                "correct": int(c),
            }
            for it, t, k, p, d, c in zip(items, truth, top, p_pos, said, correct, strict=True)
        ]
        return p_pos, truth, correct, rows

    def per_dataset(self, correct: Any) -> dict[str, dict[str, Any]]:
        """Test accuracy per dataset from per-image correctness in test-split order."""
        names = [it.dataset for it in self.by["test"]]
        if len(names) != len(correct):
            raise ValueError(f"{len(correct)} outcomes for {len(names)} test images")
        out: dict[str, dict[str, Any]] = {}
        for name in sorted(set(names)):
            hits = [bool(c) for n, c in zip(names, correct, strict=True) if n == name]
            out[name] = {"n": len(hits), "accuracy": sum(hits) / len(hits)}
        return out


def _load_result(path: Path, cfg: CompareConfig) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        row = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    if row.get("budget") != cfg.budget():
        log.info("%s was made with another budget: recomputing", path)
        return None
    return row


ROW_FILES = (RESULT_FILE, PER_IMAGE_FILE)


def restore_rows(rows_dir: Path, out: Path, archs: Sequence[str], cfg: CompareConfig,
                 fingerprint: str) -> list[str]:  # fmt: skip
    """Copy archived rows missing from ``out`` back into it; the architectures restored.

    A row is taken back only when it was scored on the same split (``split_fingerprint``)
    with the same budget; any other is left where it is, with a warning, and trained.
    """
    restored = []
    for arch in archs:
        src = rows_dir / arch / RESULT_FILE
        if (out / arch / RESULT_FILE).is_file() or not src.is_file():
            continue
        row = _load_result(src, cfg)
        if row is None or row.get("split_fingerprint") != fingerprint:
            log.warning(
                "%s was scored on another split or with another budget than this run; "
                "not reused (the row is trained again)",
                src,
            )
            continue
        (out / arch).mkdir(parents=True, exist_ok=True)
        for name in ROW_FILES:
            if (rows_dir / arch / name).is_file():
                shutil.copy2(rows_dir / arch / name, out / arch / name)
        restored.append(arch)
    return restored


def archive_row(out: Path, arch: str, rows_dir: Path) -> None:
    """Copy a finished row's figures (:data:`ROW_FILES`) from ``out`` to ``rows_dir``."""
    (rows_dir / arch).mkdir(parents=True, exist_ok=True)
    for name in ROW_FILES:
        src, dst = out / arch / name, rows_dir / arch / name
        if src.is_file() and not (dst.is_file() and filecmp.cmp(src, dst, shallow=False)):
            shutil.copy2(src, dst)


def _fit_cfg(cfg: CompareConfig, device: str) -> Any:
    from heritage.training.fit import FitConfig

    return FitConfig(
        epochs=cfg.epochs,
        lr=cfg.lr,
        patience=cfg.patience,
        scheduler=cfg.scheduler,  # type: ignore[arg-type]
        precision=cfg.precision,  # type: ignore[arg-type]
        device=device,
        checkpoint_every=cfg.checkpoint_every,
        resume=cfg.resume,
        seed=cfg.seed,
    )


def _run_cnn(arch: str, cfg: CompareConfig, data: _Data, device: str) -> dict[str, Any]:
    """Train and score one single-network row."""

    from heritage.model.metrics import binary_metrics
    from heritage.model.zoo import build_model
    from heritage.training.evaluate import write_per_image_csv
    from heritage.training.fit import checkpoint_precision, fit, predict_proba, set_seed

    out = Path(cfg.out_dir) / arch
    size = input_size_for(arch, cfg.image_size)
    loaders = data.loaders(size)
    # the efficientnet row always starts from its ImageNet weights (that is its point)
    pretrained = "imagenet" if arch == EFFICIENTNET else cfg.pretrained
    set_seed(cfg.seed)  # the initial weights depend on the seed, not on the rows run before
    model = build_model(arch, len(data.classes), pretrained)
    # a row started earlier continues in the arithmetic it was started with
    ckpt = out / "model_checkpoint.pt"
    precision = checkpoint_precision(ckpt) if cfg.resume and ckpt.is_file() else cfg.precision
    if precision != cfg.precision:
        log.info(
            "%s: continuing in %s, the precision its checkpoint was started with", arch, precision
        )
    data.progress.message(f"compare: training {arch} at {size} px ({precision})")
    fr = fit(
        model,
        loaders["train"],
        loaders["val"],
        replace(_fit_cfg(cfg, device), precision=precision),
        out,
        "model",
        data.progress,
        loss="ce",
    )
    probs, labels = predict_proba(model, loaders["test"], device)
    p_pos, truth, correct, per_image = data.score_test(probs, labels, cfg.threshold)
    m = binary_metrics(truth.astype(int), p_pos, cfg.threshold)
    write_per_image_csv(out / PER_IMAGE_FILE, per_image)
    per_dataset = data.per_dataset(correct)
    size_bytes = save_fp32(model, out / "model.safetensors")
    speed = measure_throughput(
        model,
        size,
        batch_size=cfg.bench_batch_size,
        warmup=cfg.bench_warmup,
        batches=cfg.bench_batches,
    )
    return {
        "arch": arch,
        "input_px": size,
        "test": {
            k: m[k] for k in ("n", "accuracy", "precision", "recall", "f1", "roc_auc", "confusion")
        },
        "test_per_dataset": per_dataset,
        "class_accuracy": float((probs.argmax(1) == labels.astype(int)).mean()),
        "params": param_count(model),
        "size_bytes": size_bytes,
        "throughput": speed,
        "epochs_run": fr.epochs_run,
        "best_epoch": fr.best_epoch,
        "train_seconds": fr.seconds,
        "device": fr.device,
        "train_precision": precision,
    }


def _run_two_stage(cfg: CompareConfig, device: str, progress: Progress) -> dict[str, Any]:
    """The two-stage row via :func:`heritage.training.train.train_two_stage`."""
    from PIL import Image

    from heritage.model.card import load_model
    from heritage.model.predict import TwoStageClassifier
    from heritage.training import data as D
    from heritage.training.fit import checkpoint_precision
    from heritage.training.train import (
        DataConfig,
        OutputConfig,
        RunConfig,
        StageConfig,
        TrainConfig,
        train_two_stage,
    )

    root = Path(cfg.out_dir)
    base = root / TWO_STAGE
    run_dir, model_dir = base / "run", base / "model"
    if not cfg.resume and base.exists():
        shutil.rmtree(base)
    run_dir.mkdir(parents=True, exist_ok=True)
    for name in (D.SPLIT_CSV, D.SPLIT_META):  # the comparison's split, unchanged
        if not (run_dir / name).is_file():
            shutil.copy2(root / name, run_dir / name)
    mob_ckpt = root / "mobilenet_v3_small" / "model_checkpoint.pt"
    reused = False
    if mob_ckpt.is_file() and not (run_dir / "stage1_checkpoint.pt").is_file():
        shutil.copy2(mob_ckpt, run_dir / "stage1_checkpoint.pt")
        reused = True
    # stage 1 continues (or is) the MobileNetV3 row's checkpoint, so it keeps that
    # checkpoint's precision (fit refuses to mix two); stage 2 follows it
    s1_ckpt = run_dir / "stage1_checkpoint.pt"
    precision = checkpoint_precision(s1_ckpt) if s1_ckpt.is_file() else cfg.precision
    size = input_size_for(TWO_STAGE, cfg.image_size)
    tcfg = TrainConfig(
        data=DataConfig(
            data_dirs=tuple(cfg.data_dirs),
            val_fraction=cfg.val_fraction,
            test_fraction=cfg.test_fraction,
            positive=tuple(cfg.positive),
            extra_positives=tuple(cfg.extra_positives),
            max_per_class=cfg.max_per_class,
        ),
        output=OutputConfig(
            model_dir=str(model_dir),
            run_dir=str(run_dir),
            model_id="compare-two-stage",
            command_line=cfg.command_line,
        ),
        stage1=StageConfig(
            "mobilenet_v3_small", cfg.pretrained, cfg.epochs, cfg.batch_size, cfg.lr
        ),
        stage2=StageConfig(cfg.stage2_arch, cfg.pretrained, cfg.epochs, cfg.batch_size, cfg.lr),
        run=RunConfig(
            device=device,
            seed=cfg.seed,
            workers=cfg.workers,
            cache_images=cfg.cache_images,
            patience=cfg.patience,
            scheduler=cfg.scheduler,
            precision=precision,
            checkpoint_every=cfg.checkpoint_every,
            resume=True,  # continue this row, or pick up the copied stage-1 checkpoint
        ),
        image_size=size,
        threshold=cfg.threshold,
    )
    progress.message("compare: two-stage model (stage 1 = the MobileNetV3 row)")
    card = train_two_stage(tcfg, progress)
    test = card.metrics["test"]["all"]
    dec = test[card.decision_stage]
    loaded = load_model(model_dir, device="cpu")
    params = param_count(loaded.stage1) + (param_count(loaded.stage2) if loaded.stage2 else 0)
    size_bytes = sum(
        (model_dir / s.weights).stat().st_size for s in (card.stage1, card.stage2) if s is not None
    )
    speed = _two_stage_throughput(loaded, size, cfg, TwoStageClassifier, Image)
    s1 = card.training.get("stage1_fit", {})
    s2 = card.training.get("stage2_fit") or {}
    return {
        "arch": TWO_STAGE,
        "input_px": size,
        "test": {
            k: dec.get(k)
            for k in ("n", "accuracy", "precision", "recall", "f1", "roc_auc", "confusion")
        },
        "decision_stage": card.decision_stage,
        "stage1_test": {k: test["stage1"].get(k) for k in ("accuracy", "f1")},
        "paired_vs_stage1": test.get("mcnemar"),
        "test_per_dataset": _per_dataset_from_card(card.metrics["test"], card.decision_stage),
        "class_accuracy": test["stage1"].get("multiclass_accuracy"),
        "params": params,
        "size_bytes": size_bytes,
        "throughput": speed,
        "epochs_run": (s1.get("epochs_run") or 0) + (s2.get("epochs_run") or 0),
        "train_seconds": card.training.get("durations_s", {}).get("total_s"),
        "stage1_reused_from_mobilenet_row": reused
        or bool(card.training.get("stage1_fit", {}).get("resumed_from")),
        "device": card.training.get("device"),
        "train_precision": precision,
    }


def _per_dataset_from_card(test: dict[str, Any], stage: str) -> dict[str, dict[str, Any]]:
    """Per-dataset test accuracy of ``stage`` from a two-stage card's ``metrics.test``."""
    return {
        name: {"n": m[stage]["n"], "accuracy": m[stage]["accuracy"]}
        for name, m in sorted(test.items())
        if name != "all" and stage in m
    }


def _backfill(row: dict[str, Any], arch: str, cfg: CompareConfig, data: _Data) -> bool:
    """Add what rows carry now to a row finished by an older version; True if changed.

    The two-stage row takes its paired counts and per-dataset accuracy from its model
    card; a single-network row is scored again on the test split from its saved weights
    (one pass over the test images, the same decisions as when it finished) when its
    per-dataset accuracy or its :data:`PER_IMAGE_FILE` is missing.
    """
    out = Path(cfg.out_dir)
    changed = False
    if arch == TWO_STAGE:
        try:
            card = json.loads((out / TWO_STAGE / "model" / "model.json").read_text("utf-8"))
        except (OSError, json.JSONDecodeError):
            return False
        test = card.get("metrics", {}).get("test", {})
        if "paired_vs_stage1" not in row:
            row["paired_vs_stage1"] = test.get("all", {}).get("mcnemar")
            changed = True
        if "test_per_dataset" not in row and card.get("decision_stage"):
            row["test_per_dataset"] = _per_dataset_from_card(test, card["decision_stage"])
            changed = True
        return changed
    weights = out / arch / "model.safetensors"
    per_image = out / arch / PER_IMAGE_FILE
    if ("test_per_dataset" in row and per_image.is_file()) or not weights.is_file():
        return False
    from safetensors.torch import load_file

    from heritage.model.zoo import build_model
    from heritage.training.evaluate import write_per_image_csv
    from heritage.training.fit import predict_proba

    model = build_model(arch, len(data.classes), None)
    model.load_state_dict(load_file(str(weights)))
    data.progress.message(f"compare: scoring the finished {arch} row image by image")
    probs, labels = predict_proba(model, data.test_loader(row["input_px"]), data.device)
    _, _, correct, rows = data.score_test(probs, labels, cfg.threshold)
    write_per_image_csv(per_image, rows)
    if "test_per_dataset" in row:
        return False  # only the per-image file was missing
    row["test_per_dataset"] = data.per_dataset(correct)
    return True


def _two_stage_throughput(
    loaded: Any, size: int, cfg: CompareConfig, clf_cls: Any, image_mod: Any
) -> dict[str, Any]:
    """Images/s of the whole pipeline (preprocessing, stage 1, Grad-CAM, overlay, stage 2).

    Grad-CAM needs gradients, so this one is not under ``inference_mode`` (the two
    networks' forward passes inside ``classify`` are).
    """
    import numpy as np
    import torch

    rng = np.random.default_rng(0)
    images = [
        image_mod.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8))
        for _ in range(cfg.bench_batch_size)
    ]
    with clf_cls(loaded, device="cpu") as clf:
        for _ in range(cfg.bench_warmup):
            clf.classify(images)
        t = time.perf_counter()
        for _ in range(cfg.bench_batches):
            clf.classify(images)
        seconds = time.perf_counter() - t
    return {
        "images_per_s": cfg.bench_batches * cfg.bench_batch_size / seconds,
        "threads": torch.get_num_threads(),
        "batch_size": cfg.bench_batch_size,
        "batches": cfg.bench_batches,
        "seconds": round(seconds, 4),
        "note": "whole pipeline incl. preprocessing and Grad-CAM",
    }


def run_compare(cfg: CompareConfig, progress: Progress | None = None) -> list[dict[str, Any]]:
    """Train, score and measure every row; write ``comparison.{md,csv}`` and ``results.json``.

    Returns the rows in table order. The split is ``OUT_DIR/split.csv`` (made once,
    reused; a different data/settings combination in the same folder is refused).
    """
    from heritage.model.preprocess import resolve_device
    from heritage.training import data as D

    progress = progress or NullProgress()
    t0 = time.monotonic()
    unknown = [a for a in cfg.archs if a not in (*CNN_ARCHS, TWO_STAGE, EFFICIENTNET)]
    if unknown:
        raise ModelError(
            f"unknown model(s) {unknown} for the comparison; choose from "
            f"{', '.join((*CNN_ARCHS, TWO_STAGE))}"
        )
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.device)
    items, split_info = D.make_or_load_split(cfg.split_settings(), out)
    data = _Data(cfg, items, device, progress)

    archs = list(cfg.archs)
    notes: list[str] = []
    if cfg.efficientnet and EFFICIENTNET not in archs:
        ok, why = modelzoo.efficientnet_available()
        if ok:
            archs.append(EFFICIENTNET)
        else:
            log.warning("%s", why)
            notes.append(why)

    order = run_order(archs)
    fingerprint = D.split_fingerprint(items)
    rows_dir = Path(cfg.rows_dir) if cfg.rows_dir else None
    if rows_dir is not None and (cfg.resume or cfg.table_only):
        for arch in restore_rows(rows_dir, out, order, cfg, fingerprint):
            progress.message(f"compare: {arch} taken back from {rows_dir}")
    done: dict[str, dict[str, Any]] = {}
    pending: list[str] = []
    for arch in order:
        res_path = out / arch / RESULT_FILE
        row = _load_result(res_path, cfg) if cfg.resume or cfg.table_only else None
        if row is None and cfg.table_only:
            pending.append(arch)
            continue
        if row is not None:
            if _backfill(row, arch, cfg, data) or "split_fingerprint" not in row:
                row.setdefault("split_fingerprint", fingerprint)  # rows older than the key
                write_json(res_path, row)
            log.info("%s: finished earlier, reusing %s", arch, res_path)
            progress.message(f"compare: {arch} already done")
        else:
            if arch == EFFICIENTNET:
                ok, why = modelzoo.efficientnet_available()
                if not ok:
                    log.warning("%s", why)
                    notes.append(why)
                    continue
            t = time.monotonic()
            if arch == TWO_STAGE:
                data.release()  # train_two_stage builds (and caches) its own datasets
                row = _run_two_stage(cfg, device, progress)
            else:
                row = _run_cnn(arch, cfg, data, device)
            row["wall_seconds"] = round(time.monotonic() - t, 1)
            row["budget"] = cfg.budget()
            row["split_fingerprint"] = fingerprint
            write_json(res_path, row)
            ckpt = out / arch / "model_checkpoint.pt"
            # a finished row is skipped on resume, so its checkpoint (weights + Adam
            # state + best weights) is dead weight; the MobileNet one seeds the two-stage row
            if not cfg.keep_checkpoints and arch != "mobilenet_v3_small" and ckpt.is_file():
                ckpt.unlink()
        done[arch] = row
        if rows_dir is not None:
            archive_row(out, arch, rows_dir)
    rows = [done[a] for a in archs if a in done]
    if not rows:
        raise DataError(
            f"no model of this comparison has finished in {out} yet; run it without "
            "--table-only first"
        )

    summary = {
        "command_line": cfg.command_line,
        "config": asdict(cfg),
        "split": {
            "file": str(out / D.SPLIT_CSV),
            "counts": {s: len(data.by[s]) for s in D.SPLITS},
            "classes": data.classes,
            "positive": [data.classes[i] for i in data.pos],
            "reused": split_info.get("reused", False),
        },
        "device": device,
        "notes": notes,
        "pending": [a for a in archs if a in pending],
        "paired_with_best": paired_with_best(out, rows),
        "rows": rows,
        "seconds": round(time.monotonic() - t0, 1),
    }
    write_json(out / "results.json", summary)
    write_csv(rows, out / "comparison.csv")
    (out / "comparison.md").write_text(table_markdown(summary), encoding="utf-8")
    progress.message(f"comparison written to {out / 'comparison.md'}")
    return rows


# --------------------------------------------------------------------------- table


def _flat(row: dict[str, Any]) -> dict[str, Any]:
    t = row["test"]
    sp = row.get("throughput") or {}
    arch = row["arch"]

    def pct(v: float | None) -> float | None:
        return None if v is None else round(100 * v, 1)

    def scaled(v: float | None, unit: float, digits: int) -> float | None:
        return None if v is None else round(v / unit, digits)

    return {
        "model": DISPLAY.get(arch, arch),
        "arch": arch,
        "input_px": row["input_px"],
        "paper_accuracy": PAPER_ACCURACY.get(arch),
        "accuracy": pct(t.get("accuracy")),
        "precision": pct(t.get("precision")),
        "recall": pct(t.get("recall")),
        "f1": pct(t.get("f1")),
        "class_accuracy": pct(row.get("class_accuracy")),
        "params_m": scaled(row.get("params"), 1e6, 2),
        "size_mb": scaled(row.get("size_bytes"), 1e6, 1),
        "cpu_images_per_s": scaled(sp.get("images_per_s"), 1, 1),
        "cpu_threads": sp.get("threads"),
        "epochs_run": row.get("epochs_run"),
        "train_seconds": row.get("train_seconds"),
        "test_images": t.get("n"),
        "train_precision": row_precision(row),
        "figures_only": 1 if row.get("figures_only") else None,
    }


def row_precision(row: dict[str, Any]) -> str:
    """The training arithmetic of a row (rows from before ``--precision`` existed: fp32)."""
    return str(row.get("train_precision") or "fp32")


def precision_note(rows: Sequence[dict[str, Any]]) -> str:
    """One sentence naming the training arithmetic of the rows."""
    by: dict[str, list[str]] = {}
    for r in rows:
        by.setdefault(row_precision(r), []).append(DISPLAY.get(r["arch"], r["arch"]))
    from heritage.training.fit import PRECISION_NAMES as name

    if len(by) == 1:
        (p,) = by
        return f"Training arithmetic: {name.get(p, p)} for every row."
    parts = [f"{name.get(p, p)} for {', '.join(models)}" for p, models in sorted(by.items())]
    return (
        f"Training arithmetic: {'; '.join(parts)} (it changes rounding, not the budget: "
        "pair the rows image by image before reading a difference of a point or two)."
    )


def write_csv(rows: Sequence[dict[str, Any]], path: Path) -> None:
    """The table as CSV (percentages with one decimal, empty when undefined)."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if v is None else v) for k, v in _flat(r).items()})


def _cell(v: Any) -> str:
    return "n/a" if v is None else str(v)


def single_answer(row: dict[str, Any]) -> str | None:
    """``"positive"``/``"negative"`` when a model gave that answer for every test image.

    Such a model has not learned the task: its accuracy is the share of that class, and
    comparing another model with it says nothing about the architectures.
    """
    conf = row["test"].get("confusion")
    if not conf:
        return None
    (tn, fp), (fn, tp) = conf
    if tn + fp + fn + tp == 0:
        return None
    if tn + fn == 0:
        return "positive"
    if tp + fp == 0:
        return "negative"
    return None


def paired_with_best(out: Path, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Each single-network row paired with the most accurate of the paper's networks.

    Reads every row's :data:`PER_IMAGE_FILE` (the same test images in the same order) and
    returns ``{"best": arch, "vs": {arch: heritage.model.metrics.mcnemar(best, arch)}}``; empty
    when fewer than two of the paper's networks have the file. The ImageNet-started
    efficientnet row is paired too but never chosen as the best (it is not ranked).
    """
    from heritage.model.metrics import mcnemar

    correct: dict[str, list[bool]] = {}
    for r in rows:
        f = out / r["arch"] / PER_IMAGE_FILE
        if r["arch"] != TWO_STAGE and f.is_file():
            with open(f, newline="", encoding="utf-8") as fh:
                correct[r["arch"]] = [x["correct"] == "1" for x in csv.DictReader(fh)]
    ranked = [a for a in PAPER_ACCURACY if a in correct]
    if len(ranked) < 2:
        return {}
    best = max(ranked, key=lambda a: sum(correct[a]) / max(1, len(correct[a])))
    return {
        "best": best,
        "vs": {a: mcnemar(correct[best], c) for a, c in correct.items() if a != best},
    }


def _paired_sentence(paired: dict[str, Any]) -> str:
    """The rows' paired counts against the most accurate network, in words."""
    best = DISPLAY.get(paired["best"], paired["best"])
    parts = [
        f"{DISPLAY.get(a, a)}: only {best} right on {m['b']}, only {DISPLAY.get(a, a)} on "
        f"{m['c']}, p = {m['p_value']:.2g}"
        for a, m in paired["vs"].items()
    ]
    return (
        f"Paired with {best} image by image (exact McNemar; p >= 0.05 is within chance): "
        f"{'; '.join(parts)}."
    )


def verdict(rows: Sequence[dict[str, Any]], paired: dict[str, Any] | None = None) -> str:
    """One plain sentence (or a few) on where the paper's claims hold on our data.

    ``paired``: :func:`paired_with_best`'s result, said after the ranking when given.
    """
    flat = {r["arch"]: _flat(r) for r in rows}
    acc = {a: f["accuracy"] for a, f in flat.items() if f["accuracy"] is not None}
    one_answer = {r["arch"]: a for r in rows if (a := single_answer(r))}
    parts: list[str] = []
    if one_answer:
        named = ", ".join(
            f"{DISPLAY.get(a, a)} ({'conservation needed' if v == 'positive' else 'not needed'})"
            for a, v in one_answer.items()
        )
        parts.append(
            f"Gave one answer for every test image, so has not learned the task at this "
            f"budget: {named}."
        )
    paper_order = [a for a in PAPER_ACCURACY if a in acc]
    # ranked among the paper's models only: the efficientnet row starts from ImageNet weights
    best = max(paper_order, key=lambda a: acc[a]) if paper_order else None
    if len(paper_order) >= 2:
        paper_best = max(paper_order, key=lambda a: PAPER_ACCURACY[a])
        if best == paper_best:
            parts.append(f"As in the paper, {DISPLAY[best]} is the most accurate ({acc[best]} %).")
        else:
            parts.append(
                f"Unlike the paper (best: {DISPLAY[paper_best]}), the most accurate here is "
                f"{DISPLAY.get(best, best)} ({acc[best]} % vs {acc.get(paper_best)} %)."
            )
    if paired and paired.get("vs"):
        parts.append(_paired_sentence(paired))
    if TWO_STAGE in acc and "mobilenet_v3_small" in acc:
        d = round(acc[TWO_STAGE] - acc["mobilenet_v3_small"], 1)
        if "mobilenet_v3_small" in one_answer:
            parts.append(
                f"The two-stage model is {d:+} points from MobileNetV3 alone, but that says "
                "nothing about the paper's claim (+1.2 points): its stage 1 answered the same "
                "for every image, so any gain is stage 2 (a ResNet-18 that sees the image in "
                "its overlay) learning the task on its own."
            )
        else:
            parts.append(_two_stage_claim(d, next(r for r in rows if r["arch"] == TWO_STAGE)))
    if EFFICIENTNET in acc and best is not None:
        parts.append(
            f"{DISPLAY[EFFICIENTNET]} always starts from ImageNet weights, so it is not "
            f"ranked with the others; it reaches {acc[EFFICIENTNET]} % "
            f"({acc[EFFICIENTNET] - acc[best]:+.1f} points from {DISPLAY.get(best, best)})."
        )
    big = [a for a in ("alexnet", "googlenet", "vgg16", "inception_v3") if a in acc]
    if "mobilenet_v3_small" in acc and big:
        beaten = [a for a in big if acc["mobilenet_v3_small"] > acc[a]]
        parts.append(
            f"MobileNetV3 beats {len(beaten)} of the {len(big)} larger CNNs "
            f"({', '.join(DISPLAY[a] for a in beaten) or 'none'}); the paper reports all four."
        )
    conf = [r["test"].get("confusion") for r in rows if r["test"].get("confusion")]
    if acc and conf:
        (tn, fp), (fn, tp) = conf[0]
        n_all = tn + fp + fn + tp
        majority = round(100 * max(tn + fp, fn + tp) / max(1, n_all), 1)
        if max(acc.values()) <= majority + 5:
            parts.append(
                f"No model is more than 5 points above always answering the majority class "
                f"({majority} %): this run is too short to rank the models."
            )
    if len({f["test_images"] for f in flat.values()}) == 1 and flat:
        n = next(iter(flat.values()))["test_images"]
        parts.append(
            f"With {n} test images one image is {100 / max(1, n):.2f} points, so differences "
            "of about a point are within noise."
        )
    return " ".join(parts) if parts else "Too few rows to compare with the paper."


def _two_stage_claim(d: float, row: dict[str, Any]) -> str:
    """Whether the two-stage row beats MobileNetV3 alone (the paper: +1.2 points).

    ``d`` is the accuracy difference in points. With the paired counts of the row's own
    stage 1 and stage 2 on the same test images (``paired_vs_stage1``), a gain only
    counts when the exact McNemar test says it is not chance (p < 0.05).
    """
    claim = "The paper's claim that the two-stage model beats MobileNetV3 alone (+1.2 points)"
    paired = row.get("paired_vs_stage1")
    if not paired:
        return f"{claim} {'holds' if d > 0 else 'does not hold'} here ({d:+} points)."
    b, c, p = (
        paired["b_stage1_only_right"],
        paired["c_stage2_only_right"],
        paired["p_value"],
    )
    counts = (
        f"paired on the same test images, stage 2 alone was right on {c}, its stage 1 "
        f"alone on {b}, exact McNemar p = {p:.2g}"
    )
    chosen = ""
    if row.get("decision_stage") == "stage1":
        chosen = (
            " Validation chose stage 1 as the decision stage, so the row decides as MobileNetV3."
        )
    if d > 0 and c > b and p < 0.05:
        verdict_ = f"holds here ({d:+} points; {counts})."
    elif d > 0:
        verdict_ = f"is not supported here: {d:+} points is within chance ({counts})."
    else:
        verdict_ = f"does not hold here ({d:+} points; {counts})."
    return f"{claim} {verdict_}{chosen}"


def _per_dataset_table(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Markdown lines: test accuracy (%) per dataset and model (empty without the data)."""
    names = sorted({n for r in rows for n in r.get("test_per_dataset") or {}})
    if not names:
        return []
    counts = {}
    for r in rows:
        for n, v in (r.get("test_per_dataset") or {}).items():
            counts.setdefault(n, v["n"])
    lines = [
        "",
        "Test accuracy per dataset (%), the same decision as above:",
        "",
        "| Model | " + " | ".join(f"{n} ({counts[n]})" for n in names) + " |",
        "| --- |" + " ---: |" * len(names),
    ]
    for r in rows:
        per = r.get("test_per_dataset") or {}
        cells = [_cell(round(100 * per[n]["accuracy"], 1)) if n in per else "n/a" for n in names]
        lines.append(f"| {_model_cell(r)} | " + " | ".join(cells) + " |")
    return lines


def _model_cell(row: dict[str, Any]) -> str:
    """The row's display name, marked when it is kept as figures only."""
    name = DISPLAY.get(row["arch"], row["arch"])
    return name + FIGURES_ONLY_MARK if row.get("figures_only") else name


def figures_only_note(rows: Sequence[dict[str, Any]]) -> str | None:
    """What the table's mark means for the figures-only rows; None when there are none."""
    kept = [r for r in rows if r.get("figures_only")]
    if not kept:
        return None
    by_source: dict[str, list[str]] = {}
    for r in kept:
        source = r.get("figures_source") or "source not recorded"
        by_source.setdefault(source, []).append(DISPLAY.get(r["arch"], r["arch"]))
    sources = "; ".join(f"{', '.join(names)}: {src}" for src, names in by_source.items())
    return (
        f"{FIGURES_ONLY_MARK.strip()} Figures only: the weights and per-image decisions of "
        "these rows were lost with their output folder, so they are not paired image by "
        f"image with the others, and figures that were not recorded read n/a ({sources}). "
        "Delete a row's result.json from the rows folder to train it again."
    )


def table_markdown(summary: dict[str, Any]) -> str:
    """The comparison as a Markdown table in the form of the paper's Table 1, plus notes."""
    rows = summary["rows"]
    head = (
        "| Model | Input (px) | Paper accuracy (%) | Accuracy (%) | Precision (%) | Recall (%) "
        "| F1 (%) | Class accuracy (%) | Parameters (M) | Size (MB, fp32) | CPU images/s "
        "| Epochs |\n"
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    )
    lines = [head]
    if summary.get("pending"):
        lines.insert(
            0,
            f"**Part of the run: {len(rows)} of {len(rows) + len(summary['pending'])} models "
            f"finished; still to train: "
            f"{', '.join(DISPLAY.get(a, a) for a in summary['pending'])}. Re-run the same "
            "command to continue.**\n",
        )
    threads = set()
    for r in rows:
        f = _flat(r)
        if f["cpu_threads"] is not None:
            threads.add(f["cpu_threads"])
        lines.append(
            f"| {_model_cell(r)} | {f['input_px']} | {_cell(f['paper_accuracy'])} | "
            f"{_cell(f['accuracy'])} | {_cell(f['precision'])} | {_cell(f['recall'])} | "
            f"{_cell(f['f1'])} | {_cell(f['class_accuracy'])} | {_cell(f['params_m'])} | "
            f"{_cell(f['size_mb'])} | {_cell(f['cpu_images_per_s'])} | {_cell(f['epochs_run'])} |"
        )
    lines += _per_dataset_table(rows)
    sp = summary["split"]
    cfg = summary["config"]
    notes = [
        "",
        verdict(rows, summary.get("paired_with_best")),
        "",
        f"Split: {sp['counts']['train']} train / {sp['counts']['val']} val / "
        f"{sp['counts']['test']} test images ({sp['file']}), classes {', '.join(sp['classes'])}; "
        f"positive (conservation needed): {', '.join(sp['positive'])}.",
        f"Budget for every row: at most {cfg['epochs']} epochs, Adam lr {cfg['lr']}, "
        f"{cfg['scheduler']} schedule, early stopping patience {cfg['patience']}, batch "
        f"{cfg['batch_size']}, the same augmentation, weights "
        f"{cfg['pretrained'] or 'from scratch'}, device {summary['device']}.",
        precision_note(rows),
        "Accuracy, precision, recall and F1: the binary decision 'conservation needed' on the "
        f"test split at threshold {cfg['threshold']} (two-stage: its decision stage). Class "
        "accuracy: the stage-1 classes. CPU images/s: batch "
        f"{cfg['bench_batch_size']}, torch.inference_mode, {cfg['bench_warmup']} warm-up "
        f"batches excluded, {cfg['bench_batches']} timed, {'/'.join(map(str, sorted(threads)))} "
        "threads; the two-stage figure is the whole pipeline with Grad-CAM.",
        *summary.get("notes", []),
    ]
    if kept := figures_only_note(rows):
        notes[1:1] = [kept, ""]
    if summary.get("command_line"):
        notes.append(f"Command: `{summary['command_line']}`")
    return "\n".join(lines) + "\n" + "\n".join(notes) + "\n"
