"""Conservation priority: one documented score and the categories users know.

The score (0-100) combines three pieces of evidence about one photo:

* the model's confidence that conservation is needed (``p_final``),
* the extent of the highlighted defect (:func:`defect_area_fraction` of the heatmap),
* how many flagged photos show the same building (corroboration, saturating).

Certainty and extent alone can reach the top categories (a certain, extensive
finding is A on its own); corroboration raises the certainty of a photo, it is not
required.

The score is mapped to six categories A-F, in the spirit of Historic England's
Heritage at Risk priority categories (A = immediate risk of further rapid
deterioration ... F = weakest evidence). Photos that are not flagged get the
category ``"none"``. The formula lives here and only here; ``docs/priority.md``
explains it with a worked example. Everything is pure numpy: no heavy imports.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

#: Category codes from most to least urgent; ``"none"`` = not flagged.
CATEGORIES: tuple[str, ...] = ("A", "B", "C", "D", "E", "F", "none")

#: Short label of each category (for legends and attribute tables).
CATEGORY_LABELS: dict[str, str] = {
    "A": "Immediate risk",
    "B": "High risk",
    "C": "Slow decay, widespread",
    "D": "Slow decay, localised",
    "E": "Minor signs",
    "F": "Weak evidence",
    "none": "No conservation need detected",
}

#: What each category means and what to do (for reports and the README).
CATEGORY_DESCRIPTIONS: dict[str, str] = {
    "A": "Immediate risk of further rapid deterioration or loss of fabric: near-certain and "
    "extensive evidence of damage (one photo can be enough; corroboration raises "
    "certainty). Inspect first.",
    "B": "Immediate risk suspected: strong evidence of damage, less extensive or less "
    "certain than A. Inspect soon.",
    "C": "Slow decay, no solution agreed: clear signs of damage over a noticeable area. "
    "Plan an inspection.",
    "D": "Slow decay, localised: damage likely but limited in extent. Plan an inspection "
    "with the next round.",
    "E": "Minor signs of damage: keep under observation at routine surveys.",
    "F": "Weak evidence: the model only just flagged the photo; check it at the next "
    "routine survey or review the photo.",
    "none": "Not flagged by the model.",
}


@dataclass(frozen=True, slots=True)
class PriorityConfig:
    """Parameters of the priority score (see ``docs/priority.md``).

    * ``confidence_floor``: the confidence that maps to 0 (the decision threshold
      of the model: a photo is only flagged above it); 1.0 maps to 1.
    * ``area_full``: the defect area fraction that counts as "whole extent" (1);
      fractions above it saturate.
    * ``building_scale``: e-folding count of the corroboration term
      ``b = 1 - exp(-(n - 1) / building_scale)``; one photo alone has b = 0.
    * ``corroboration_gain``: how much of the remaining doubt corroboration can
      remove: certainty ``k = c + (1 - c) * gain * b``.
    * ``extent_base``: the share of the score certainty earns without any extent:
      ``score = 100 * k * (extent_base + (1 - extent_base) * a)``.
    * ``thresholds``: minimum score of categories A, B, C, D, E (descending);
      a flagged photo below the last one is F.
    """

    confidence_floor: float = 0.5
    area_full: float = 0.25
    building_scale: float = 2.0
    corroboration_gain: float = 0.5
    extent_base: float = 0.55
    thresholds: tuple[float, float, float, float, float] = (80.0, 65.0, 50.0, 35.0, 20.0)

    def __post_init__(self) -> None:
        if not 0.0 <= self.corroboration_gain <= 1.0:
            raise ValueError(f"corroboration_gain must be in [0, 1], got {self.corroboration_gain}")
        if not 0.0 <= self.extent_base <= 1.0:
            raise ValueError(f"extent_base must be in [0, 1], got {self.extent_base}")
        if not 0.0 <= self.confidence_floor < 1.0:
            raise ValueError(f"confidence_floor must be in [0, 1), got {self.confidence_floor}")
        if self.area_full <= 0 or self.building_scale <= 0:
            raise ValueError("area_full and building_scale must be > 0")
        t = self.thresholds
        if len(t) != 5 or any(a <= b for a, b in itertools.pairwise(t)):
            raise ValueError(f"thresholds must be 5 strictly descending scores, got {t}")
        if not (t[-1] > 0.0 and t[0] <= 100.0):
            raise ValueError(f"thresholds must lie in (0, 100], got {t}")


DEFAULT_CONFIG = PriorityConfig()


def defect_area_fraction(cam: np.ndarray, threshold: float = 0.5) -> float:
    """Share of heatmap pixels at or above ``threshold`` (0..1).

    ``cam`` is a Grad-CAM map with values in [0, 1] (any shape, e.g. H×W); NaN
    pixels are ignored. It is not renormalised: a map whose maximum is below the
    threshold has fraction 0. An empty or all-NaN map gives 0.0.
    """
    a = np.asarray(cam, dtype=np.float64)
    valid = ~np.isnan(a)
    n = int(valid.sum())
    if n == 0:
        return 0.0
    return float(np.count_nonzero(a[valid] >= threshold) / n)


def score_terms(
    confidence: np.ndarray | float,
    area_fraction: np.ndarray | float,
    n_flagged_on_building: np.ndarray | float,
    cfg: PriorityConfig = DEFAULT_CONFIG,
    floor: np.ndarray | float | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The three normalised terms (each in [0, 1]) of the score, vectorised.

    ``c = clip((confidence - floor) / (1 - floor))``, ``a = clip(area / area_full)``,
    ``b = 1 - exp(-max(n - 1, 0) / building_scale)``. ``floor`` is the decision
    threshold each photo was classified with (an array broadcast with the other
    inputs, each in [0, 1)); ``None`` uses ``cfg.confidence_floor`` for every photo.
    """
    p = np.asarray(confidence, dtype=np.float64)
    area = np.asarray(area_fraction, dtype=np.float64)
    n = np.asarray(n_flagged_on_building, dtype=np.float64)
    t = np.asarray(cfg.confidence_floor if floor is None else floor, dtype=np.float64)
    for name, v, hi in (("confidence", p, 1.0), ("area_fraction", area, 1.0)):
        if np.any(np.isnan(v)) or np.any(v < 0) or np.any(v > hi):
            raise ValueError(f"{name} must be in [0, 1], got {v}")
    if np.any(np.isnan(n)) or np.any(n < 0):
        raise ValueError(f"n_flagged_on_building must be >= 0, got {n}")
    if np.any(np.isnan(t)) or np.any(t < 0) or np.any(t >= 1.0):
        raise ValueError(f"floor must be in [0, 1), got {t}")
    c = np.clip((p - t) / (1.0 - t), 0.0, 1.0)
    a = np.clip(area / cfg.area_full, 0.0, 1.0)
    b = 1.0 - np.exp(-np.maximum(n - 1.0, 0.0) / cfg.building_scale)
    return c, a, b


def priority_scores(
    confidence: np.ndarray | float,
    area_fraction: np.ndarray | float,
    n_flagged_on_building: np.ndarray | float,
    cfg: PriorityConfig = DEFAULT_CONFIG,
    floor: np.ndarray | float | None = None,
) -> np.ndarray:
    """Vectorised :func:`priority_score` (arrays broadcast together); ``floor``: each
    photo's decision threshold (:func:`score_terms`), default ``cfg.confidence_floor``."""
    c, a, b = score_terms(confidence, area_fraction, n_flagged_on_building, cfg, floor)
    k = c + (1.0 - c) * cfg.corroboration_gain * b
    s = 100.0 * k * (cfg.extent_base + (1.0 - cfg.extent_base) * a)
    return np.clip(s, 0.0, 100.0)


def priority_score(
    confidence: float,
    area_fraction: float,
    n_flagged_on_building: int,
    cfg: PriorityConfig = DEFAULT_CONFIG,
) -> float:
    """Priority score in [0, 100] of one photo.

    ``score = 100 * k * (e + (1 - e) * a)`` with the certainty
    ``k = c + (1 - c) * g * b`` and the terms ``c``, ``a``, ``b`` of
    :func:`score_terms` (``e`` = ``extent_base``, ``g`` = ``corroboration_gain``).
    Non-decreasing in each input. ``n_flagged_on_building`` counts the flagged photos
    of the building, this one included (1 = alone).
    """
    return float(priority_scores(confidence, area_fraction, n_flagged_on_building, cfg))


def priority_category(score: float, flagged: bool, cfg: PriorityConfig = DEFAULT_CONFIG) -> str:
    """Category code ("A".."F") of a flagged photo's score; ``"none"`` when not flagged.

    A score equal to a threshold belongs to the higher category.
    """
    if not flagged:
        return "none"
    if math.isnan(score):
        raise ValueError("priority score is NaN")
    for code, minimum in zip(CATEGORIES[:5], cfg.thresholds, strict=True):
        if score >= minimum:
            return code
    return "F"


def category_rank(code: str) -> int:
    """0 for A (most urgent) ... 5 for F, 6 for ``"none"``; unknown codes raise ValueError."""
    try:
        return CATEGORIES.index(code)
    except ValueError:
        raise ValueError(
            f"unknown priority category {code!r}; expected one of {CATEGORIES}"
        ) from None
