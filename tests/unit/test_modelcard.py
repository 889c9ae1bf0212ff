"""Model card + safetensors weights: round trip, verification, clear errors, no pickle."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
from factories import tiny_card, tiny_model_dir, tiny_nets

from heritage.kernel.errors import ModelError
from heritage.model import card as modelcard
from heritage.model.card import ModelCard, load_model, read_card, save_model

LABELS = ("crack", "no_crack", "salt_damage")


def make_card(with_stage2: bool = True, **over) -> ModelCard:
    over.setdefault(
        "training", {"data": [{"dir": "brickwork-cracks", "licence": "internal use only"}]}
    )
    over.setdefault("metrics", {"val": {"f1": 0.5}})
    return tiny_card(model_id="test-model", stage2="resnet18" if with_stage2 else None, **over)


@pytest.fixture(scope="module")
def nets() -> tuple[torch.nn.Module, torch.nn.Module]:
    return tiny_nets(make_card())


@pytest.fixture
def saved(tmp_path) -> Path:
    return tiny_model_dir(tmp_path / "m", make_card())


def _same_weights(a: torch.nn.Module, b: torch.nn.Module, atol: float = 0.0) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(
        torch.allclose(sa[k].float(), sb[k].float(), atol=atol) for k in sa
    )


def test_round_trip_fp32(saved, nets):
    loaded = load_model(saved)
    card = loaded.card
    assert card.stage1.weights == "stage1.safetensors" and len(card.stage1.sha256) == 64
    assert card.stage2 is not None and card.stage2.weights == "stage2.safetensors"
    assert card.created  # filled in
    assert card.stage1.labels == LABELS
    assert card.training["data"][0]["licence"] == "internal use only"
    assert not loaded.stage1.training and not loaded.stage2.training
    assert _same_weights(loaded.stage1, nets[0])
    assert _same_weights(loaded.stage2, nets[1])
    x = torch.rand(1, 3, 64, 64)
    with torch.inference_mode():
        assert torch.allclose(loaded.stage1(x), nets[0](x))


def test_round_trip_fp16_loads_into_fp32(tmp_path, nets):
    save_model(tmp_path / "h", make_card(with_stage2=False), nets[0], fp16=True)
    full = tmp_path / "full"
    save_model(full, make_card(with_stage2=False), nets[0])
    size16 = (tmp_path / "h" / "stage1.safetensors").stat().st_size
    assert size16 < 0.6 * (full / "stage1.safetensors").stat().st_size
    loaded = load_model(tmp_path / "h")
    assert loaded.stage2 is None and loaded.card.decision_stage == "stage1"
    assert all(p.dtype == torch.float32 for p in loaded.stage1.parameters())
    assert _same_weights(loaded.stage1, nets[0], atol=1e-2)


def test_card_json_round_trip(saved):
    card = read_card(saved)
    again = ModelCard.from_json(card.to_json())
    assert again == card
    d = json.loads((saved / "model.json").read_text())
    for key in (
        "cam_layer",
        "cam_method",
        "threshold",
        "decision_stage",
        "mean",
        "std",
        "input_size",
        "training",
        "metrics",
        "created",
        "model_id",
        "version",
    ):
        assert key in d


def test_flipped_byte_is_refused_with_sha256(saved):
    p = saved / "stage1.safetensors"
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0xFF
    p.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="sha256") as ei:
        load_model(saved)
    assert "tampered or truncated" in str(ei.value)


def test_truncated_file_is_refused(saved):
    p = saved / "stage2.safetensors"
    p.write_bytes(p.read_bytes()[:1000])
    with pytest.raises(ModelError, match=r"stage2\.safetensors"):
        load_model(saved)


def test_missing_weights_card_and_folder(saved, tmp_path):
    (saved / "stage2.safetensors").unlink()
    with pytest.raises(ModelError, match="missing"):
        load_model(saved)
    (saved / "model.json").unlink()
    with pytest.raises(ModelError, match=r"model\.json"):
        load_model(saved)
    with pytest.raises(ModelError, match="heritage train"):
        load_model(tmp_path / "nowhere")


def test_bad_json_and_malformed_card(saved):
    (saved / "model.json").write_text("{not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        load_model(saved)
    (saved / "model.json").write_text(json.dumps({"model_id": "x"}))
    with pytest.raises(ModelError, match="lacks"):
        load_model(saved)


def test_unknown_arch_is_refused(saved):
    d = json.loads((saved / "model.json").read_text())
    d["stage1"]["arch"] = "efficientnet_b9"
    (saved / "model.json").write_text(json.dumps(d))
    with pytest.raises(ModelError, match="efficientnet_b9"):
        load_model(saved)


def test_weights_path_outside_folder_is_refused(saved):
    d = json.loads((saved / "model.json").read_text())
    d["stage1"]["weights"] = "../stage1.safetensors"
    (saved / "model.json").write_text(json.dumps(d))
    with pytest.raises(ModelError, match="file name inside"):
        load_model(saved)


def test_inconsistent_card_is_refused():
    with pytest.raises(ModelError, match="decision_stage"):
        make_card(with_stage2=False, decision_stage="stage2").validate()
    with pytest.raises(ModelError, match="threshold"):
        make_card(threshold=1.5).validate()


def test_loading_never_unpickles(saved, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("unpickling attempted")

    monkeypatch.setattr(pickle, "loads", boom)
    monkeypatch.setattr(pickle, "load", boom)
    monkeypatch.setattr(pickle, "Unpickler", boom)
    monkeypatch.setattr(torch, "load", boom)
    loaded = load_model(saved)
    assert loaded.stage2 is not None


def test_default_model_dir_env_override(monkeypatch, tmp_path):
    monkeypatch.setenv("HERITAGE_MODEL_DIR", str(tmp_path))
    assert modelcard.default_model_dir() == tmp_path
    monkeypatch.delenv("HERITAGE_MODEL_DIR")
    # the shipped model is package data (heritage_models); in a checkout that is models/
    shipped = Path(__file__).resolve().parents[2] / "models" / "heritage-default"
    assert modelcard.default_model_dir().resolve() == shipped.resolve()
    with pytest.raises(ModelError, match="heritage train"):
        monkeypatch.setenv("HERITAGE_MODEL_DIR", str(tmp_path / "absent"))
        load_model()


def test_positive_indices_name_the_stage1_outputs_that_mean_conservation_needed():
    assert make_card().positive_indices == [0, 2]  # crack, salt_damage of LABELS
    assert make_card(positive_labels=("no_crack",)).positive_indices == [1]


# ------------------------------------------------------------------ the typed card (v2)


def test_inference_settings_are_typed_fields_and_round_trip(tmp_path, nets):
    from heritage.model.scenesettings import SceneSettings

    card = make_card(
        cam_target="positive",
        scene={"overlap": 0.25, "refine_candidates": 2},
        pruning={"ratio": 0.25, "method": "l2"},
    )
    assert isinstance(card.scene, SceneSettings) and card.scene.overlap == 0.25
    assert isinstance(card.pruning, modelcard.PruningRecord) and card.pruning.ratio == 0.25
    text = card.to_json()
    d = json.loads(text)
    assert d["format"] == modelcard.CARD_FORMAT == "heritage-model-card/2"
    assert d["cam_target"] == "positive" and d["pruning"]["ratio"] == 0.25
    assert d["scene"]["overlap"] == 0.25 and "cam_target" not in d["training"]
    again = ModelCard.from_json(text)
    assert again == card


def test_a_version_1_card_still_loads_its_settings_moved_to_typed_fields():
    d = json.loads(make_card().to_json())
    d["format"] = "heritage-model-card/1"
    d.pop("cam_target"), d.pop("pruning")
    d["training"] = {"cam_target": "positive", "pruning": {"ratio": 0.3, "arch": "x"},
                     "run_dir": "/somewhere/run"}  # fmt: skip
    card = ModelCard.from_dict(d)
    assert card.cam_target == "positive" and card.pruning == modelcard.PruningRecord(0.3)
    assert set(card.training) == {"run_dir"}  # documentation only now
    d["training"]["cam_target"] = "everything"
    with pytest.raises(ModelError, match="cam_target must be one of predicted, positive"):
        ModelCard.from_dict(d)


@pytest.mark.parametrize("bad", [{"pruning": [1]}, {"pruning": {"method": "l2"}}])
def test_a_malformed_pruning_record_is_refused(bad):
    d = {**json.loads(make_card().to_json()), **bad}
    with pytest.raises(ModelError, match="pruning must be null or an object with a ratio"):
        ModelCard.from_dict(d)


def test_saved_card_holds_no_absolute_path(tmp_path, nets):
    training = {
        "data_dirs": [str(tmp_path / "data" / "brickwork-cracks"), "../shared/data/x"],
        "command_line": f"heritage train {tmp_path / 'data' / 'set'} -o {tmp_path / 'm'}",
        "config": {"run_dir": str(tmp_path / "run"), "paths": [tmp_path / "p"]},
    }
    save_model(tmp_path / "m", make_card(training=training), *nets)
    text = (tmp_path / "m" / "model.json").read_text(encoding="utf-8")
    assert str(tmp_path) not in text
    got = json.loads(text)["training"]
    assert got["data_dirs"] == ["brickwork-cracks", "../shared/data/x"]  # relative: kept
    assert got["command_line"] == "heritage train set -o m"
    assert got["config"] == {"run_dir": "run", "paths": ["p"]}
