"""The model card checked as a whole before any weights are read (issue 25 items 5, 6).

Each bad card used to give a traceback, a silent wrong result (``std: NaN``: every
photo "not flagged", exit 0) or a late failure after the weights were loaded.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from factories import tiny_card, tiny_model_dir
from helpers import cli_line, one_error

from heritage.kernel.errors import ModelError
from heritage.model import card as modelcard
from heritage.model.card import load_model

#: raw JSON text replacing a value of model.json -> words the refusal must contain
BAD_VALUES = {
    ("cam_method", '"bogus"'): "cam_method 'bogus' is unknown",
    ("training", '"oops"'): "training must be an object",
    ("input_size", "1e999"): "input_size must be a whole number",
    ("input_size", "200000"): "input_size must be a whole number of pixels in 8..4096",
    ("input_size", "true"): "input_size must be a whole number",
    ("std", "[0.2, NaN, 0.2]"): "std must be 3 finite numbers > 0",
    ("mean", "[Infinity, 0.4, 0.4]"): "mean must be 3 finite numbers",
    ("threshold", "NaN"): "threshold must be a number in [0, 1]",
    ("metrics", "[]"): "metrics must be an object",
    ("scene", "7"): "scene must be an object",
}


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    """A tiny model folder whose card the test edits."""
    return tiny_model_dir(tmp_path / "m")


def _edit(model_dir: Path, key: str, raw: str) -> None:
    """Set ``key`` of model.json to the raw JSON text ``raw`` (NaN, 1e999 and the like)."""
    card = model_dir / "model.json"
    d = json.loads(card.read_text())
    d[key] = "__RAW__"
    card.write_text(json.dumps(d, indent=2).replace('"__RAW__"', raw))


@pytest.mark.parametrize(("key", "raw"), sorted(BAD_VALUES))
def test_bad_card_is_refused_before_any_weights_are_read(
    saved: Path,
    monkeypatch: pytest.MonkeyPatch,
    key: str,
    raw: str,
) -> None:
    _edit(saved, key, raw)

    def no_weights(*args, **kwargs):
        raise AssertionError("weights read before the card was checked")

    monkeypatch.setattr(modelcard, "_verified_bytes", no_weights)
    with pytest.raises(ModelError, match="invalid model card") as err:
        load_model(saved)
    assert BAD_VALUES[(key, raw)] in str(err.value)
    assert "\n" not in str(err.value)


def test_bad_scene_settings_are_refused_before_the_weights(saved: Path, monkeypatch) -> None:
    _edit(saved, "scene", '{"tile_size": 5, "overlap": NaN}')
    monkeypatch.setattr(modelcard, "_verified_bytes", lambda *a, **k: pytest.fail("read"))
    with pytest.raises(ModelError, match="invalid scene settings") as err:
        load_model(saved)
    assert "tile_size" in str(err.value) and "overlap" in str(err.value)


def test_every_problem_is_listed_at_once() -> None:
    from heritage.model.cardcheck import card_problems

    d = json.loads(tiny_card().to_json())
    d.update(input_size=True, std=[0, 1, 1], cam_method="x", stage2_cam_alpha=2)
    d["stage1"]["num_outputs"] = "3"
    problems = card_problems(d)
    assert len(problems) == 5, problems


def test_cam_method_names_are_the_methods_explain_implements() -> None:
    from heritage.model.cardcheck import CAM_METHOD_NAMES
    from heritage.model.explain import CAM_METHODS

    assert set(CAM_METHOD_NAMES) == set(CAM_METHODS)


def test_unknown_cam_layer_is_refused_before_the_weights(saved: Path, monkeypatch) -> None:
    _edit(saved, "cam_layer", '"features.99"')
    monkeypatch.setattr(modelcard, "_verified_bytes", lambda *a, **k: pytest.fail("read"))
    with pytest.raises(ModelError, match=r"cam_layer 'features\.99' is not a layer"):
        load_model(saved)


def test_oversized_weights_are_refused_from_their_size_without_reading(saved: Path) -> None:
    """Item 5: a weights file of several GB was read whole into memory before hashing."""
    card = json.loads((saved / "model.json").read_text())
    assert card["stage1"]["size"] == (saved / "stage1.safetensors").stat().st_size
    huge = saved / "stage2.safetensors"
    os.truncate(huge, 8 << 30)  # 8 GiB, sparse: no disk space used, never read
    with pytest.raises(
        ModelError, match=r"has 8589934592 bytes, model\.json says \d+: the file is tampered"
    ):
        load_model(saved)
    del card["stage2"]["size"]  # an older card: the architecture bounds the file
    (saved / "model.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match=r"allows at most \d+ bytes for a resnet18"):
        load_model(saved)


def test_classify_with_a_nan_card_exits_1_in_one_line(saved: Path, tmp_path: Path, capsys) -> None:
    """Item 6: std NaN classified every photo as not flagged, with exit 0."""
    _edit(saved, "std", "[NaN, 0.2, 0.2]")
    (tmp_path / "p").mkdir()
    out = tmp_path / "x.gpkg"
    code, err = cli_line(
        capsys, "classify", str(tmp_path / "p"), "-o", str(out), "--model", str(saved)
    )
    assert code == 1
    assert one_error(err).startswith("Error: invalid model card: std must be 3 finite numbers")
    assert not out.exists()
