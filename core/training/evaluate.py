"""Evaluate a model on labelled image folders (``heritage evaluate``).

Each data folder has the ImageFolder layout ``<dir>/<class>/<image>`` (indexed with
:func:`heritage.training.data.scan_image_folder`). Class folders named in ``positive`` (default
``crack`` and ``salt_damage``) mean "conservation needed" (1), any other class "not
needed" (0). A folder holding one class only is valid: the report says which metrics
are then undefined.

With a mask folder (one binary mask per image, same file name, white = defect, found at
any depth; e.g. ``dais-masonry/masks`` for ``dais-masonry/images``) the Grad-CAM heat
maps are scored against the masks: pointing game and energy in mask (see
:mod:`heritage.model.metrics`). Masks go through the same resize + centre-crop geometry as
the images, with nearest-neighbour interpolation.
"""

from __future__ import annotations

import csv
import json
import logging
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from heritage.io.fileio import atomic_path, atomic_write_text
from heritage.kernel.errors import DataError, InputNotFoundError, OutputNotWritableError
from heritage.kernel.progress import NullProgress, Progress
from heritage.model.metrics import binary_metrics, default_tolerance, energy_in_mask, pointing_game
from heritage.training.train import DEFAULT_POSITIVES as DEFAULT_POSITIVE

log = logging.getLogger(__name__)

MASK_EXTENSIONS = (".png", ".bmp", ".tif", ".tiff", ".jpg", ".jpeg", ".gif", ".webp", ".pgm")

PER_IMAGE_FIELDS = (
    "path",
    "dataset",
    "class",
    "y_true",
    "stage1_label",
    "p_stage1",
    "p_stage2",
    "p_final",
    "decision",
    "correct",
    "cam_method",
    "cam_empty",
    "mask",
    "pointing_hit",
    "energy_in_mask",
    "error",
)


@dataclass(frozen=True)
class EvalConfig:
    """Settings of one evaluation run (see :func:`evaluate`)."""

    positive: tuple[str, ...] = DEFAULT_POSITIVE
    cam_method: str | None = None
    cam_target: str | None = None
    batch_size: int = 16
    device: str = "auto"
    pointing_tolerance: float | None = None


def mask_index(masks_dir: Path) -> dict[str, Path]:
    """File name and stem (both lower case) -> mask path, for every mask under ``masks_dir``."""
    masks_dir = Path(masks_dir)
    if not masks_dir.is_dir():
        raise InputNotFoundError(f"mask folder not found: {masks_dir}")
    index: dict[str, Path] = {}
    for p in sorted(masks_dir.rglob("*")):
        if p.is_file() and p.suffix.lower() in MASK_EXTENSIONS and not p.name.startswith("."):
            index.setdefault(p.name.lower(), p)
            index.setdefault(p.stem.lower(), p)
    if not index:
        raise DataError(f"no mask images in {masks_dir}")
    return index


def find_mask(index: dict[str, Path], image: Path) -> Path | None:
    """The mask of ``image``: same file name, else same stem (e.g. photo .jpg, mask .png)."""
    return index.get(image.name.lower()) or index.get(image.stem.lower())


def load_mask(path: Path, size: int) -> np.ndarray:
    """A binary mask (value > 127) in the model-input geometry: bool size×size.

    Resize of the shorter side to ``size`` with nearest neighbour, then centre crop:
    the geometry of :func:`heritage.model.predict.eval_transform`. The mask must have the
    image's aspect ratio (normally its exact size).
    """
    from PIL import Image
    from torchvision import transforms as T

    with Image.open(path) as im:
        im = im.convert("L")
        geom = T.Compose(
            [T.Resize(size, interpolation=T.InterpolationMode.NEAREST), T.CenterCrop(size)]
        )
        return np.asarray(geom(im)) > 127


def _json_dump_atomic(path: Path, obj: Any) -> None:
    text = json.dumps(obj, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    try:
        atomic_write_text(path, text)
    except OSError as exc:
        raise OutputNotWritableError(f"cannot write {path}: {exc}; choose a writable path") from exc


def _fmt(v: float | None) -> str:
    return "" if v is None else f"{v:.6f}"


def _scan(data_dirs: Sequence[str | Path], cfg: EvalConfig) -> tuple[list[Any], set[str]]:
    """The labelled images of ``data_dirs`` and the positive class names."""
    from heritage.training import data

    if not data_dirs:
        raise DataError("give at least one data folder")
    positive = {p.strip() for p in cfg.positive if p.strip()}
    if not positive:
        raise DataError("--positive needs at least one class name")
    items = []
    for d in data_dirs:
        d = Path(d)
        if not d.is_dir():
            raise InputNotFoundError(f"data folder not found: {d}")
        items += data.scan_image_folder(d)
    log.info("%d images in %s", len(items), dict(Counter(it.dataset for it in items)))
    return items, positive


@dataclass
class _CamScore:
    """How well the Grad-CAM maps point at the defects' masks (pointing game, energy)."""

    masks: dict[str, Path]
    masks_dir: str | Path
    size: int  # the model's input size
    tolerance: int
    hits: list[bool] = field(default_factory=list)
    energies: list[float] = field(default_factory=list)
    missing: int = 0
    empty: int = 0

    def add(self, row: dict[str, Any], path: Path, cam: np.ndarray) -> None:
        """Score ``cam`` against the mask of ``path`` (if any) into ``row`` and the totals."""
        mpath = find_mask(self.masks, path)
        if mpath is None:
            self.missing += 1
            return
        mask = load_mask(mpath, self.size)
        row["mask"] = str(mpath)
        if not mask.any():
            self.empty += 1
            return
        hit = pointing_game(cam, mask, self.tolerance)
        energy = energy_in_mask(cam, mask)
        self.hits.append(hit)
        self.energies.append(energy)
        row["pointing_hit"] = int(hit)
        row["energy_in_mask"] = energy

    def report(self, method: str, target: str) -> dict[str, Any]:
        """The ``cam`` part of the evaluation report."""
        if not self.hits:
            log.warning(
                "no image of the evaluation set has a (non-empty) mask in %s", self.masks_dir
            )
        return {
            "method": method,
            "target": target,
            "masks_dir": str(self.masks_dir),
            "n_with_masks": len(self.hits),
            "n_without_mask": self.missing,
            "n_empty_masks": self.empty,
            "pointing_game": float(np.mean(self.hits)) if self.hits else None,
            "pointing_tolerance_px": self.tolerance,
            "energy_in_mask": float(np.mean(self.energies)) if self.energies else None,
        }


def _classify_rows(
    clf: Any,
    items: Sequence[Any],
    positive: set[str],
    cam_score: _CamScore | None,
    batch_size: int,
    progress: Progress,
) -> list[dict[str, Any]]:
    """One row per image: its label, the model's answer (or ``error``), the CAM's score."""
    by_path = {it.path: it for it in items}
    rows: list[dict[str, Any]] = []
    progress.start("evaluate", len(items))
    for path, res in clf.classify_paths([it.path for it in items], batch_size):
        progress.check_cancelled()
        it = by_path[path]
        y = int(it.label in positive)
        row: dict[str, Any] = {"path": str(path), "dataset": it.dataset, "class": it.label,
                               "y_true": y}  # fmt: skip
        if isinstance(res, str):
            row["error"] = res
        else:
            row.update(
                stage1_label=res.stage1.label,
                p_stage1=res.p_stage1,
                p_stage2=res.p_stage2,
                p_final=res.p_final,
                decision=int(res.decision),
                correct=int(res.decision == bool(y)),
                cam_method=res.cam_method,
                cam_empty=int(res.cam_empty),
            )
            if cam_score is not None:
                cam_score.add(row, path, res.cam)
        rows.append(row)
        progress.step(1)
    return rows


def _metrics(
    rows: Sequence[dict[str, Any]], thr: float, stage2: bool
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Metrics of the final answers, and of each stage's (``stage1``, ``stage2``)."""
    ys = [r["y_true"] for r in rows]
    stages = {"stage1": binary_metrics(ys, [r["p_stage1"] for r in rows], thr)}
    if stage2:
        stages["stage2"] = binary_metrics(ys, [r["p_stage2"] for r in rows], thr)
    return binary_metrics(ys, [r["p_final"] for r in rows], thr), stages


def _classes(rows: Sequence[dict[str, Any]]) -> dict[str, int]:
    return dict(sorted(Counter(r["class"] for r in rows).items()))


def _per_dataset(rows: Sequence[dict[str, Any]], thr: float, stage2: bool) -> dict[str, Any]:
    """:func:`_metrics` and the class counts of each dataset."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[r["dataset"]].append(r)
    out = {}
    for name, rs in sorted(groups.items()):
        final, stages = _metrics(rs, thr, stage2)
        out[name] = {**final, "classes": _classes(rs), **stages}
    return out


def evaluate(
    data_dirs: Sequence[str | Path],
    model_dir: str | Path | None = None,
    masks_dir: str | Path | None = None,
    config: EvalConfig | None = None,
    progress: Progress | None = None,
    per_image_csv: str | Path | None = None,
    json_out: str | Path | None = None,
) -> dict[str, Any]:
    """Classify every image of ``data_dirs`` with the model and score the answers.

    Returns (and writes to ``json_out`` when given) a JSON-ready dict: ``n``,
    ``accuracy``, ``precision``, ``recall``, ``f1``, ``roc_auc`` (None when undefined),
    ``confusion`` ``[[tn, fp], [fn, tp]]``, ``defined``/``notes`` for metrics a
    one-class set cannot define, the same under ``stage1`` (and ``stage2``), a
    ``per_dataset`` breakdown, ``model`` (id, version, path, ...), ``device``,
    ``unreadable`` files, and with masks ``cam`` (``pointing_game``, ``energy_in_mask``,
    ``n_with_masks``). Raises InputNotFoundError for a missing folder, DataError when no
    images are found, ModelError when the model cannot be loaded (without ``model_dir``
    the shipped default model is used).
    """
    from heritage.model.card import default_model_dir, load_model
    from heritage.model.predict import TwoStageClassifier
    from heritage.model.preprocess import resolve_device

    cfg = config or EvalConfig()
    progress = progress or NullProgress()
    items, positive = _scan(data_dirs, cfg)
    masks = mask_index(Path(masks_dir)) if masks_dir is not None else None

    device = resolve_device(cfg.device)
    model_path = Path(model_dir) if model_dir is not None else default_model_dir()
    loaded = load_model(model_path, device=device)
    card = loaded.card
    thr = card.threshold
    cam_score = None
    if masks is not None:
        tolerance = (
            cfg.pointing_tolerance
            if cfg.pointing_tolerance is not None
            else default_tolerance((card.input_size, card.input_size))
        )
        cam_score = _CamScore(masks, masks_dir, card.input_size, tolerance)
    with TwoStageClassifier(
        loaded, device=device, cam_method=cfg.cam_method, cam_target=cfg.cam_target
    ) as clf:
        rows = _classify_rows(clf, items, positive, cam_score, cfg.batch_size, progress)

    scored = [r for r in rows if "error" not in r]
    if not scored:
        raise DataError(f"none of the {len(rows)} images could be read; see the 'unreadable' list")
    stage2 = loaded.stage2 is not None
    final, stages = _metrics(scored, thr, stage2)
    report: dict[str, Any] = {**final, "decision_stage": card.decision_stage, **stages}
    report["per_dataset"] = _per_dataset(scored, thr, stage2)
    report["classes"] = _classes(scored)
    report["positive_classes"] = sorted(positive)
    report["model"] = {
        "model_id": card.model_id,
        "version": card.version,
        "path": str(model_path),  # as given: a report must not carry this machine's paths
        "decision_stage": card.decision_stage,
        "threshold": thr,
        "cam_layer": card.cam_layer,
        "stage1_arch": card.stage1.arch,
        "stage2_arch": card.stage2.arch if card.stage2 else None,
    }
    report["device"] = device
    report["data_dirs"] = [str(d) for d in data_dirs]
    report["unreadable"] = [{"path": r["path"], "error": r["error"]} for r in rows if "error" in r]
    report["cam_methods_used"] = dict(Counter(r["cam_method"] for r in scored))
    report["cam_empty"] = sum(r["cam_empty"] for r in scored)
    if cam_score is not None:
        report["cam"] = cam_score.report(clf.cam_method, clf.cam_target)
    if per_image_csv is not None:
        write_per_image_csv(Path(per_image_csv), rows)
    if json_out is not None:
        _json_dump_atomic(Path(json_out), report)
    return report


def write_per_image_csv(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    """Per-image outcomes as CSV (:data:`PER_IMAGE_FIELDS`, missing keys empty), the file
    ``heritage evaluate --per-image`` writes and ``research/compare/pair_models.py`` pairs."""
    try:
        with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=PER_IMAGE_FIELDS)
            w.writeheader()
            for r in rows:
                out = {k: r.get(k, "") for k in PER_IMAGE_FIELDS}
                for k in ("p_stage1", "p_stage2", "p_final", "energy_in_mask"):
                    if isinstance(r.get(k), float):
                        out[k] = _fmt(r[k])
                w.writerow(out)
    except OSError as exc:
        raise OutputNotWritableError(f"cannot write {path}: {exc}; choose a writable path") from exc


def summary_lines(report: dict[str, Any]) -> list[str]:
    """A few human-readable lines about an evaluation report."""

    def f(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.3f}"

    m = report["model"]
    lines = [
        f"model {m['model_id']} {m['version']} ({report['device']}), "
        f"decision from {m['decision_stage']} at threshold {m['threshold']:.2f}",
        f"n={report['n']}  accuracy={f(report['accuracy'])}  precision={f(report['precision'])}  "
        f"recall={f(report['recall'])}  f1={f(report['f1'])}  roc_auc={f(report['roc_auc'])}",
        f"confusion [[tn, fp], [fn, tp]] = {report['confusion']}",
        f"stage 1 alone: accuracy={f(report['stage1']['accuracy'])}  "
        f"f1={f(report['stage1']['f1'])}  roc_auc={f(report['stage1']['roc_auc'])}",
    ]
    lines += [f"note: {n}" for n in report.get("notes", [])]
    for name, d in report["per_dataset"].items():
        lines.append(
            f"  {name}: n={d['n']} accuracy={f(d['accuracy'])} recall={f(d['recall'])} "
            f"specificity={f(d['specificity'])}"
        )
    if report["unreadable"]:
        lines.append(f"{len(report['unreadable'])} unreadable file(s) skipped")
    cam = report.get("cam")
    if cam:
        lines.append(
            f"Grad-CAM ({cam['method']}) on {cam['n_with_masks']} masked images: "
            f"pointing game={f(cam['pointing_game'])} "
            f"(tolerance {cam['pointing_tolerance_px']:.1f} px), "
            f"energy in mask={f(cam['energy_in_mask'])}"
        )
    return lines
