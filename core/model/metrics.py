"""Evaluation metrics: binary classification, McNemar's test, Grad-CAM against masks.

Binary metrics treat 1 = "conservation needed" as the positive class. A test set may
hold one class only (e.g. the Dais crack patches): then the metrics that need the other
class are ``None`` and ``defined``/``notes`` say which ones.

Pointing game (Zhang et al., "Top-down neural attention by excitation backprop",
IJCV 2018): a hit when the heat-map maximum lies on a defect pixel, with a tolerance of
15 px at 224 px input as in the original protocol; the tolerance scales with the map
size (``15 * min(H, W) / 224``) unless given explicitly (0 = the exact pixel).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

#: pointing-game tolerance in pixels at a 224-pixel map (Zhang et al. 2018)
POINTING_TOLERANCE_224 = 15.0


def _ratio(num: float, den: float) -> float | None:
    return float(num) / float(den) if den > 0 else None


def binary_metrics(
    y_true: Sequence[int] | np.ndarray, p: Sequence[float] | np.ndarray, threshold: float = 0.5
) -> dict[str, Any]:
    """Accuracy, precision, recall, specificity, F1, ROC AUC and confusion for P(positive) ``p``.

    Prediction is ``p >= threshold``. ``confusion`` is ``[[tn, fp], [fn, tp]]``. A metric
    whose denominator is empty is ``None``: recall without positives, specificity without
    negatives, precision without predicted positives, ROC AUC unless both classes occur;
    ``defined`` maps each metric name to whether it is defined and ``notes`` explains why not.
    """
    y = np.asarray(y_true, dtype=int).ravel()
    s = np.asarray(p, dtype=float).ravel()
    if y.shape != s.shape:
        raise ValueError(f"{len(y)} labels but {len(s)} scores")
    if len(y) and not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 or 1")
    pred = s >= threshold
    pos = y == 1
    tp = int(np.sum(pred & pos))
    fp = int(np.sum(pred & ~pos))
    fn = int(np.sum(~pred & pos))
    tn = int(np.sum(~pred & ~pos))
    n = len(y)
    n_pos, n_neg = tp + fn, tn + fp
    precision = _ratio(tp, tp + fp)
    recall = _ratio(tp, n_pos)
    specificity = _ratio(tn, n_neg)
    f1 = _ratio(2 * tp, 2 * tp + fp + fn)
    roc_auc = None
    if n_pos and n_neg:
        from sklearn.metrics import roc_auc_score

        roc_auc = float(roc_auc_score(y, s))
    balanced = (
        (recall + specificity) / 2 if recall is not None and specificity is not None else None
    )
    notes: list[str] = []
    if n == 0:
        notes.append("no images: nothing is defined")
    elif n_neg == 0:
        notes.append(
            "only positives: recall (= accuracy) defined, specificity and roc_auc undefined"
        )
    elif n_pos == 0:
        notes.append(
            "only negatives: specificity (= accuracy) defined, recall, f1 and roc_auc undefined"
        )
    if n and precision is None:
        notes.append("no image predicted positive: precision undefined")
    metrics = {
        "n": n,
        "n_positive": n_pos,
        "n_negative": n_neg,
        "threshold": float(threshold),
        "accuracy": _ratio(tp + tn, n),
        "precision": precision,
        "recall": recall,
        "specificity": specificity,
        "f1": f1,
        "balanced_accuracy": balanced,
        "roc_auc": roc_auc,
        "confusion": [[tn, fp], [fn, tp]],
    }
    keys = ("accuracy", "precision", "recall", "specificity", "f1", "balanced_accuracy", "roc_auc")
    metrics["defined"] = {k: metrics[k] is not None for k in keys}
    metrics["notes"] = notes
    return metrics


def mcnemar(a_correct: Sequence[bool], b_correct: Sequence[bool]) -> dict[str, Any]:
    """Exact McNemar test of two classifiers on the same images.

    ``b`` = images A got right and B wrong, ``c`` = A wrong and B right; ``p_value`` is
    the two-sided exact binomial p of ``min(b, c)`` in ``b + c`` trials at 0.5 (1.0 when
    ``b + c == 0``).
    """
    a = np.asarray(a_correct, dtype=bool).ravel()
    b_ = np.asarray(b_correct, dtype=bool).ravel()
    if a.shape != b_.shape:
        raise ValueError(f"{len(a)} vs {len(b_)} outcomes: the two runs must cover the same images")
    b = int(np.sum(a & ~b_))
    c = int(np.sum(~a & b_))
    if b + c == 0:
        p = 1.0
    else:
        from scipy.stats import binomtest

        p = float(binomtest(min(b, c), b + c, 0.5, alternative="two-sided").pvalue)
    return {"b": b, "c": c, "n": len(a), "p_value": min(1.0, p)}


def _check_pair(cam: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    cam = np.asarray(cam, dtype=np.float64)
    mask = np.asarray(mask).astype(bool)
    if cam.ndim != 2 or cam.shape != mask.shape:
        raise ValueError(
            f"cam {cam.shape} and mask {mask.shape} must be 2-D of the same size; resize the "
            "mask with nearest neighbour in the image's resize + centre-crop geometry first"
        )
    return cam, mask


def default_tolerance(shape: tuple[int, int]) -> float:
    """The pointing-game tolerance for a map of ``shape``: 15 px at 224, scaled."""
    return POINTING_TOLERANCE_224 * min(shape) / 224.0


def pointing_game(cam: np.ndarray, mask: np.ndarray, tolerance: float | None = None) -> bool:
    """True when the heat-map maximum lies within ``tolerance`` pixels of a defect pixel.

    ``tolerance`` (Euclidean, in pixels of the map) defaults to :func:`default_tolerance`
    (15 px at 224 px, Zhang et al. 2018); 0 demands the exact pixel. Ties go to the first
    maximum in row-major order. An empty or non-finite heat map is a miss. A mask without
    defect pixels raises ValueError (the game is undefined there).
    """
    cam, mask = _check_pair(cam, mask)
    if not mask.any():
        raise ValueError("the mask has no defect pixel: the pointing game is undefined")
    if not np.isfinite(cam).all() or cam.max() <= 0:
        return False
    y, x = np.unravel_index(int(np.argmax(cam)), cam.shape)
    if mask[y, x]:
        return True
    tol = default_tolerance(cam.shape) if tolerance is None else float(tolerance)
    if tol <= 0:
        return False
    ys, xs = np.nonzero(mask)
    return bool(np.min((ys - y) ** 2 + (xs - x) ** 2) <= tol * tol)


def energy_in_mask(cam: np.ndarray, mask: np.ndarray) -> float:
    """Share of the heat-map mass on defect pixels: ``sum(cam * mask) / sum(cam)``.

    Negative values are clipped to 0; an empty heat map gives 0.0.
    """
    cam, mask = _check_pair(cam, mask)
    cam = np.clip(np.nan_to_num(cam, nan=0.0), 0.0, None)
    total = float(cam.sum())
    if total <= 0 or not math.isfinite(total):
        return 0.0
    return float(cam[mask].sum() / total)
