"""scripts/fit_wall_gate.py: refitting the gate keeps the card's other scene settings."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import load_script
from factories import tiny_model_dir

from heritage.model.card import read_card
from heritage.model.scenesettings import SceneSettings
from heritage.model.wallgate import load_gate


def _npz(path: Path, feats: np.ndarray, n_photos: int) -> Path:
    paths = np.array([f"photo{i}.jpg" for i in range(n_photos)])
    np.savez(path, feats=feats.astype(np.float16), paths=paths)
    return path


def test_refit_keeps_scene_settings_and_records_each_source(tmp_path, monkeypatch):
    settings = SceneSettings(
        tile_size=64, max_side=256, close_up_side=128, refine_candidates=2, refine_min_p=0.1
    )
    model = tiny_model_dir(tmp_path / "m", scene=settings)
    rng = np.random.default_rng(0)
    walls = rng.normal(1.0, 1.0, (60, 16))
    train = _npz(tmp_path / "train.npz", walls[:40], 40)
    val = _npz(tmp_path / "val.npz", walls[40:], 20)
    a = _npz(tmp_path / "a.npz", rng.normal(-1.0, 1.0, (30, 16)), 3)
    b = _npz(tmp_path / "b.npz", rng.normal(-1.0, 1.0, (10, 16)), 2)
    argv = ["fit_wall_gate", "--model", str(model), "--train-npz", str(train)]
    argv += ["--val-npz", str(val), "--scene-npz", str(a), f"{b}:3", "--components", "4"]
    argv += ["--version", "0.0.2", "--negatives", "test tiles"]
    monkeypatch.setattr(sys, "argv", argv)
    assert load_script("fit_wall_gate").main() == 0

    card = read_card(model)
    st = card.scene
    assert card.version == "0.0.2"
    assert (st.tile_size, st.max_side, st.refine_candidates, st.refine_min_p) == (64, 256, 2, 0.1)
    fit = st.gate_fit
    assert fit["scene_tiles"] == 30 + 3 * 10 and fit["scene_photos"] == 3
    assert fit["scene_sources"] == {
        "a.npz": {"tiles": 30, "repeat": 1},
        "b.npz": {"tiles": 10, "repeat": 3},
    }
    assert fit["negatives"] == "test tiles"
    data = (model / st.gate_file).read_bytes()
    assert hashlib.sha256(data).hexdigest() == st.gate_sha256
    gate = load_gate(data, st.gate_threshold)
    assert gate.is_wall(walls[40:]).mean() >= 0.9  # threshold at the 1 % quantile of val


def test_a_repeat_below_one_is_refused():
    fw = load_script("fit_wall_gate")
    assert fw._source("x.npz") == (Path("x.npz"), 1)
    assert fw._source("runs/x.npz:3") == (Path("runs/x.npz"), 3)
    with pytest.raises(SystemExit, match="at least 1"):
        fw._source("x.npz:0")
