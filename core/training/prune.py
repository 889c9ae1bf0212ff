"""Structured pruning of the stage-1 network (torch-pruning).

:func:`prune_model` removes whole channels with torch-pruning's dependency graph
(``tp.pruner.BasePruner`` - the class ``MetaPruner``/``MagnitudePruner`` alias - with
group L2-magnitude importance), so coupled layers stay consistent: a depthwise conv
loses the same channels as the 1x1 conv before it, a squeeze-excitation block's
``fc2`` the channels it rescales, residual additions keep matching widths. The final
classifier layer is never pruned (its outputs are the classes); ``round_to=8`` keeps
channel counts multiples of 8, which CPU kernels handle best. Hardswish/hardsigmoid
have no parameters and need nothing.

A pruned network has channel counts no torchvision constructor makes. It is stored as
an ordinary safetensors state dict and rebuilt from the tensor shapes alone
(:func:`heritage.model.pruned.rebuild_pruned`).

:func:`prune_and_finetune` is ``heritage prune``: prune (raising the ratio until both
parameters and the fp32 safetensors file are at least ``min_reduction`` smaller),
fine-tune with :func:`heritage.training.fit.fit` on the training split the model was trained on,
evaluate the original and the pruned model on the same test split (stage 1 alone and
the two-stage decision), measure CPU speed and write the pruned model folder plus a
JSON/Markdown report.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from heritage.io.fileio import write_json
from heritage.kernel.errors import DataError, ModelError
from heritage.kernel.progress import NullProgress, Progress
from heritage.model.measure import param_count
from heritage.model.pruned import layer_widths, rebuild_pruned

if TYPE_CHECKING:
    from heritage.model.card import LoadedModel, PruningRecord
    from heritage.training.data import Item

log = logging.getLogger(__name__)

#: importance criteria offered by ``heritage prune --importance``
IMPORTANCES = ("l2", "l1", "fpgm", "lamp")


# --------------------------------------------------------------------------- pruning


def _importance(name: str) -> Any:
    import torch_pruning as tp

    if name == "l2":
        return tp.importance.GroupMagnitudeImportance(p=2)
    if name == "l1":
        return tp.importance.GroupMagnitudeImportance(p=1)
    if name == "fpgm":
        return tp.importance.FPGMImportance()
    if name == "lamp":
        return tp.importance.LAMPImportance(p=2)
    raise ValueError(f"importance must be one of {IMPORTANCES}, not {name!r}")


def fp32_safetensors_bytes(model: nn.Module) -> int:
    """Size in bytes of the model's state dict as an fp32 safetensors file."""
    from safetensors.torch import save

    tensors = {
        k: (v.detach().float() if v.is_floating_point() else v.detach()).cpu().contiguous().clone()
        for k, v in model.state_dict().items()
    }
    return len(save(tensors, metadata={"format": "pt"}))


def prune_model(
    model: nn.Module,
    arch: str,
    ratio: float,
    input_size: int,
    *,
    round_to: int | None = 8,
    importance: str = "l2",
) -> nn.Module:
    """A structurally pruned copy of ``model`` (``model`` itself is left untouched).

    ``ratio`` is torch-pruning's ``pruning_ratio``: the share of channels removed from
    every prunable group (parameters shrink faster, roughly ``1 - (1 - ratio)^2``).
    The classification head (:func:`heritage.model.zoo.head_layer`) keeps its outputs.
    """
    import torch_pruning as tp

    from heritage.model.zoo import head_layer

    if not 0.0 < ratio < 1.0:
        raise ValueError(f"the pruning ratio must lie in (0, 1), got {ratio}")
    pruned = copy.deepcopy(model).cpu().float().eval()
    example = torch.randn(1, 3, input_size, input_size)
    pruner = tp.pruner.BasePruner(
        pruned,
        example,
        importance=_importance(importance),
        pruning_ratio=ratio,
        ignored_layers=[pruned.get_submodule(head_layer(arch))],
        round_to=round_to,
    )
    pruner.step()
    with torch.inference_mode():
        out = pruned(example)
    if out.shape[-1] != model.get_submodule(head_layer(arch)).out_features:
        raise ModelError("pruning changed the number of classes; this is a bug")
    return pruned


@dataclass(frozen=True)
class PruneAttempt:
    """One pruning ratio tried and what it removed (shares of the original)."""

    ratio: float
    params_before: int
    params_after: int
    bytes_before: int
    bytes_after: int

    @property
    def param_reduction(self) -> float:
        """Share of parameters removed."""
        return 1.0 - self.params_after / self.params_before

    @property
    def size_reduction(self) -> float:
        """Share of the fp32 safetensors size removed."""
        return 1.0 - self.bytes_after / self.bytes_before


def prune_to_target(
    model: nn.Module,
    arch: str,
    input_size: int,
    *,
    ratio: float = 0.25,
    min_reduction: float = 0.2,
    ratio_step: float = 0.05,
    max_ratio: float = 0.9,
    round_to: int | None = 8,
    importance: str = "l2",
) -> tuple[nn.Module, list[PruneAttempt]]:
    """Prune ``model`` at ``ratio``, raising it by ``ratio_step`` until both the parameter
    count and the fp32 safetensors size shrink by at least ``min_reduction``.

    Each attempt starts from the original weights. Returns the pruned copy and every
    attempt; raises ModelError when even ``max_ratio`` is not enough.
    """
    p0, b0 = param_count(model), fp32_safetensors_bytes(model)
    attempts: list[PruneAttempt] = []
    r = ratio
    while r <= max_ratio + 1e-9:
        pruned = prune_model(model, arch, r, input_size, round_to=round_to, importance=importance)
        a = PruneAttempt(round(r, 4), p0, param_count(pruned), b0, fp32_safetensors_bytes(pruned))
        attempts.append(a)
        log.info(
            "ratio %.2f: %.1f %% fewer parameters, %.1f %% smaller file",
            r,
            100 * a.param_reduction,
            100 * a.size_reduction,
        )
        if a.param_reduction >= min_reduction and a.size_reduction >= min_reduction:
            return pruned, attempts
        r += ratio_step
    raise ModelError(
        f"pruning up to ratio {max_ratio} did not remove {min_reduction:.0%} of the parameters "
        "and file size; raise --max-ratio or lower --min-reduction"
    )


# --------------------------------------------------------------------------- loading


def load_pruned(model_dir: str | Path, device: str = "cpu") -> LoadedModel:
    """Load a model folder whose stage 1 may be pruned, sha256-verified, without pickle.

    Stage 1 is rebuilt with :func:`rebuild_pruned` from the shapes in its safetensors
    file; stage 2 (never pruned) as usual. Equivalent to what
    :func:`heritage.model.card.load_model` does once it calls :func:`rebuild_pruned`.
    """
    from safetensors.torch import load

    from heritage.model import card as mc

    model_dir = Path(model_dir)
    card = mc.read_card(model_dir)
    data = mc._verified_bytes(model_dir, card.stage1, "stage1")  # same checks and messages
    state = load(data)
    s1 = rebuild_pruned(card.stage1.arch, state, card.stage1.num_outputs)
    s1.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    s1.float().eval().to(device)
    s2 = None
    if card.stage2 is not None:
        net2 = mc._network(card.stage2)
        limit2 = mc.weights_limit(card.stage2, net2)
        s2 = mc._build(
            card.stage2,
            mc._verified_bytes(model_dir, card.stage2, "stage2", limit2),
            model_dir / card.stage2.weights,
            net2,
        ).to(device)
    return mc.LoadedModel(card=card, stage1=s1, stage2=s2, model_dir=model_dir)


# --------------------------------------------------------------------------- evaluation


def evaluate_items(
    loaded: LoadedModel,
    items: Sequence[Item],
    *,
    stage1_threshold: float,
    device: str = "cpu",
    batch_size: int = 16,
    progress: Progress | None = None,
    label: str = "model",
) -> dict[str, Any]:
    """Stage-1 alone and two-stage decision metrics of ``loaded`` on ``items``.

    Returns ``{"n", "stage1": binary metrics at ``stage1_threshold`` plus
    ``multiclass_accuracy``, "decision": binary metrics of the card's decision (its
    ``decision_stage`` and ``threshold``, Grad-CAM overlays from this stage 1)}``.
    """
    import numpy as np

    from heritage.model.metrics import binary_metrics
    from heritage.model.predict import TwoStageClassifier
    from heritage.training.data import open_rgb

    progress = progress or NullProgress()
    card = loaded.card
    positives = set(card.positive_labels)
    y = np.array([it.label in positives for it in items], dtype=int)
    y_cls = [it.label for it in items]
    p1, pf, pred = [], [], []
    progress.start(f"evaluating {label} on the test split", total=len(items))
    with TwoStageClassifier(loaded, device=device) as clf:
        for start in range(0, len(items), batch_size):
            progress.check_cancelled()
            chunk = items[start : start + batch_size]
            for r in clf.classify([open_rgb(it.path) for it in chunk]):
                p1.append(r.p_stage1)
                pf.append(r.p_final)
                pred.append(r.stage1.label)
            progress.step(len(chunk))
    strip = ("defined", "notes")
    s1 = {k: v for k, v in binary_metrics(y, p1, stage1_threshold).items() if k not in strip}
    s1["multiclass_accuracy"] = float(np.mean([a == b for a, b in zip(pred, y_cls, strict=True)]))
    dec = {k: v for k, v in binary_metrics(y, pf, card.threshold).items() if k not in strip}
    dec["stage"] = card.decision_stage
    return {"n": len(items), "stage1": s1, "decision": dec}


def stage1_threshold(card: Any) -> float:
    """The stage-1 threshold recorded at training (``metrics.thresholds.stage1``), else
    the card's threshold when stage 1 decides, else 0.5."""
    thr = (card.metrics or {}).get("thresholds", {}).get("stage1")
    if thr is not None:
        return float(thr)
    return float(card.threshold) if card.decision_stage == "stage1" else 0.5


# --------------------------------------------------------------------------- orchestration


@dataclass(frozen=True)
class PruneConfig:
    """Settings of :func:`prune_and_finetune` (``heritage prune``)."""

    model_dir: str
    out_dir: str
    data_dirs: tuple[str, ...] = ()  # recreate the split when the run folder is gone
    data_root: str | None = None  # else find the card's data sets by name under this folder
    run_dir: str | None = None  # the training run folder holding split.csv
    work_dir: str | None = None  # fine-tuning run folder [default: <out_dir>-run]
    ratio: float = 0.25
    min_reduction: float = 0.2
    ratio_step: float = 0.05
    max_ratio: float = 0.9
    round_to: int = 8
    importance: str = "l2"
    epochs: int = 5
    lr: float = 1e-4
    batch_size: int = 32
    patience: int = 3
    scheduler: str = "plateau"
    device: str = "auto"
    workers: int = 0
    seed: int = 0
    resume: bool = False
    cache_images: bool = False
    checkpoint_every: int = 50
    bench_batch_size: int = 32
    bench_batches: int = 5
    eval_batch_size: int = 16
    command_line: str = ""

    @property
    def resolved_work_dir(self) -> Path:
        """The fine-tuning run folder."""
        if self.work_dir:
            return Path(self.work_dir)
        o = Path(self.out_dir)
        return o.parent / f"{o.name}-run"


def _split_items(cfg: PruneConfig, card: Any, work_dir: Path) -> tuple[list[Item], str]:
    """The model's training split: ``split.csv`` of ``--run-dir``, else recreated with the
    card's seed and fractions from ``--data``, else from the card's data sets found by
    name under ``--data-root`` (:func:`heritage.training.data.find_datasets`, each checked
    against its recorded fingerprint). When the card records the split's fingerprint
    (:func:`heritage.training.data.split_fingerprint`), the split must match it:
    fine-tuning on another split would train on the model's test images."""
    from heritage.training import data as D

    if cfg.run_dir:
        if not (Path(cfg.run_dir) / D.SPLIT_CSV).is_file():
            raise DataError(f"no {D.SPLIT_CSV} in --run-dir {cfg.run_dir}")
        items, source = D.load_split(Path(cfg.run_dir)), f"split.csv of {cfg.run_dir}"
    elif cfg.data_dirs or cfg.data_root:
        items, source = _recreated_split(cfg, card, work_dir)
    else:
        raise DataError(_no_split_message(card))
    recorded = (card.training.get("split") or {}).get("fingerprint")
    if recorded and D.split_fingerprint(items) != recorded:
        raise DataError(
            f"the split ({source}) is not the one the model was trained on (its fingerprint "
            "differs from the card's training.split.fingerprint); give the training run "
            "folder with --run-dir, or the same data folders with --data"
        )
    return items, source


def _recreated_split(cfg: PruneConfig, card: Any, work_dir: Path) -> tuple[list[Item], str]:
    """The split made again (or reused from ``work_dir``) from ``--data`` or the card's
    data sets under ``--data-root``, with the card's seed, fractions and cap."""
    from heritage.training import data as D

    tc = card.training.get("config", {})
    records = card.training.get("datasets") or []
    if cfg.data_dirs:
        data_dirs = tuple(str(Path(d).resolve()) for d in cfg.data_dirs)
        # version-1 cards name the extra positives by the path they were trained from
        extra = tuple(p for p in card.training.get("extra_positives", ()) if Path(p).is_dir())
        unnamed = [str(r["name"]) for r in records if r.get("role") == "extra_positives"]
        if unnamed and not extra:
            raise DataError(
                f"the model was also trained on the extra positives of {', '.join(unnamed)}, "
                "which --data cannot name: give --data-root ROOT (the folder holding its data "
                "sets as ROOT/<name>) or the training run folder with --run-dir"
            )
        given = "--data"
    else:
        root = Path(str(cfg.data_root))
        data_dirs, extra = D.find_datasets(root, records, tc.get("extra_positives", ()))
        given = f"the data sets under {root}"
    settings = D.SplitSettings(
        data_dirs=data_dirs,
        extra_positives=extra,
        extra_positive_class=tc.get("extra_positive_class", "crack"),
        val_fraction=float(tc.get("val_fraction", 0.1)),
        test_fraction=float(tc.get("test_fraction", 0.2)),
        seed=int(tc.get("seed", 0)),
        max_per_class=tc.get("max_per_class"),
    )
    if not cfg.data_dirs and not (work_dir / D.SPLIT_CSV).is_file():
        # found by name: check each one's content before a split of it is written
        D.check_datasets(D.collect_items(settings)[0], records)
    items, _ = D.make_or_load_split(settings, work_dir)
    return items, f"recreated from {given} with the card's seed {settings.seed} in {work_dir}"


def _no_split_message(card: Any) -> str:
    """What to pass when neither ``--run-dir``, ``--data`` nor ``--data-root`` is given."""
    from heritage.training.data import DATA_ROOT_ENV

    names = [str(r["name"]) for r in card.training.get("datasets") or []]
    by_name = (
        f"; or --data-root ROOT (or ${DATA_ROOT_ENV}), the folder holding its data sets "
        f"{', '.join(names)} as ROOT/<name>/<class>/<image>"
        if names
        else ""
    )
    return (
        "the model's training split is needed: give --run-dir RUN_DIR (the training run "
        "folder with split.csv) or the training data folders with --data to recreate it" + by_name
    )


def _stored_fp16(model_dir: Path, weights: str) -> bool:
    from safetensors import safe_open

    with safe_open(str(model_dir / weights), framework="pt") as fh:
        for key in fh.keys():  # noqa: SIM118 - safe_open has no __iter__
            t = fh.get_slice(key)
            return t.get_dtype() in ("F16", "BF16")
    return False


@dataclass(frozen=True)
class _Split:
    """The model's training split by part, its classes and where it came from."""

    by: dict[str, list[Item]]
    classes: list[str]
    source: str


def _open_original(cfg: PruneConfig) -> tuple[LoadedModel, str]:
    """Step 1: check the folders, make the fine-tuning run folder, resolve the device
    and load the model to prune (on the CPU). Returns the model and the device."""
    from heritage.model.card import load_model, read_card
    from heritage.model.preprocess import resolve_device

    model_dir, out_dir = Path(cfg.model_dir), Path(cfg.out_dir)
    if model_dir.resolve() == out_dir.resolve():
        raise DataError("the pruned model folder must differ from the original one")
    cfg.resolved_work_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.device)
    if read_card(model_dir).pruning is not None:
        raise ModelError(f"{model_dir} is already pruned; prune the original model instead")
    return load_model(model_dir, device="cpu"), device


def _training_split(cfg: PruneConfig, card: Any) -> _Split:
    """Step 2: the split the model was trained on (:func:`_split_items`), checked to have
    the model's classes and both a train and a test part."""
    from heritage.training import data as D

    items, source = _split_items(cfg, card, cfg.resolved_work_dir)
    classes = D.class_names(items)
    if tuple(classes) != tuple(card.stage1.labels):
        raise DataError(
            f"the split's classes {classes} differ from the model's {list(card.stage1.labels)}; "
            "give the data folders the model was trained on"
        )
    by = {s: [it for it in items if it.split == s] for s in D.SPLITS}
    if not by["train"] or not by["test"]:
        raise DataError("the split has no train or no test images; cannot fine-tune and compare")
    log.info("split: %s (%s)", {s: len(v) for s, v in by.items()}, source)
    return _Split(by, classes, source)


def _prune_stage1(
    cfg: PruneConfig, orig: LoadedModel, progress: Progress
) -> tuple[nn.Module, list[PruneAttempt]]:
    """Step 3: stage 1 pruned until it is ``cfg.min_reduction`` smaller
    (:func:`prune_to_target`)."""
    arch = orig.card.stage1.arch
    progress.message(f"pruning {arch} (ratio {cfg.ratio}, >= {cfg.min_reduction:.0%} smaller)")
    return prune_to_target(
        orig.stage1,
        arch,
        orig.card.input_size,
        ratio=cfg.ratio,
        min_reduction=cfg.min_reduction,
        ratio_step=cfg.ratio_step,
        max_ratio=cfg.max_ratio,
        round_to=cfg.round_to,
        importance=cfg.importance,
    )


def _finetune(
    cfg: PruneConfig, pruned: nn.Module, split: _Split, size: int, device: str, progress: Progress
) -> tuple[nn.Module, Any]:
    """Step 4: the pruned stage 1 fine-tuned on the training split (validation for early
    stopping) with :func:`heritage.training.fit.fit`; returns it on the CPU in float32, in
    eval mode, and the fit result."""
    from heritage.model.preprocess import eval_transform
    from heritage.training import data as D
    from heritage.training.fit import FitConfig, fit

    by = split.by
    ds = {
        s: D.stage1_dataset(
            by[s],
            split.classes,
            D.train_transform(size) if s == "train" else eval_transform(size),
            D.cache_size_for(s, size) if cfg.cache_images else None,
            progress,
        )
        for s in ("train", "val")
        if by[s]
    }
    loaders = {
        s: D.make_loader(
            d, cfg.batch_size, shuffle=s == "train", workers=cfg.workers, device=device,
            seed=cfg.seed,
        )
        for s, d in ds.items()
    }  # fmt: skip
    fcfg = FitConfig(
        epochs=cfg.epochs,
        lr=cfg.lr,
        patience=cfg.patience,
        scheduler=cfg.scheduler,  # type: ignore[arg-type]
        device=device,
        checkpoint_every=cfg.checkpoint_every,
        resume=cfg.resume,
        seed=cfg.seed,
    )
    fr = fit(pruned, loaders["train"], loaders.get("val"), fcfg, cfg.resolved_work_dir,
             "stage1_pruned", progress)  # fmt: skip
    return pruned.cpu().float().eval(), fr


def _save_pruned(
    cfg: PruneConfig,
    orig: LoadedModel,
    pruned: nn.Module,
    attempts: list[PruneAttempt],
    epochs_run: int,
) -> tuple[LoadedModel, PruningRecord, bool]:
    """Step 5: the pruned model folder written (stage 2 as it was, stored in the
    original's precision, the card's ``pruning`` filled in) and read back as any user
    would load it. Returns the reloaded model, the pruning record and whether the
    weights are stored as float16."""
    from heritage.model.card import PruningRecord, save_model

    card, used = orig.card, attempts[-1]
    fp16 = _stored_fp16(Path(cfg.model_dir), card.stage1.weights)
    pruning_info = PruningRecord(
        ratio=used.ratio,
        method=f"torch-pruning {_tp_version()} BasePruner, {cfg.importance} group importance, "
        f"round_to={cfg.round_to}, head {card.stage1.arch} classifier kept",
        source_model=f"{card.model_id} {card.version}",
        source_sha256=card.stage1.sha256,
        stage1_layer_widths=layer_widths(pruned),
        attempts=[
            {**asdict(a), "param_reduction": a.param_reduction, "size_reduction": a.size_reduction}
            for a in attempts
        ],
    )
    new_card = replace(
        card,
        model_id=f"{card.model_id}-pruned",
        pruning=pruning_info,
        created="",
        notes=(card.notes + " " if card.notes else "")
        + f"Stage 1 pruned (ratio {used.ratio}) and fine-tuned for {epochs_run} epochs.",
    )
    save_model(Path(cfg.out_dir), new_card, pruned, orig.stage2, fp16=fp16)
    return load_pruned(cfg.out_dir, device="cpu"), pruning_info, fp16


def _compare(
    cfg: PruneConfig,
    orig: LoadedModel,
    reloaded: LoadedModel,
    test: Sequence[Item],
    device: str,
    progress: Progress,
) -> dict[str, Any]:
    """Step 6: the original and the pruned model on the same test split (stage 1 at the
    original's stage-1 threshold, and the decision), then their CPU speed: the report's
    ``test`` and ``cpu_images_per_s``."""
    from heritage.model.measure import measure_throughput

    thr1 = stage1_threshold(orig.card)
    test_metrics = {
        when: evaluate_items(
            loaded,
            test,
            stage1_threshold=thr1,
            device=device,
            batch_size=cfg.eval_batch_size,
            progress=progress,
            label=label,
        )
        for when, loaded, label in (("before", orig, "original"), ("after", reloaded, "pruned"))
    }
    progress.message("measuring CPU speed")
    size = orig.card.input_size
    speed = {
        when: measure_throughput(
            loaded.stage1, size, batch_size=cfg.bench_batch_size, batches=cfg.bench_batches
        )
        for when, loaded in (("before", orig), ("after", reloaded))
    }
    return {"test": test_metrics, "cpu_images_per_s": speed}


def _report(
    cfg: PruneConfig,
    orig: LoadedModel,
    reloaded: LoadedModel,
    split: _Split,
    pruning_info: PruningRecord,
    fp16: bool,
    fr: Any,
    compared: dict[str, Any],
) -> dict[str, Any]:
    """Step 7: the report (sizes before and after, the comparison, the fine-tuning,
    the settings); ``seconds`` is left for the caller."""
    model_dir, out_dir = Path(cfg.model_dir), Path(cfg.out_dir)
    card = orig.card
    f_before = (model_dir / card.stage1.weights).stat().st_size
    f_after = (out_dir / reloaded.card.stage1.weights).stat().st_size
    p_before, p_after = param_count(orig.stage1), param_count(reloaded.stage1)
    return {
        "command_line": cfg.command_line,
        "model_dir": str(model_dir.resolve()),
        "pruned_dir": str(out_dir.resolve()),
        "arch": card.stage1.arch,
        "input_size": card.input_size,
        "split": split.source,
        "test_images": len(split.by["test"]),
        "pruning": {k: v for k, v in asdict(pruning_info).items() if k != "stage1_layer_widths"},
        "params": {"before": p_before, "after": p_after, "reduction": 1 - p_after / p_before},
        "file_bytes": {
            "before": f_before,
            "after": f_after,
            "reduction": 1 - f_after / f_before,
            "dtype": "float16" if fp16 else "float32",
        },
        "fp32_safetensors_bytes": {
            "before": fp32_safetensors_bytes(orig.stage1),
            "after": fp32_safetensors_bytes(reloaded.stage1),
        },
        "cpu_images_per_s": compared["cpu_images_per_s"],
        "test": compared["test"],
        "finetune": {
            "epochs": cfg.epochs,
            "epochs_run": fr.epochs_run,
            "best_epoch": fr.best_epoch,
            "best_val_loss": fr.best_val_loss,
            "lr": cfg.lr,
            "seconds": fr.seconds,
            "device": fr.device,
            "resumed_from": fr.resumed_from,
        },
        "config": asdict(cfg),
    }


def _record(cfg: PruneConfig, report: dict[str, Any], progress: Progress) -> None:
    """Step 8: the reductions checked against ``cfg.min_reduction``, then ``pruning.json``
    and ``pruning.md`` written into the fine-tuning run folder."""
    if report["params"]["reduction"] < cfg.min_reduction or (
        report["file_bytes"]["reduction"] < cfg.min_reduction
    ):
        raise ModelError(
            f"the pruned stage 1 is only {report['params']['reduction']:.1%} smaller in "
            f"parameters and {report['file_bytes']['reduction']:.1%} on disk; "
            f"need {cfg.min_reduction:.0%}"
        )
    work_dir = cfg.resolved_work_dir
    write_json(work_dir / "pruning.json", report)
    (work_dir / "pruning.md").write_text(report_markdown(report), encoding="utf-8")
    progress.message(f"pruned model written to {cfg.out_dir}; report in {work_dir / 'pruning.md'}")


def prune_and_finetune(cfg: PruneConfig, progress: Progress | None = None) -> dict[str, Any]:
    """Prune stage 1 of ``cfg.model_dir``, fine-tune, evaluate, write ``cfg.out_dir``.

    The steps: load the original (:func:`_open_original`), its training split
    (:func:`_training_split`), prune (:func:`_prune_stage1`), fine-tune
    (:func:`_finetune`), write and reload the pruned folder (:func:`_save_pruned`),
    compare both on the test split (:func:`_compare`), report (:func:`_report`,
    :func:`_record`).

    Returns the report (also written as ``pruning.json`` and ``pruning.md`` into the
    fine-tuning run folder). The pruned model folder keeps stage 2 as it is; its card's
    ``pruning`` (:class:`heritage.model.card.PruningRecord`: the ratio, the method, the
    per-layer widths) marks stage 1 as pruned.
    """
    progress = progress or NullProgress()
    t0 = time.monotonic()
    orig, device = _open_original(cfg)
    split = _training_split(cfg, orig.card)
    pruned, attempts = _prune_stage1(cfg, orig, progress)
    pruned, fr = _finetune(cfg, pruned, split, orig.card.input_size, device, progress)
    reloaded, pruning_info, fp16 = _save_pruned(cfg, orig, pruned, attempts, fr.epochs_run)
    compared = _compare(cfg, orig, reloaded, split.by["test"], device, progress)
    report = _report(cfg, orig, reloaded, split, pruning_info, fp16, fr, compared)
    report["seconds"] = round(time.monotonic() - t0, 1)
    _record(cfg, report, progress)
    return report


def _tp_version() -> str:
    import torch_pruning as tp

    return str(getattr(tp, "__version__", "?"))


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}"


def report_markdown(report: dict[str, Any]) -> str:
    """The pruning report as a Markdown section (before/after table)."""
    tb, ta = report["test"]["before"], report["test"]["after"]
    sb, sa = report["cpu_images_per_s"]["before"], report["cpu_images_per_s"]["after"]
    fb = report["file_bytes"]
    rows = [
        (
            "parameters (M)",
            f"{report['params']['before'] / 1e6:.3f}",
            f"{report['params']['after'] / 1e6:.3f}",
        ),
        (
            f"stage1.safetensors ({fb['dtype']}, MB)",
            f"{fb['before'] / 1e6:.2f}",
            f"{fb['after'] / 1e6:.2f}",
        ),
        (
            "stage 1 class accuracy (%)",
            _pct(tb["stage1"]["multiclass_accuracy"]),
            _pct(ta["stage1"]["multiclass_accuracy"]),
        ),
        (
            "stage 1 binary accuracy (%)",
            _pct(tb["stage1"]["accuracy"]),
            _pct(ta["stage1"]["accuracy"]),
        ),
        ("stage 1 F1 (%)", _pct(tb["stage1"]["f1"]), _pct(ta["stage1"]["f1"])),
        (
            f"decision ({tb['decision']['stage']}) accuracy (%)",
            _pct(tb["decision"]["accuracy"]),
            _pct(ta["decision"]["accuracy"]),
        ),
        (
            "decision precision (%)",
            _pct(tb["decision"]["precision"]),
            _pct(ta["decision"]["precision"]),
        ),
        ("decision recall (%)", _pct(tb["decision"]["recall"]), _pct(ta["decision"]["recall"])),
        ("decision F1 (%)", _pct(tb["decision"]["f1"]), _pct(ta["decision"]["f1"])),
        (
            f"stage 1 CPU images/s (batch {sb['batch_size']}, {sb['threads']} threads)",
            f"{sb['images_per_s']:.1f}",
            f"{sa['images_per_s']:.1f}",
        ),
    ]
    lines = [
        "| | original | pruned |",
        "| --- | ---: | ---: |",
        *[f"| {a} | {b} | {c} |" for a, b, c in rows],
    ]
    p = report["pruning"]
    return (
        "\n".join(lines)
        + "\n\n"
        + f"Pruning ratio {p['ratio']} ({p['method']}); "
        + f"{100 * report['params']['reduction']:.1f} % fewer parameters, "
        + f"{100 * fb['reduction']:.1f} % smaller file. "
        + f"Test split: {report['test_images']} images ({report['split']}). "
        + f"Fine-tuning: {report['finetune']['epochs_run']} epochs "
        + f"(best {report['finetune']['best_epoch']}), lr {report['finetune']['lr']}.\n\n"
        + f"Command: `{report['command_line']}`\n"
    )
