"""A generic, resumable training loop (Adam, LR schedule, early stopping, checkpoints).

``fit`` trains any classifier: ``loss="ce"`` for N-class logits and integer labels,
``loss="bce"`` for one logit and 0/1 labels. After every epoch it writes
``{name}_metrics.csv``; it checkpoints to ``{name}_checkpoint.pt`` after every epoch,
every ``checkpoint_every`` batches and when cancelled, so re-running with
``resume=True`` continues at the saved epoch and batch. The weights of the epoch with
the lowest validation loss are restored at the end.

Schedule: ``ReduceLROnPlateau`` on the validation loss by default. Training stops
early on that same loss, so the number of epochs is not known in advance; a cosine
schedule assumes it is (an early stop cuts it off at a high LR), while the plateau
schedule lowers the LR exactly when validation stalls, one epoch before early
stopping would give up, which is the "learning-rate schedule + early stopping" pair
the paper describes. ``scheduler="cosine"`` is available for fixed-length runs.
"""

from __future__ import annotations

import contextlib
import csv
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from heritage.io.fileio import atomic_path
from heritage.kernel.errors import CancelledError, ModelError
from heritage.kernel.progress import NullProgress, Progress
from heritage.model.preprocess import resolve_device

log = logging.getLogger(__name__)

METRIC_FIELDS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds")


@dataclass(frozen=True)
class FitConfig:
    """Settings of one :func:`fit` run."""

    epochs: int = 15
    lr: float = 1e-4
    weight_decay: float = 0.0
    patience: int = 3  # epochs without val-loss improvement before stopping; 0 = never
    min_delta: float = 0.0
    scheduler: Literal["plateau", "cosine", "none"] = "plateau"
    plateau_factor: float = 0.1
    plateau_patience: int = 1
    device: str = "auto"
    checkpoint_every: int = 50  # batches; 0 = only at epoch ends
    resume: bool = False
    seed: int = 0
    channels_last: bool = False
    #: arithmetic of the forward passes: "fp32", or "bf16" (torch.autocast in bfloat16;
    #: weights, gradients and the optimiser stay float32). See :func:`autocast`.
    precision: Literal["fp32", "bf16"] = "fp32"


@dataclass(frozen=True)
class FitResult:
    """What :func:`fit` did."""

    best_epoch: int  # 1-based; 0 when no epoch finished
    best_val_loss: float
    epochs_run: int
    stopped_early: bool
    history: list[dict[str, float]]
    seconds: float
    metrics_csv: Path
    checkpoint: Path
    resumed_from: tuple[int, int] | None = None  # (epoch, batch), 0-based epoch
    device: str = "cpu"
    extra: dict[str, Any] = field(default_factory=dict)


class ResumableSampler(torch.utils.data.Sampler[int]):
    """A shuffling sampler whose order depends only on (seed, epoch), and can skip ahead.

    ``fit`` calls :meth:`set_epoch` before each epoch, with ``skip`` items to leave out
    when resuming in the middle of an epoch, so it sees exactly the remaining batches.

    Args:
        n: dataset length; an epoch is a permutation of ``range(n)``.
        seed: base seed of the permutations.
        indices: dataset indices making up an epoch instead of ``range(n)``, repeats
            allowed (oversampling shows an image K times without storing it K times).
    """

    def __init__(self, n: int, seed: int = 0, indices: Sequence[int] | None = None) -> None:
        self.indices = list(indices) if indices is not None else None
        if self.indices is not None and any(not 0 <= i < n for i in self.indices):
            raise ValueError(f"sampler indices must lie in [0, {n})")
        self.n = len(self.indices) if self.indices is not None else n
        self.seed = seed
        self.epoch = 0
        self.skip = 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Select the permutation of ``epoch``; omit its first ``skip`` indices."""
        self.epoch, self.skip = epoch, skip

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.n, generator=g).tolist()
        if self.indices is not None:
            order = [self.indices[i] for i in order]
        return iter(order[self.skip :])

    def __len__(self) -> int:
        return self.n - self.skip


PRECISIONS = ("fp32", "bf16")
#: how tables and reports name each precision
PRECISION_NAMES = {"fp32": "float32", "bf16": "bfloat16 mixed precision (autocast)"}


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    """The context for forward passes in ``precision``.

    ``"fp32"``: plain float32. ``"bf16"``: ``torch.autocast`` in bfloat16 (convolutions and
    matrix products in bfloat16, losses and normalisation in float32; the weights stay
    float32). On this project's AVX512-BF16 CPU a training step of the comparison networks
    is 1.4-2x faster (VGG16 2.0x, MobileNetV3-Small only 1.1x;
    ``research/evaluation/compare-time-bf16.md`` against ``compare-time.md``).
    """
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")


def cpu_has_native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool | None:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX); None when unknown."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.partition(":")[2].split())
            break
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def check_precision(device: torch.device, precision: str) -> None:
    """Refuse a precision the device cannot run; warn where bf16 would only be emulated."""
    if precision not in PRECISIONS:
        raise ModelError(f"--precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if precision != "bf16":
        return
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ModelError("this GPU has no bfloat16 arithmetic; use --precision fp32")
    if device.type == "cpu" and cpu_has_native_bf16() is False:
        log.warning(
            "this CPU has no native bfloat16 (neither AVX512-BF16 nor AMX): --precision bf16 "
            "is emulated here and may train slower than fp32"
        )


def set_seed(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _rng_state() -> dict[str, Any]:
    """RNG states as plain ints/lists/tensors (loadable with ``weights_only=True``)."""
    version, mt, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": (version, list(mt), gauss),
        "numpy": (kind, keys.tolist(), int(pos), int(has_gauss), float(cached)),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    version, mt, gauss = state["python"]
    random.setstate((version, tuple(mt), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _atomic_save(obj: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def _write_metrics(path: Path, history: list[dict[str, float]]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=METRIC_FIELDS)
        w.writeheader()
        for row in history:
            w.writerow({k: row.get(k) for k in METRIC_FIELDS})


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def _loss_fn(kind: str) -> nn.Module:
    if kind == "ce":
        return nn.CrossEntropyLoss()
    if kind == "bce":
        return nn.BCEWithLogitsLoss()
    raise ValueError(f"loss must be 'ce' or 'bce', not {kind!r}")


def _batch_stats(
    kind: str, logits: torch.Tensor, y: torch.Tensor, crit: nn.Module
) -> tuple[torch.Tensor, int]:
    """Loss tensor and number of correct predictions of one batch."""
    if kind == "bce":
        logits = logits.reshape(-1)
        y = y.float().reshape(-1)
        loss = crit(logits, y)
        correct = int(((logits > 0).float() == y).sum())
    else:
        loss = crit(logits, y.long())
        correct = int((logits.argmax(1) == y).sum())
    return loss, correct


def _to(x: torch.Tensor, device: torch.device, channels_last: bool = False) -> torch.Tensor:
    x = x.to(device, non_blocking=True)
    if channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def evaluate_loss(
    model: nn.Module,
    loader: Any,
    device: torch.device,
    loss: str = "ce",
    precision: str = "fp32",
) -> tuple[float, float]:
    """Mean loss and accuracy of ``model`` on ``loader`` (no gradients; see :func:`autocast`)."""
    crit = _loss_fn(loss)
    model.eval()
    total = correct = 0
    loss_sum = 0.0
    with torch.inference_mode():
        for x, y in loader:
            x, y = _to(x, device), y.to(device, non_blocking=True)
            with autocast(device, precision):
                logits = model(x)
            l_, c = _batch_stats(loss, logits.float(), y, crit)
            loss_sum += float(l_) * len(y)
            correct += c
            total += len(y)
    return (loss_sum / total, correct / total) if total else (float("nan"), float("nan"))


def predict_proba(
    model: nn.Module, loader: Any, device: str | torch.device = "cpu"
) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and labels over ``loader``.

    Returns ``(probs, labels)``: N x C softmax probabilities for a C-output model, or a
    length-N vector of sigmoid probabilities for a one-output model.
    """
    device = torch.device(resolve_device(device))
    model = model.to(device).eval()
    probs: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    with torch.inference_mode():
        for x, y in loader:
            logits = model(_to(x, device)).float()
            if logits.shape[1] == 1:
                p = torch.sigmoid(logits[:, 0])
            else:
                p = torch.softmax(logits, dim=1)
            probs.append(p.cpu().numpy())
            labels.append(np.asarray(y))
    if not probs:
        return np.zeros((0,), dtype=np.float32), np.zeros((0,))
    return np.concatenate(probs), np.concatenate(labels)


def train_mode(model: nn.Module) -> None:
    """``model.train()``, except batch norms whose parameters are all frozen stay in eval.

    A frozen layer (see :func:`heritage.model.zoo.freeze_leading`) must keep the running
    statistics it was trained with, or its output drifts although its weights do not.
    """
    model.train()
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            params = list(m.parameters(recurse=False))
            if params and not any(p.requires_grad for p in params):
                m.eval()


def _make_scheduler(cfg: FitConfig, opt: torch.optim.Optimizer) -> Any:
    if cfg.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, mode="min", factor=cfg.plateau_factor, patience=cfg.plateau_patience
        )
    if cfg.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, cfg.epochs))
    if cfg.scheduler == "none":
        return None
    raise ValueError(f"unknown scheduler {cfg.scheduler!r}")


#: settings a resumed run must share with its checkpoint: they shape the optimiser's
#: state and the learning-rate schedule, so mixing two of them is neither run
_SCHEDULE_KEYS = ("lr", "weight_decay", "scheduler", "plateau_factor", "plateau_patience", "seed")


def _check_same_schedule(saved: dict[str, Any] | None, cfg: FitConfig, path: Path) -> None:
    """Refuse to resume ``path`` with another optimiser or schedule than it was written with.

    ``epochs`` counts too under the cosine schedule (its period), and ``precision`` always.
    Checkpoints without a recorded config (older ones) are not checked.
    """
    if not saved:
        return
    keys = (*_SCHEDULE_KEYS, "epochs") if cfg.scheduler == "cosine" else _SCHEDULE_KEYS
    now = asdict(cfg)
    diffs = [f"{k} {saved[k]!r} -> {now[k]!r}" for k in keys if k in saved and saved[k] != now[k]]
    # checkpoints written before the setting existed were all float32
    if saved.get("precision", "fp32") != cfg.precision:
        diffs.append(f"precision {saved.get('precision', 'fp32')!r} -> {cfg.precision!r}")
    if diffs:
        raise ModelError(
            f"{path} was written with other training settings ({', '.join(diffs)}): resume "
            "with the settings it was started with, or delete it to start over"
        )


def _load_checkpoint(path: Path, mmap: bool = False) -> dict[str, Any]:
    """A :func:`fit` checkpoint (tensors and plain values only: ``weights_only``);
    ``mmap``: tensors stay on disk until touched (to read the small entries only)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as exc:
        raise ModelError(f"cannot read checkpoint {path} ({exc}); delete it to start over") from exc


def checkpoint_precision(path: Path) -> str:
    """The training precision a :func:`fit` checkpoint was written with (older ones: fp32)."""
    config = _load_checkpoint(path, mmap=True).get("config") or {}  # VGG16's is ~2 GB
    return str(config.get("precision", "fp32"))


def _fresh_sum() -> dict[str, float]:
    return {"loss": 0.0, "correct": 0, "n": 0, "seconds": 0.0}


@dataclass
class _FitState:
    """Where a :func:`fit` run stands: what its checkpoint holds besides the model,
    optimiser, scheduler, RNG states and config."""

    epoch: int = 0  # 0-based epoch in progress (== epochs run so far)
    batch: int = 0  # batches of ``epoch`` done
    history: list[dict[str, float]] = field(default_factory=list)
    best_loss: float = float("inf")
    best_epoch: int = 0
    best_state: dict[str, torch.Tensor] | None = None
    wait: int = 0  # epochs without val-loss gain
    run_sum: dict[str, float] = field(default_factory=_fresh_sum)  # of the epoch in progress
    finished: bool = False
    stopped_early: bool = False

    @classmethod
    def from_checkpoint(cls, ck: dict[str, Any]) -> _FitState:
        """The state saved in checkpoint ``ck``."""
        return cls(
            epoch=int(ck["epoch"]),
            batch=int(ck["batch"]),
            history=list(ck["history"]),
            best_loss=float(ck["best_loss"]),
            best_epoch=int(ck["best_epoch"]),
            best_state=ck.get("best_state"),
            wait=int(ck["wait"]),
            run_sum=dict(ck["run_sum"]),
            finished=bool(ck["finished"]),
            stopped_early=bool(ck["stopped_early"]),
        )


@dataclass
class _Fitting:
    """One :func:`fit` run's fixed parts: what is trained, how, and where it is saved."""

    model: nn.Module
    cfg: FitConfig
    name: str
    loss: str
    device: torch.device
    crit: nn.Module
    opt: torch.optim.Optimizer
    sched: Any
    ckpt_path: Path
    csv_path: Path
    progress: Progress

    def save(self, st: _FitState) -> None:
        """Checkpoint the run as it stands (atomically)."""
        _atomic_save(
            {
                "model": self.model.state_dict(),
                "optimizer": self.opt.state_dict(),
                "scheduler": self.sched.state_dict() if self.sched is not None else None,
                "epoch": st.epoch,
                "batch": st.batch,
                "history": st.history,
                "best_loss": st.best_loss,
                "best_epoch": st.best_epoch,
                "best_state": st.best_state,
                "wait": st.wait,
                "run_sum": st.run_sum,
                "finished": st.finished,
                "stopped_early": st.stopped_early,
                "rng": _rng_state(),
                "config": asdict(self.cfg),
            },
            self.ckpt_path,
        )

    def resume(self) -> _FitState:
        """The state of the checkpoint (model, optimiser, scheduler and RNGs restored)."""
        ck = _load_checkpoint(self.ckpt_path)
        _check_same_schedule(ck.get("config"), self.cfg, self.ckpt_path)
        self.model.load_state_dict(ck["model"])
        self.opt.load_state_dict(ck["optimizer"])
        if self.sched is not None and ck.get("scheduler"):
            self.sched.load_state_dict(ck["scheduler"])
        st = _FitState.from_checkpoint(ck)
        _set_rng_state(ck["rng"])
        log.info("%s: resuming at epoch %d, batch %d", self.name, st.epoch + 1, st.batch)
        return st

    def train_one_epoch(self, loader: Any, n_batches: int, st: _FitState) -> float:
        """Train the batches of epoch ``st.epoch`` not done yet, checkpointing every
        ``cfg.checkpoint_every`` batches. Returns when the epoch's clock last started
        (the seconds before a checkpoint are added to ``st.run_sum``)."""
        cfg, device = self.cfg, self.device
        t_epoch = time.monotonic()
        train_mode(self.model)
        sampler = getattr(loader, "sampler", None)
        skip_iter = 0
        if isinstance(sampler, ResumableSampler):
            sampler.set_epoch(st.epoch, skip=st.batch * loader.batch_size)
        else:
            skip_iter = st.batch
        self.progress.start(f"{self.name} epoch {st.epoch + 1}/{cfg.epochs}", total=n_batches)
        if st.batch:
            self.progress.step(st.batch)
        for i, (x, y) in enumerate(loader):
            if i < skip_iter:
                continue
            self.progress.check_cancelled()
            x = _to(x, device, cfg.channels_last)
            y = y.to(device, non_blocking=True)
            self.opt.zero_grad(set_to_none=True)
            with autocast(device, cfg.precision):
                logits = self.model(x)
            loss_t, correct = _batch_stats(self.loss, logits.float(), y, self.crit)
            loss_t.backward()
            self.opt.step()
            st.batch += 1
            st.run_sum["loss"] += float(loss_t.detach()) * len(y)
            st.run_sum["correct"] += correct
            st.run_sum["n"] += len(y)
            if (
                cfg.checkpoint_every
                and st.batch % cfg.checkpoint_every == 0
                and st.batch < n_batches
            ):
                st.run_sum["seconds"] += time.monotonic() - t_epoch
                t_epoch = time.monotonic()
                self.save(st)
            self.progress.step(1, loss=round(float(loss_t.detach()), 4))
        return t_epoch

    def end_epoch(self, val_loader: Any | None, st: _FitState, t_epoch: float) -> None:
        """Validate, record the epoch, keep the best weights, step the schedule, decide
        on early stopping, and move ``st`` to the next epoch."""
        cfg, name = self.cfg, self.name
        train_loss = st.run_sum["loss"] / max(1, st.run_sum["n"])
        train_acc = st.run_sum["correct"] / max(1, st.run_sum["n"])
        if val_loader is not None:
            self.progress.message(f"{name}: validating epoch {st.epoch + 1}")
            val_loss, val_acc = evaluate_loss(
                self.model, val_loader, self.device, self.loss, cfg.precision
            )
        else:
            val_loss, val_acc = train_loss, train_acc
        lr = self.opt.param_groups[0]["lr"]
        seconds = st.run_sum["seconds"] + time.monotonic() - t_epoch
        st.history.append(
            {
                "epoch": st.epoch + 1,
                "train_loss": round(train_loss, 6),
                "train_acc": round(train_acc, 6),
                "val_loss": round(val_loss, 6),
                "val_acc": round(val_acc, 6),
                "lr": lr,
                "seconds": round(seconds, 2),
            }
        )
        _write_metrics(self.csv_path, st.history)
        self.progress.message(
            f"{name} epoch {st.epoch + 1}: train loss {train_loss:.4f} acc {train_acc:.3f}, "
            f"val loss {val_loss:.4f} acc {val_acc:.3f}, lr {lr:.2e}"
        )
        log.info("%s epoch %d: %s", name, st.epoch + 1, st.history[-1])
        if val_loss < st.best_loss - cfg.min_delta:
            st.best_loss, st.best_epoch, st.wait = val_loss, st.epoch + 1, 0
            st.best_state = _cpu_state(self.model)
        else:
            st.wait += 1
        if self.sched is not None:
            if isinstance(self.sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
                self.sched.step(val_loss)
            else:
                self.sched.step()
        st.epoch += 1
        st.batch = 0
        st.run_sum = _fresh_sum()
        if cfg.patience and st.wait >= cfg.patience:
            st.stopped_early = True
            self.progress.message(f"{name}: early stop, no val-loss gain for {st.wait} epochs")
        if st.stopped_early or st.epoch >= cfg.epochs:
            st.finished = True


def _start(
    model: nn.Module, cfg: FitConfig, run_dir: Path, name: str, loss: str, progress: Progress
) -> _Fitting:
    """Device, precision check, seed, optimiser and schedule of a :func:`fit` run."""
    run_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device(resolve_device(cfg.device))
    check_precision(device, cfg.precision)
    crit = _loss_fn(loss)
    set_seed(cfg.seed)
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise ModelError(f"{name}: every parameter is frozen; nothing to train")
    opt = torch.optim.Adam(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return _Fitting(
        model=model,
        cfg=cfg,
        name=name,
        loss=loss,
        device=device,
        crit=crit,
        opt=opt,
        sched=_make_scheduler(cfg, opt),
        ckpt_path=run_dir / f"{name}_checkpoint.pt",
        csv_path=run_dir / f"{name}_metrics.csv",
        progress=progress,
    )


def fit(
    model: nn.Module,
    train_loader: Any,
    val_loader: Any | None,
    cfg: FitConfig,
    run_dir: Path,
    name: str,
    progress: Progress | None = None,
    loss: Literal["ce", "bce"] = "ce",
) -> FitResult:
    """Train ``model`` in place and return what happened.

    Each epoch is :meth:`_Fitting.train_one_epoch` then :meth:`_Fitting.end_epoch`
    (validation, schedule, early stopping), then a checkpoint.

    Args:
        model: any ``nn.Module`` producing logits (C outputs for ``ce``, 1 for ``bce``).
        train_loader: yields ``(x, y)``; if its sampler is a :class:`ResumableSampler`,
            resuming mid-epoch continues with exactly the unseen batches, otherwise the
            already-seen number of batches is skipped by iterating.
        val_loader: for early stopping, LR schedule and best-epoch choice (may be None:
            then the training loss is used).
        cfg: see :class:`FitConfig`.
        run_dir: where ``{name}_metrics.csv`` and ``{name}_checkpoint.pt`` go.
        name: file-name prefix, e.g. ``"stage1"``.
        progress: progress/cancel hooks; CancelledError leaves a checkpoint behind.
        loss: ``"ce"`` (CrossEntropy) or ``"bce"`` (BCEWithLogits, one logit).
    """
    run = _start(model, cfg, Path(run_dir), name, loss, progress or NullProgress())
    st, resumed_from = _FitState(), None
    if cfg.resume and run.ckpt_path.is_file():
        st = run.resume()
        resumed_from = (st.epoch, st.batch)
    elif run.ckpt_path.is_file():
        log.info("%s: %s exists but resume is off: starting over", name, run.ckpt_path)

    t_start = time.monotonic()
    sampler = getattr(train_loader, "sampler", None)
    if isinstance(sampler, ResumableSampler):
        sampler.set_epoch(st.epoch, 0)
    n_batches = len(train_loader)  # of a whole epoch
    try:
        while not st.finished and st.epoch < cfg.epochs:
            t_epoch = run.train_one_epoch(train_loader, n_batches, st)
            run.end_epoch(val_loader, st, t_epoch)
            run.save(st)
    except CancelledError:
        if not st.finished:
            run.save(st)
            log.info("%s: cancelled; checkpoint at epoch %d batch %d", name, st.epoch + 1, st.batch)
        raise

    if st.best_state is not None:
        model.load_state_dict(st.best_state)
    model.eval()
    _write_metrics(run.csv_path, st.history)
    return FitResult(
        best_epoch=st.best_epoch,
        best_val_loss=st.best_loss,
        epochs_run=len(st.history),
        stopped_early=st.stopped_early,
        history=st.history,
        seconds=round(time.monotonic() - t_start, 2),
        metrics_csv=run.csv_path,
        checkpoint=run.ckpt_path,
        resumed_from=resumed_from,
        device=str(run.device),
    )
