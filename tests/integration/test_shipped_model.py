"""The model shipped in models/heritage-default: complete, verified, and sane."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "models" / "heritage-default"


@pytest.fixture(scope="module")
def loaded():
    from heritage.model.card import load_model

    return load_model(SHIPPED)  # verifies every weights file's sha256 against the card


def test_card_names_everything_a_user_needs(loaded):
    card = json.loads((SHIPPED / "model.json").read_text())
    for key in (
        "stage1",
        "stage2",
        "input_size",
        "mean",
        "std",
        "cam_layer",
        "cam_method",
        "threshold",
        "decision_stage",
        "training",
        "metrics",
    ):
        assert key in card, key
    from heritage.model.zoo import ARCHS

    assert card["stage1"]["arch"] in ARCHS
    sums = card["stage1"].get("sha256"), card["stage2"].get("sha256")
    assert all(isinstance(s, str) and len(s) == 64 for s in sums), sums
    assert card["training"]["command_line"].startswith("heritage train")
    assert set(card["positive_labels"]) == {"crack", "salt_damage"}
    assert "test" in card["metrics"] and "sdnet2018-walls" in card["metrics"]["test"]


def test_shipped_model_classifies_a_real_crack_patch(loaded, shared_data):
    from heritage.model.predict import TwoStageClassifier

    crack = sorted((shared_data / "ozgenel-concrete-crack" / "crack").iterdir())[0]
    plain = sorted((shared_data / "ozgenel-concrete-crack" / "no_crack").iterdir())[0]
    with TwoStageClassifier(loaded, device="cpu") as clf:
        results = clf.classify([Image.open(crack).convert("RGB"), Image.open(plain).convert("RGB")])
    assert results[0].decision and not results[1].decision
    assert results[0].cam.shape == (loaded.card.input_size,) * 2
    assert np.isfinite(results[0].cam).all() and results[0].cam.max() > 0
