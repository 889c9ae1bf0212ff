"""research/probes/select_cam.py: the fixed rule that picks the Grad-CAM layer and method."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from conftest import load_script


@pytest.fixture(scope="module")
def sel():
    return load_script("research/probes/select_cam")


def _result(layer, hits, energy, n=(10, 2, 5)):
    splits = ("train", "val", "test")
    return {
        "layer": layer,
        "method": "gradcam",
        "hits": dict(zip(splits, hits, strict=True)),
        "n": dict(zip(splits, n, strict=True)),
        "energy": dict(zip(splits, energy, strict=True)),
    }


def test_rule_reads_only_the_selection_splits_and_breaks_ties_by_energy(sel):
    best_on_test = _result("a", (7, 2, 5), (0.1, 0.1, 0.9))
    tied_low = _result("b", (8, 1, 1), (0.1, 0.1, 0.0))
    tied_high = _result("c", (9, 0, 0), (0.2, 0.0, 0.0))  # 9 hits, energy (2.0+0)/12
    results = [best_on_test, tied_low, tied_high]
    assert sel.choose(results, ("train", "val")) is tied_high
    assert sel.choose(results, ("val",)) is best_on_test
    assert sel.choose(results, ("test",)) is best_on_test


def test_table_marks_the_chosen_pair_and_names_the_rule(sel):
    results = [_result("a", (1, 1, 1), (0.1, 0.2, 0.3)), _result("b", (2, 2, 2), (0.1, 0.2, 0.3))]
    card = SimpleNamespace(cam_layer="a", cam_method="gradcam")
    lines = sel.render(results, results[1], ("train", "val"), card)
    assert lines[2].startswith("| a | gradcam | 1/10 | 0.100 | 1/2 | 0.200 | 1/5 | 0.300 |")
    assert lines[3].startswith("| **b** | **gradcam** | **2/10**")
    assert "train + val" in lines[-1] and "`b` gradcam" in lines[-1]
