"""Priority score: worked examples, monotonicity, bounds and category boundaries."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from heritage.survey.priority import (
    CATEGORIES,
    CATEGORY_DESCRIPTIONS,
    CATEGORY_LABELS,
    PriorityConfig,
    category_rank,
    defect_area_fraction,
    priority_category,
    priority_score,
    priority_scores,
)

CONF = [0.0, 0.3, 0.5, 0.55, 0.7, 0.9, 0.99, 1.0]
AREA = [0.0, 0.01, 0.1, 0.2, 0.4, 0.6, 1.0]
NFLAG = [0, 1, 2, 3, 5, 10, 100]


# Worked examples: the same numbers appear in docs/priority.md (floor t = 0.5 here).
@pytest.mark.parametrize(
    ("p", "area", "n", "score", "category"),
    [
        (0.95, 0.30, 1, 90.0, "A"),  # k = 0.9, a = 1: certain and extensive, alone
        (0.95, 0.30, 3, 93.161, "A"),  # k = 0.9 + 0.1*0.5*0.632
        (1.00, 0.00, 1, 55.0, "C"),  # certainty without any extent
        (1.00, 0.25, 1, 100.0, "A"),
        (0.60, 0.05, 1, 12.8, "F"),  # 100 * 0.2 * (0.55 + 0.45*0.2)
        (0.80, 0.20, 2, 61.761, "C"),
        (0.80, 0.20, 3, 66.105, "B"),  # corroboration lifts C to B
        (0.60, 0.05, 3, 28.982, "E"),
        (0.80, 0.10, 2, 49.545, "D"),
        (0.70, 0.05, 1, 25.6, "E"),
        (0.50, 0.00, 1, 0.0, "F"),
        (1.00, 1.00, 1000, 100.0, "A"),
    ],
)
def test_worked_examples(p, area, n, score, category):
    s = priority_score(p, area, n)
    assert s == pytest.approx(score, abs=1e-3)
    assert priority_category(s, flagged=True) == category


# The case with the shipped model's threshold (t = 0.692): one photo of a
# gaping crack at p = 0.99999 was "C" at best; certainty and extent now reach A/B alone.
@pytest.mark.parametrize(
    ("p", "area", "n", "score", "category"),
    [
        (0.99999, 0.20, 1, 90.997, "A"),
        (0.99999, 0.10, 1, 72.998, "B"),
        (0.99999, 0.02, 1, 58.598, "C"),
        (0.85, 0.08, 1, 35.601, "D"),
        (0.85, 0.08, 3, 46.284, "D"),
        (0.75, 0.05, 1, 12.052, "F"),
        (0.75, 0.05, 4, 32.230, "E"),  # four corroborating photos: F to E
    ],
)
def test_worked_examples_at_the_shipped_threshold(p, area, n, score, category):
    s = priority_score(p, area, n, PriorityConfig(confidence_floor=0.692))
    assert s == pytest.approx(score, abs=1e-3)
    assert priority_category(s, flagged=True) == category


def test_score_is_bounded_and_monotonic_in_each_input():
    grid = np.array(list(itertools.product(CONF, AREA, NFLAG)), dtype=float)
    s = priority_scores(grid[:, 0], grid[:, 1], grid[:, 2]).reshape(len(CONF), len(AREA), -1)
    assert s.min() >= 0.0 and s.max() <= 100.0
    for axis in range(3):
        assert np.all(np.diff(s, axis=axis) >= -1e-12), f"not monotonic along input {axis}"
    # and each input actually matters somewhere (a constant would pass the check above)
    assert s[-1, 3, 1] > s[3, 3, 1] and s[5, -1, 1] > s[5, 0, 1] and s[5, 3, 4] > s[5, 3, 1]


def test_building_term_saturates():
    gains = [priority_score(0.9, 0.2, n + 1) - priority_score(0.9, 0.2, n) for n in range(1, 30)]
    assert all(a >= b for a, b in itertools.pairwise(gains))
    # c = 0.8, a = 0.8: corroboration removes at most half of the doubt (0.2 -> 0.1)
    assert priority_score(0.9, 0.2, 10_000) - priority_score(0.9, 0.2, 1) == pytest.approx(9.1)


def test_scalar_and_vector_agree():
    v = priority_scores([0.7, 0.9], [0.1, 0.5], [1, 4])
    assert v.tolist() == pytest.approx([priority_score(0.7, 0.1, 1), priority_score(0.9, 0.5, 4)])


def test_each_photo_can_have_its_own_floor():
    """``floor``: the threshold each photo was classified with, instead of the config's."""
    v = priority_scores([0.7, 0.7, 0.9], [0.1, 0.1, 0.5], [1, 1, 4], floor=[0.3, 0.692, 0.5])
    want = [
        priority_score(0.7, 0.1, 1, PriorityConfig(confidence_floor=0.3)),
        priority_score(0.7, 0.1, 1, PriorityConfig(confidence_floor=0.692)),
        priority_score(0.9, 0.5, 4),
    ]
    assert v.tolist() == pytest.approx(want)
    assert v[0] > v[1]  # the lower threshold leaves the same confidence more certainty
    for bad in (1.0, -0.1, math.nan):
        with pytest.raises(ValueError, match="floor"):
            priority_scores([0.7], [0.1], [1], floor=[bad])


@pytest.mark.parametrize("bad", [(-0.1, 0.2, 1), (1.1, 0.2, 1), (0.9, 1.5, 1), (0.9, 0.2, -1)])
def test_out_of_range_inputs_raise(bad):
    with pytest.raises(ValueError):
        priority_score(*bad)
    with pytest.raises(ValueError):
        priority_score(math.nan, 0.2, 1)


@pytest.mark.parametrize(
    ("score", "category"),
    [
        (100.0, "A"),
        (80.0, "A"),
        (79.999, "B"),
        (65.0, "B"),
        (64.999, "C"),
        (50.0, "C"),
        (49.999, "D"),
        (35.0, "D"),
        (34.999, "E"),
        (20.0, "E"),
        (19.999, "F"),
        (0.0, "F"),
    ],
)
def test_category_boundaries(score, category):
    assert priority_category(score, flagged=True) == category
    assert priority_category(score, flagged=False) == "none"


def test_custom_config_moves_boundaries_and_validates():
    cfg = PriorityConfig(thresholds=(90.0, 70.0, 50.0, 30.0, 10.0))
    assert priority_category(85.0, True, cfg) == "B"
    assert priority_category(85.0, True) == "A"
    cfg2 = PriorityConfig(extent_base=1.0, corroboration_gain=0.0)  # confidence only
    assert priority_score(0.75, 1.0, 50, cfg2) == pytest.approx(50.0)
    for kwargs in (
        {"thresholds": (50.0, 60.0, 40.0, 30.0, 20.0)},
        {"extent_base": -0.1},
        {"corroboration_gain": 1.5},
        {"confidence_floor": 1.0},
        {"area_full": 0.0},
    ):
        with pytest.raises(ValueError):
            PriorityConfig(**kwargs)


def test_category_tables_are_complete_and_ranked():
    assert set(CATEGORY_LABELS) == set(CATEGORIES) == set(CATEGORY_DESCRIPTIONS)
    assert [category_rank(c) for c in CATEGORIES] == list(range(7))
    with pytest.raises(ValueError):
        category_rank("Z")


def test_defect_area_fraction():
    cam = np.zeros((10, 10), dtype=np.float32)
    assert defect_area_fraction(cam) == 0.0
    cam[:3, :] = 0.9  # 30 % hot
    cam[3, :5] = 0.5  # on the threshold: counted
    assert defect_area_fraction(cam) == pytest.approx(0.35)
    assert defect_area_fraction(cam, threshold=0.95) == 0.0
    assert defect_area_fraction(np.ones((4, 4))) == 1.0
    with_nan = np.array([[np.nan, 1.0], [0.0, 0.0]])
    assert defect_area_fraction(with_nan) == pytest.approx(1 / 3)
    assert defect_area_fraction(np.array([])) == 0.0
