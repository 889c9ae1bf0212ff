"""research/probes/check_tta.py: dihedral views, weight averaging, validation-only thresholds."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from conftest import load_script
from factories import tiny_card

from heritage.model.card import save_model


@pytest.fixture(scope="module")
def tta():
    return load_script("research/probes/check_tta")


def test_views_are_the_eight_distinct_symmetries_of_the_square(tta):
    x = torch.arange(9.0).reshape(1, 1, 3, 3)
    views = [tta.view(x, k) for k in range(8)]
    assert len({tuple(v.flatten().tolist()) for v in views}) == 8
    assert torch.equal(views[4], torch.flip(x, dims=(3,)))  # hflip: left-right
    assert torch.equal(views[6], torch.flip(x, dims=(2,)))  # vflip: top-bottom
    assert torch.equal(views[2], torch.flip(x, dims=(2, 3)))  # rot180
    assert len(tta.VIEW_NAMES) == 12
    sets = [*tta.VIEW_SETS.values(), *tta.MAX_VIEW_SETS.values()]
    assert all(set(s) <= set(range(12)) and s[0] == 0 for s in sets)


def test_zoomed_views_are_the_four_quadrants_upsampled_2x(tta):
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    quadrants = [tta.view(x, tta.ZOOM + q) for q in range(4)]
    assert all(v.shape == x.shape for v in quadrants)
    # a constant image stays constant; each view holds only its quadrant's values
    assert torch.equal(tta.view(torch.ones(1, 3, 8, 8), tta.ZOOM), torch.ones(1, 3, 8, 8))
    for v, (lo, hi) in zip(quadrants, [(0, 5), (2, 7), (8, 13), (10, 15)], strict=True):
        assert lo <= v.min() and v.max() <= hi


def test_p_positive_combines_views_by_mean_or_max(tta):
    p = np.array([[0.2, 0.9], [0.6, 0.1]])  # 2 images x 2 views, P(crack)
    logits = np.stack([np.log(p), np.log(1 - p)], axis=-1).astype(np.float32)
    d = {"logits": logits, "labels": np.array(["crack", "no_crack"])}
    np.testing.assert_allclose(tta.p_positive(d, [0, 1], "mean"), [0.55, 0.35], rtol=1e-5)
    np.testing.assert_allclose(tta.p_positive(d, [0, 1], "max"), [0.9, 0.6], rtol=1e-5)
    with pytest.raises(ValueError):
        tta.p_positive(d, [0, 1], "median")


def test_averaged_stage1_holds_the_mean_of_the_models_weights(tta, tmp_path):
    card = tiny_card(stage2=None)
    nets = []
    for seed, name in ((0, "a"), (1, "b")):
        torch.manual_seed(seed)
        net = torchvision.models.mobilenet_v3_small(num_classes=3).eval()
        save_model(tmp_path / name, card, net)
        nets.append(net)
    avg, loaded_card = tta.averaged_stage1([tmp_path / "a", tmp_path / "b"])
    assert loaded_card.stage1.arch == "mobilenet_v3_small"
    for key, value in avg.state_dict().items():
        a, b = nets[0].state_dict()[key], nets[1].state_dict()[key]
        if value.is_floating_point():
            torch.testing.assert_close(value, (a + b) / 2)
        else:  # e.g. BatchNorm's num_batches_tracked: the first model's
            assert torch.equal(value, a)
    single, _ = tta.averaged_stage1([tmp_path / "b"])
    torch.testing.assert_close(single.state_dict(), nets[1].state_dict())


def test_averaging_refuses_models_with_other_labels(tta, tmp_path):
    torch.manual_seed(0)
    net = torchvision.models.mobilenet_v3_small(num_classes=3).eval()
    save_model(tmp_path / "a", tiny_card(stage2=None), net)
    card = tiny_card(stage2=None)
    other = dataclasses.replace(
        card, stage1=dataclasses.replace(card.stage1, labels=("crack", "b", "c"))
    )
    save_model(tmp_path / "b", other, net)
    with pytest.raises(SystemExit, match="same arch and labels"):
        tta.averaged_stage1([tmp_path / "a", tmp_path / "b"])


def _logits_for(p_crack: np.ndarray) -> np.ndarray:
    """N×1×2 logits whose softmax gives P(crack) = p_crack (labels crack, no_crack)."""
    p = np.clip(p_crack, 1e-6, 1 - 1e-6)
    return np.stack([np.log(p), np.log(1 - p)], axis=-1)[:, None, :].astype(np.float32)


def test_score_chooses_the_threshold_on_validation_only(tta):
    # validation separates at 0.6; on test a threshold of 0.3 would be perfect instead
    val_p = np.array([0.7, 0.8, 0.9, 0.2, 0.4, 0.5])
    val_y = ["crack"] * 3 + ["no_crack"] * 3
    test_p = np.array([0.35, 0.45, 0.75, 0.1, 0.2, 0.25])
    test_y = ["crack"] * 3 + ["no_crack"] * 3
    n = len(val_p) + len(test_p)
    d = {
        "logits": _logits_for(np.concatenate([val_p, test_p])),
        "labels": np.array(["crack", "no_crack"]),
        "split": np.array(["val"] * 6 + ["test"] * 6),
        "cls": np.array(val_y + test_y),
        "dataset": np.array(["brickwork-cracks"] * n),
    }
    r = tta.score(d, tta.p_positive(d, [0]))
    assert 0.5 < r["threshold"] <= 0.7
    assert r["val_balanced"] == pytest.approx(1.0)
    # only 0.75 of the test cracks is above the validation threshold: 4 of 6 right
    assert r["all"] == (4, 6)
    assert r["brickwork-cracks"] == (4, 6)
    assert r["sdnet2018-walls"] == (0, 0)


def test_p_positive_averages_probabilities_over_views(tta):
    logits = np.concatenate([_logits_for(np.array([0.2])), _logits_for(np.array([0.6]))], 1)
    d = {"logits": logits, "labels": np.array(["crack", "no_crack"])}
    assert tta.p_positive(d, [0, 1])[0] == pytest.approx(0.4, abs=1e-5)
    assert tta.p_positive(d, [1])[0] == pytest.approx(0.6, abs=1e-5)


def test_score_rows_report_each_model_and_their_ensemble(tta):
    # model a ranks the images right, model b wrong; their mean probability is b's order
    # softened by a: the ensemble row must be scored on the mean, not on either model
    pa = np.array([0.9, 0.8, 0.2, 0.1])
    pb = np.array([0.1, 0.45, 0.5, 0.9])
    d = {
        "logits": np.concatenate([_logits_for(np.tile(pa, 2)), _logits_for(np.tile(pb, 2))], 1),
        "labels": np.array(["crack", "no_crack"]),
        "split": np.array(["val"] * 4 + ["test"] * 4),
        "cls": np.array(["crack", "crack", "no_crack", "no_crack"] * 2),
        "dataset": np.array(["brickwork-cracks"] * 8),
    }
    a, b = Path("models/heritage-default"), Path("runs/other")
    rows = tta.score_rows(d, [a, b], [0], ensemble=True)
    assert [(name, views) for name, views, _ in rows] == [
        ("shipped", "none"),
        ("`other`", "none"),
        ("ensemble of shipped + `other` (mean probability)", "none"),
    ]
    assert rows[0][2]["val_balanced"] == pytest.approx(1.0)
    # b beats chance at no threshold: 0.5 is kept, and every image is wrong at it
    assert rows[1][2]["threshold"] == 0.5
    assert rows[1][2]["val_balanced"] == pytest.approx(0.0)
    mean = (pa + pb) / 2  # 0.5, 0.625, 0.35, 0.5: the first crack ties the second negative
    expected = tta.score(d, np.tile(mean, 2))
    assert np.array_equal(rows[2][2].pop("test_right"), expected.pop("test_right"))
    assert rows[2][2] == expected
    # weight averaging: column 0 is the average, column 1 the first model alone (baseline)
    averaged = tta.score_rows(d, [a, b], [0], ensemble=False)
    assert [name for name, _, _ in averaged] == ["shipped", "weights averaged: shipped + `other`"]
    assert averaged[0][2]["val_balanced"] == rows[1][2]["val_balanced"]  # column 1
    assert averaged[1][2]["val_balanced"] == rows[0][2]["val_balanced"]  # column 0


def test_table_pairs_every_row_with_the_first_on_the_test_images(tta):
    def row(right):
        right = np.array(right, dtype=bool)
        r = {"threshold": 0.5, "val_balanced": 0.9, "all": (int(right.sum()), len(right))}
        r.update({ds: (0, 0) for ds in tta.DATASETS}, test_right=right, val_dais=(17, 18))
        return r

    base = [True] * 8 + [False] * 2
    better = [True] * 6 + [False] * 2 + [True] * 2  # 2 lost, 2 gained
    lines = tta.table([("m", "none", row(base)), ("m", "hflip", row(better))])
    assert lines[2].endswith("| – |")
    assert lines[3].endswith("| 2 / 2, p = 1.00 |")
    assert "| 0.800 (8/10) |" in lines[3] and "| – |" in lines[3]  # datasets absent
    assert "| 0.9000 | 17/18 |" in lines[3]  # validation Dais patches found
