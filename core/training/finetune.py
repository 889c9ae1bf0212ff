"""Fine-tune a model on the reviews of surveys (``heritage finetune --from-survey``).

The reviewed photos or tiles of one or more surveys (:mod:`heritage.training.review_data`:
confirmed and missed defects as positives of their type's class, false alarms as
negatives; a scene-mode photo as its strongest tile) are added to the training data of
the **current model's stage 1**, which is trained a few more epochs with a small
learning rate by the same loop as ``heritage train`` (:func:`heritage.training.fit.fit`):

* **held out**: the reviews of photos whose sha256 falls in the hold-out share
  (:func:`heritage.training.review_data.is_held_out`; default 1 in 5) are never trained on;
* **replay**: with ``data_dirs`` (the standard data the model was trained on), their
  split is made again with the model's own split settings (same seed and fractions, so
  the same test split) and up to ``replay_per_class`` training images per class are
  mixed in, so that the model does not forget them; the validation split (capped the
  same way) decides the best epoch;
* **before and after**: the model as it is used (:class:`heritage.model.predict.TwoStageClassifier`,
  the card's decision stage and threshold) is scored on the held-out reviews and on the
  standard test split (``max_test_per_class`` caps it per dataset and class for quick
  runs), before and after;
* the batch norms of stage 1 are frozen (statistics and affine parameters:
  ``freeze_batchnorm``), so that a few hundred images in small batches do not shift
  them for every input (the first real run without it lost 2.4 points on the standard
  test split, ``docs/review.md``);
* stage 2, the threshold and the decision stage are kept as they are; the new card
  records the surveys, the number of reviews and both evaluations (``training
  ["finetune"]``, ``metrics["finetune"]``); the card's older ``metrics["test"]`` are the
  base model's.

The default model folder (and the base model's own folder) is never written unless
``replace_default`` is set.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from heritage.io.fileio import write_json
from heritage.kernel.errors import DataError, OutputNotWritableError
from heritage.kernel.progress import NullProgress, Progress
from heritage.training.review_data import (
    HOLD_OUT_SHARE,
    ReviewedItem,
    load_item_image,
    model_label,
    reviewed_items,
)

if TYPE_CHECKING:
    import numpy as np

    from heritage.model.card import LoadedModel
    from heritage.training.data import Item

log = logging.getLogger(__name__)

HOLD_OUT_RULE = "held out when int(sha256[:8], 16) < share * 16**8 (per photo)"


@dataclass(frozen=True)
class FinetuneConfig:
    """Everything ``heritage finetune`` needs (module docstring)."""

    surveys: tuple[str, ...]
    model_dir: str
    base_model: str | None = None
    data_dirs: tuple[str, ...] = ()
    extra_positives: tuple[str, ...] = ()
    run_dir: str | None = None  # None: <model_dir>-run beside the model folder
    hold_out: float = HOLD_OUT_SHARE
    epochs: int = 3
    lr: float = 2e-5
    batch_size: int = 16
    #: each reviewed training image is seen this many times per epoch
    review_repeat: int = 4
    replay_per_class: int = 100
    max_test_per_class: int | None = None
    #: keep the batch norms' statistics and affine parameters as the base model has them
    #: (a few hundred images in small batches would otherwise shift them for every input)
    freeze_batchnorm: bool = True
    device: str = "cpu"
    seed: int = 0
    photo_root: str | None = None
    replace_default: bool = False
    version: str | None = None
    command_line: str = ""

    def __post_init__(self) -> None:
        if not self.surveys:
            raise ValueError("give at least one survey (--from-survey SURVEY.gpkg)")
        if not 0.0 <= self.hold_out < 1.0:
            raise ValueError("hold_out must be in [0, 1)")
        if self.epochs < 1 or self.batch_size < 1 or self.review_repeat < 1:
            raise ValueError("epochs, batch_size and review_repeat must be >= 1")

    @property
    def resolved_run_dir(self) -> Path:
        """The run folder (split, crops, checkpoint, ``finetune.json``)."""
        if self.run_dir:
            return Path(self.run_dir)
        out = Path(self.model_dir)
        return out.with_name(out.name + "-run")


def _same(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def check_output(cfg: FinetuneConfig, base: Path) -> Path:
    """The output folder, refused when it is the default or the base model's folder
    (unless ``replace_default``) or holds another model."""
    from heritage.model.card import default_model_dir

    out = Path(cfg.model_dir)
    protected = _same(out, default_model_dir()) or _same(out, base)
    if protected and not cfg.replace_default:
        raise OutputNotWritableError(
            f"{out} is the default (or the base) model: the fine-tuned model is not written "
            "over it unless you ask (--replace-default); give a new folder with -o"
        )
    if (out / "model.json").is_file() and not protected:
        raise OutputNotWritableError(
            f"{out} already holds a model; give a new folder with -o (or remove it)"
        )
    return out


def _crop_items(
    reviews: Sequence[ReviewedItem], folder: Path, labels: Sequence[str], positives: Sequence[str]
) -> list[Item]:
    """Write each review's image to ``folder/<split>/<class>/`` and index it as an Item."""
    from heritage.training.data import Item

    out = []
    for r in reviews:
        split = "held_out" if r.held_out else "train"
        label = model_label(r, labels, positives)
        path = folder / split / label / r.file_name
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.is_file():
            load_item_image(r).save(path, format="JPEG", quality=95)
        out.append(Item(path.resolve(), (folder / split).resolve(), "reviews", label,
                        r.sha256, r.sha256, split))  # fmt: skip
    return out


def _standard_split(
    cfg: FinetuneConfig, card: Any, run_dir: Path
) -> tuple[dict[str, list[Item]], dict[str, Any]]:
    """The standard data's split, made with the base model's split settings."""
    from heritage.training import data as D

    if not cfg.data_dirs:
        return {"train": [], "val": [], "test": []}, {}
    tc = dict(card.training.get("config") or {})
    settings = D.SplitSettings(
        data_dirs=tuple(str(Path(d).resolve()) for d in cfg.data_dirs),
        extra_positives=tuple(str(Path(d).resolve()) for d in cfg.extra_positives),
        extra_positive_class=str(tc.get("extra_positive_class", "crack")),
        val_fraction=float(tc.get("val_fraction", 0.1)),
        test_fraction=float(tc.get("test_fraction", 0.2)),
        seed=int(tc.get("seed", 0)),
        max_per_class=tc.get("max_per_class"),
    )
    items, info = D.make_or_load_split(settings, run_dir)
    by_split = {s: [it for it in items if it.split == s] for s in ("train", "val", "test")}
    return by_split, info


def _cap(items: Sequence[Item], n: int | None, seed: int) -> list[Item]:
    """At most ``n`` items per (dataset, class), chosen at random with ``seed``."""
    import random

    if n is None:
        return list(items)
    groups: dict[tuple[str, str], list[Item]] = {}
    for it in items:
        groups.setdefault((it.dataset, it.label), []).append(it)
    rng = random.Random(seed)
    out: list[Item] = []
    for key in sorted(groups):
        group = groups[key]
        out += group if len(group) <= n else rng.sample(group, n)
    return out


def _p_final(
    loaded: LoadedModel, paths: Sequence[Path], device: str, batch_size: int
) -> np.ndarray:
    """P(conservation needed) of each image as the model decides (its decision stage).

    A model deciding on stage 1 needs neither Grad-CAM nor stage 2 for that: its stage-1
    forward pass on the same input (:func:`heritage.model.predict.to_model_rgb`, normalised)
    gives ``p_final`` (the sum of the positive classes' softmax), several times faster
    than :class:`heritage.model.predict.TwoStageClassifier`; a stage-2 model goes through it.
    """
    import numpy as np
    import torch

    from heritage.model.predict import TwoStageClassifier, load_image
    from heritage.model.preprocess import normalise, to_model_rgb

    card = loaded.card
    out: list[float] = []
    if card.decision_stage != "stage1":
        with TwoStageClassifier(loaded, device) as clf:
            for path, res in clf.classify_paths(paths, batch_size):
                if isinstance(res, str):
                    raise DataError(f"cannot classify {path}: {res}")
                out.append(res.p_final)
        return np.asarray(out, dtype=float)
    net = loaded.stage1.to(device).eval()
    pos = card.positive_indices
    for i in range(0, len(paths), batch_size):
        rgbs = [to_model_rgb(load_image(p), card.input_size) for p in paths[i : i + batch_size]]
        with torch.inference_mode():
            logits = net(normalise(rgbs, card.mean, card.std).to(device)).float()
            probs = torch.softmax(logits, dim=-1)[:, pos].sum(dim=1)
        out += probs.cpu().tolist()
    return np.asarray(out, dtype=float)


def _evaluate(
    loaded: LoadedModel, items: Sequence[Item], positives: Sequence[str], cfg: FinetuneConfig
) -> dict[str, Any] | None:
    """Binary metrics (accuracy, ...) at the card's threshold; None without items."""
    import numpy as np

    from heritage.model.metrics import binary_metrics

    if not items:
        return None
    y = np.array([it.label in set(positives) for it in items], dtype=int)
    p = _p_final(loaded, [it.path for it in items], cfg.device, cfg.batch_size)
    m = binary_metrics(y, p, loaded.card.threshold)
    by_dataset = {}
    names = np.array([it.dataset for it in items])
    for name in sorted(set(names)):
        sel = names == name
        by_dataset[str(name)] = binary_metrics(y[sel], p[sel], loaded.card.threshold)["accuracy"]
    return {**m, "accuracy_by_dataset": by_dataset}


def _short(m: dict[str, Any] | None) -> str:
    if not m:
        return "-"
    keys = ("accuracy", "recall", "specificity")
    return ", ".join(f"{k} {m[k]:.3f}" for k in keys if m.get(k) is not None) + f" (n={m['n']})"


def run_finetune(cfg: FinetuneConfig, progress: Progress | None = None) -> dict[str, Any]:
    """Fine-tune the base model on the reviews of ``cfg.surveys``; returns the report
    (also ``finetune.json`` in the run folder) and writes the new model folder."""
    import torch

    from heritage.model.card import LoadedModel, default_model_dir, load_model, save_model
    from heritage.model.preprocess import eval_transform, resolve_device
    from heritage.model.provenance import release_version
    from heritage.training import data as D
    from heritage.training.fit import FitConfig, fit
    from heritage.training.train import oversample_indices

    progress = progress or NullProgress()
    t0 = time.monotonic()
    base = Path(cfg.base_model) if cfg.base_model else default_model_dir()
    out = check_output(cfg, base)
    device = resolve_device(cfg.device)
    loaded = load_model(base, device="cpu")
    card = loaded.card
    labels, positives = list(card.stage1.labels), list(card.positive_labels)
    run_dir = cfg.resolved_run_dir
    run_dir.mkdir(parents=True, exist_ok=True)

    progress.message("reading the reviews")
    reviews = [r for s in cfg.surveys for r in reviewed_items(s, cfg.hold_out, cfg.photo_root)]
    if not reviews:
        raise DataError(
            f"no usable reviews (confirmed, false alarm, missed) in {', '.join(cfg.surveys)}; "
            "review the survey first (QGIS review panel or 'heritage review')"
        )
    review_items = _crop_items(reviews, run_dir / "reviews", labels, positives)
    train_reviews = [it for it in review_items if it.split == "train"]
    held_out = [it for it in review_items if it.split == "held_out"]
    if not train_reviews:
        raise DataError(
            f"all {len(review_items)} review(s) fall in the held-out share ({cfg.hold_out}); "
            "review more photos or lower --hold-out"
        )
    standard, split_info = _standard_split(cfg, card, run_dir)
    replay = _cap(standard["train"], cfg.replay_per_class, cfg.seed)
    val = _cap(standard["val"], cfg.replay_per_class, cfg.seed)
    test = _cap(standard["test"], cfg.max_test_per_class, cfg.seed)

    progress.message(f"scoring the base model on {len(held_out)} held-out review(s)")
    before = {
        "held_out_reviews": _evaluate(loaded, held_out, positives, cfg),
        "standard_test": _evaluate(loaded, test, positives, cfg),
        "train_reviews": _evaluate(loaded, train_reviews, positives, cfg),
    }

    train_items = [*replay, *train_reviews]
    ds = D.stage1_dataset(train_items, labels, D.train_transform(card.input_size))
    indices = oversample_indices(train_items, {"reviews": cfg.review_repeat})
    loader = D.make_loader(
        ds, cfg.batch_size, shuffle=True, device=device, seed=cfg.seed, indices=indices
    )
    val_loader = None
    if val:
        val_ds = D.stage1_dataset(val, labels, eval_transform(card.input_size))
        val_loader = D.make_loader(val_ds, cfg.batch_size, shuffle=False, device=device)
    stage1 = loaded.stage1
    for p in stage1.parameters():
        p.requires_grad_(True)
    if cfg.freeze_batchnorm:  # heritage.training.fit.train_mode keeps frozen batch norms in eval
        for m in stage1.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                for p in m.parameters(recurse=False):
                    p.requires_grad_(False)
    fit_cfg = FitConfig(
        epochs=cfg.epochs, lr=cfg.lr, patience=0, scheduler="none", device=device,
        checkpoint_every=0, seed=cfg.seed,
    )  # fmt: skip
    result = fit(stage1, loader, val_loader, fit_cfg, run_dir, "finetune", progress, loss="ce")
    stage1 = stage1.to("cpu").eval()
    tuned = LoadedModel(card, stage1, loaded.stage2, None)

    progress.message("scoring the fine-tuned model")
    after = {
        "held_out_reviews": _evaluate(tuned, held_out, positives, cfg),
        "standard_test": _evaluate(tuned, test, positives, cfg),
        "train_reviews": _evaluate(tuned, train_reviews, positives, cfg),
    }
    counts = Counter((it.split, it.label) for it in review_items)
    section = {
        "base_model": {"model_id": card.model_id, "version": card.version,
                       "stage1_sha256": card.stage1.sha256},
        "surveys": list(cfg.surveys),
        "reviews": len(review_items),
        "reviews_train": len(train_reviews),
        "reviews_held_out": len(held_out),
        "reviews_per_class": {f"{s}/{c}": n for (s, c), n in sorted(counts.items())},
        "reviewers": sorted({r.reviewer for r in reviews}),
        "hold_out": {"share": cfg.hold_out, "rule": HOLD_OUT_RULE},
        "replay_images": len(replay),
        "validation_images": len(val),
        "standard_test_images": len(test),
        "standard_split": split_info.get("counts", {}),
        "data_dirs": list(cfg.data_dirs),
        "config": asdict(cfg),
        "fit": {"best_epoch": result.best_epoch, "epochs_run": result.epochs_run,
                "seconds": round(result.seconds, 1)},
        "seconds": round(time.monotonic() - t0, 1),
        "torch": release_version(torch.__version__),
    }  # fmt: skip
    evaluation = {"before": before, "after": after, "threshold": card.threshold,
                  "decision_stage": card.decision_stage}  # fmt: skip
    new_card = dataclasses.replace(
        card,
        version=cfg.version or f"{card.version}+reviews",
        training={**card.training, "finetune": section},
        metrics={**card.metrics, "finetune": evaluation},
        notes=(card.notes + " " if card.notes else "")
        + f"Stage 1 fine-tuned on {len(train_reviews)} reviewed image(s) of "
        f"{len(cfg.surveys)} survey(s); metrics['test'] are the base model's, "
        "metrics['finetune'] compares before and after.",
    )
    saved = save_model(out, new_card, stage1, loaded.stage2)
    report = {
        "model_dir": str(out),
        "version": saved.version,
        **{k: section[k] for k in ("reviews", "reviews_train", "reviews_held_out")},
        "before": before,
        "after": after,
        "seconds": section["seconds"],
    }
    write_json(run_dir / "finetune.json", report)
    progress.message(
        f"held-out reviews: {_short(before['held_out_reviews'])} -> "
        f"{_short(after['held_out_reviews'])}; standard test: "
        f"{_short(before['standard_test'])} -> {_short(after['standard_test'])}"
    )
    return report
