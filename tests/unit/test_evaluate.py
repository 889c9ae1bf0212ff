"""Metrics with hand-computed values, and `heritage evaluate` on tiny generated folders."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from factories import tiny_model_dir
from PIL import Image

from heritage.kernel.errors import DataError, InputNotFoundError, ModelError
from heritage.model.metrics import (
    binary_metrics,
    default_tolerance,
    energy_in_mask,
    mcnemar,
    pointing_game,
)
from heritage.training.evaluate import EvalConfig, evaluate, load_mask

# ---------------------------------------------------------------------------- metrics


def test_binary_metrics_hand_computed():
    y = [1, 1, 1, 0, 0, 0, 0, 1]
    p = [0.9, 0.6, 0.2, 0.1, 0.7, 0.3, 0.4, 0.8]
    m = binary_metrics(y, p, 0.5)
    # predictions: 1 1 0 0 1 0 0 1 -> tp=3 fn=1 fp=1 tn=3
    assert m["confusion"] == [[3, 1], [1, 3]]
    assert m["n"] == 8 and m["accuracy"] == 0.75
    assert m["precision"] == 0.75 and m["recall"] == 0.75 and m["specificity"] == 0.75
    assert m["f1"] == pytest.approx(0.75)
    # AUC: of 16 (pos, neg) pairs, positive 0.2 loses to 0.7, 0.3, 0.4 and 0.6 loses to 0.7
    assert m["roc_auc"] == pytest.approx(12 / 16)
    assert all(m["defined"].values()) and m["notes"] == []


def test_binary_metrics_only_positives_and_only_negatives():
    m = binary_metrics([1, 1, 1], [0.9, 0.2, 0.7], 0.5)
    assert m["recall"] == pytest.approx(2 / 3) and m["specificity"] is None
    assert m["roc_auc"] is None and m["defined"]["roc_auc"] is False
    assert "only positives" in m["notes"][0] and "specificity" in m["notes"][0]
    m = binary_metrics([0, 0], [0.1, 0.2], 0.5)
    assert m["specificity"] == 1.0 and m["recall"] is None and m["precision"] is None
    assert m["f1"] is None and m["defined"]["recall"] is False
    assert any("only negatives" in n for n in m["notes"])
    assert m["confusion"] == [[2, 0], [0, 0]]


def test_mcnemar_exact():
    a = [True] * 6 + [False] * 1 + [True] * 3
    b = [False] * 6 + [True] * 1 + [True] * 3
    r = mcnemar(a, b)
    assert (r["b"], r["c"]) == (6, 1)
    # two-sided exact: 2 * P(X <= 1 | n=7, 0.5) = 2 * 8/128
    assert r["p_value"] == pytest.approx(16 / 128)
    assert mcnemar([True, False], [True, False])["p_value"] == 1.0


def test_pointing_game_exact_and_tolerance():
    cam = np.zeros((224, 224), np.float32)
    cam[100, 100] = 1.0
    mask = np.zeros((224, 224), bool)
    mask[100, 110] = True  # 10 px away
    assert pointing_game(cam, mask) is True  # default 15 px at 224
    assert pointing_game(cam, mask, tolerance=0) is False
    assert pointing_game(cam, mask, tolerance=9.9) is False
    mask2 = np.zeros_like(mask)
    mask2[100, 120] = True  # 20 px away
    assert pointing_game(cam, mask2) is False
    assert default_tolerance((112, 112)) == pytest.approx(7.5)
    assert pointing_game(np.zeros_like(cam), mask) is False  # empty map is a miss
    with pytest.raises(ValueError, match="no defect pixel"):
        pointing_game(cam, np.zeros_like(mask))


def test_energy_in_mask_hand_computed():
    cam = np.array([[1.0, 0.5], [0.0, 0.5]])
    mask = np.array([[1, 0], [0, 1]])
    assert energy_in_mask(cam, mask) == pytest.approx(1.5 / 2.0)
    assert energy_in_mask(np.zeros((2, 2)), mask) == 0.0
    with pytest.raises(ValueError, match="same size"):
        energy_in_mask(cam, np.ones((3, 3)))


def test_mask_uses_image_geometry(tmp_path):
    from heritage.model.preprocess import to_model_rgb

    # a 100x50 (w x h) image whose right half is white; the mask marks the same half
    arr = np.zeros((50, 100), np.uint8)
    arr[:, 50:] = 255
    Image.fromarray(arr).save(tmp_path / "m.png")
    mask = load_mask(tmp_path / "m.png", 32)
    rgb = to_model_rgb(Image.fromarray(arr).convert("RGB"), 32)
    assert mask.shape == (32, 32)
    assert np.array_equal(mask, rgb[..., 0] > 127)


# ---------------------------------------------------------------------------- evaluate


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return tiny_model_dir(tmp_path_factory.mktemp("model") / "m", stage2="mobilenet_v3_small")


def _folder(root: Path, classes: dict[str, int], seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for cls, n in classes.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            arr = rng.integers(0, 255, (48, 56, 3), dtype=np.uint8)
            Image.fromarray(arr).save(root / cls / f"{cls}_{i}.png")
    return root


def test_evaluate_json_on_two_folders(model_dir, tmp_path):
    a = _folder(tmp_path / "walls", {"crack": 3, "no_crack": 2})
    b = _folder(tmp_path / "salt", {"salt_damage": 2, "healthy": 2}, seed=1)
    (a / "crack" / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "out" / "m.json"
    csv_path = tmp_path / "per.csv"
    report = evaluate(
        [a, b],
        model_dir,
        config=EvalConfig(batch_size=3, device="cpu"),
        per_image_csv=csv_path,
        json_out=out,
    )
    data = json.loads(out.read_text())
    assert data == json.loads(json.dumps(report))
    for key in (
        "n",
        "accuracy",
        "precision",
        "recall",
        "f1",
        "roc_auc",
        "confusion",
        "stage1",
        "stage2",
        "per_dataset",
        "model",
        "device",
    ):
        assert key in data
    assert data["n"] == 9
    assert sum(map(sum, data["confusion"])) == 9
    assert data["n_positive"] == 5 and data["n_negative"] == 4
    assert sum(map(sum, data["stage1"]["confusion"])) == 9
    assert set(data["per_dataset"]) == {"walls", "salt"}
    assert data["per_dataset"]["walls"]["n"] == 5
    assert data["model"]["model_id"] == "tiny" and data["device"] == "cpu"
    assert len(data["unreadable"]) == 1 and "broken.png" in data["unreadable"][0]["path"]
    assert "cam" not in data
    rows = list(csv.DictReader(csv_path.open()))
    assert len(rows) == 10
    assert sum(1 for r in rows if r["error"]) == 1


def test_one_class_folder_says_what_is_undefined(model_dir, tmp_path):
    d = _folder(tmp_path / "only", {"crack": 3})
    runner = CliRunner()
    from heritage.cli import cli

    out = tmp_path / "r.json"
    res = runner.invoke(
        cli, ["evaluate", str(d), "--model", str(model_dir), "--device", "cpu", "--json", str(out)]
    )
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert data["roc_auc"] is None
    assert data["specificity"] is None and data["recall"] is not None
    assert data["defined"]["specificity"] is False
    assert any("only positives" in n for n in data["notes"])
    assert "n=3" in res.output


def test_positive_option_changes_labels(model_dir, tmp_path):
    d = _folder(tmp_path / "x", {"damp": 2, "ok": 1})
    r = evaluate([d], model_dir, config=EvalConfig(positive=("damp",), device="cpu"))
    assert r["n_positive"] == 2 and r["n_negative"] == 1


def test_masks_give_cam_scores(model_dir, tmp_path):
    d = _folder(tmp_path / "imgs", {"crack": 3})
    masks = tmp_path / "masks"
    masks.mkdir()
    for i in range(2):  # the third image has no mask
        m = np.zeros((48, 56), np.uint8)
        m[10:30, 20:40] = 255
        Image.fromarray(m).save(masks / f"crack_{i}.png")
    r = evaluate([d], model_dir, masks_dir=masks, config=EvalConfig(device="cpu"))
    cam = r["cam"]
    assert cam["n_with_masks"] == 2 and cam["n_without_mask"] == 1
    assert 0.0 <= cam["pointing_game"] <= 1.0
    assert 0.0 <= cam["energy_in_mask"] <= 1.0
    assert cam["pointing_tolerance_px"] == pytest.approx(15 * 64 / 224)


def test_missing_folder_and_missing_model(tmp_path, monkeypatch):
    with pytest.raises(InputNotFoundError):
        evaluate([tmp_path / "nope"], tmp_path)
    d = _folder(tmp_path / "d", {"crack": 1})
    monkeypatch.setenv("HERITAGE_MODEL_DIR", str(tmp_path / "no-model"))
    with pytest.raises(ModelError, match="heritage train"):
        evaluate([d], None, config=EvalConfig(device="cpu"))
    (tmp_path / "empty" / "crack").mkdir(parents=True)
    with pytest.raises(DataError):
        evaluate([tmp_path / "empty"], tmp_path)
