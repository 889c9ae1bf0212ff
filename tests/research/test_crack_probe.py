"""research/probes/crack_probe.py: which painted crack each wall gets, and its summary."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import load_script


def _line_mask(size: int = 32, row: int = 10) -> np.ndarray:
    m = np.zeros((size, size), bool)
    m[row, 4:20] = True
    return m


def test_crack_probe_cycles_masks_and_counts_flags_per_dataset():
    probe = load_script("research/probes/crack_probe")
    walls = [np.full((32, 32, 3), 150, np.uint8) for _ in range(5)]
    masks = [_line_mask(row=3), _line_mask(row=20)]
    pairs = probe.painted_pairs(walls, masks)
    assert [j for _, j in pairs] == [0, 1, 0, 1, 0]
    assert not (pairs[0][0] == pairs[2][0]).all()  # same mask, another orientation
    with pytest.raises(ValueError):
        probe.painted_pairs(walls, [])
    summary = probe.summarise(
        ["A", "A", "B"],
        np.array([0.1, 0.8, 0.2]),
        np.array([0.9, 0.95, 0.3]),
        ["crack", "crack", "healthy"],
        threshold=0.5,
    )
    assert list(summary) == ["A", "B", "all"]
    assert summary["A"]["flagged_plain"] == 1 and summary["A"]["flagged_painted"] == 2
    assert summary["all"]["n"] == 3 and summary["all"]["flagged_painted"] == 2
    assert summary["B"]["painted_classes"] == {"healthy": 1}
    rows = probe.render(summary, ["# title"])
    assert "| B | 1 | 0 (0.0%) | 0 (0.0%) | 0.200 | 0.300 | healthy 1 |" in rows
