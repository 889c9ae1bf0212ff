"""Structured pruning of MobileNetV3 and loading the pruned net back without pickle."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file, save_file

from heritage.kernel.errors import DataError, ModelError
from heritage.model.card import ModelCard, StageCard, save_model
from heritage.model.measure import param_count
from heritage.model.pruned import layer_widths, rebuild_pruned
from heritage.model.zoo import build_model
from heritage.training.prune import (
    PruneConfig,
    fp32_safetensors_bytes,
    load_pruned,
    prune_model,
    prune_to_target,
)

SIZE = 64
CLASSES = ("crack", "no_crack")
S2 = "mobilenet_v3_small"  # a small stage 2 keeps the tests fast


@pytest.fixture(scope="module")
def tiny() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("mobilenet_v3_small", len(CLASSES)).eval()


@pytest.fixture(scope="module")
def pruned(tiny) -> tuple[torch.nn.Module, list]:
    return prune_to_target(tiny, "mobilenet_v3_small", SIZE, ratio=0.25)


def test_pruning_shrinks_params_and_file_and_keeps_the_output(tiny, pruned, tmp_path):
    model, attempts = pruned
    assert attempts[-1].param_reduction >= 0.2 and attempts[-1].size_reduction >= 0.2
    assert param_count(model) <= 0.8 * param_count(tiny)
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    save_file({k: v.contiguous() for k, v in tiny.state_dict().items()}, str(a))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(b))
    assert b.stat().st_size <= 0.8 * a.stat().st_size
    x = torch.randn(3, 3, SIZE, SIZE)
    with torch.inference_mode():
        assert model(x).shape == tiny(x).shape == (3, len(CLASSES))
    widths = layer_widths(model)
    assert widths["classifier.3"][0] == len(CLASSES)  # head outputs untouched
    assert widths["features.0.0"][0] < layer_widths(tiny)["features.0.0"][0] or any(
        widths[k] != v for k, v in layer_widths(tiny).items()
    )
    # channel counts are multiples of 8 (round_to=8), except the image and class dims
    inner = [w for k, w in widths.items() if k not in ("features.0.0", "classifier.3")]
    assert all(o % 8 == 0 for o, _ in inner)
    # the original network is left alone
    assert param_count(tiny) == param_count(build_model("mobilenet_v3_small", len(CLASSES)))


def test_rebuild_from_safetensors_shapes_gives_identical_outputs(pruned, tmp_path):
    model, _ = pruned
    path = tmp_path / "p.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    state = load_file(str(path))
    net = rebuild_pruned("mobilenet_v3_small", {k: list(v.shape) for k, v in state.items()}, 2)
    net.load_state_dict(state, strict=True)
    net.eval()
    x = torch.randn(2, 3, SIZE, SIZE)
    with torch.inference_mode():
        assert torch.equal(net(x), model(x))
    # depthwise convolutions stay depthwise after the rebuild
    dw = net.get_submodule("features.1.block.0.0")
    assert dw.groups == dw.in_channels == dw.out_channels


def test_rebuild_refuses_weights_of_another_architecture():
    state = build_model("resnet18", 2).state_dict()
    with pytest.raises(ModelError, match=r"do not belong together|cannot rebuild"):
        rebuild_pruned("mobilenet_v3_small", state, 2)


def test_ratio_is_raised_until_the_target_holds(tiny):
    _, attempts = prune_to_target(tiny, "mobilenet_v3_small", SIZE, ratio=0.05, ratio_step=0.1)
    assert len(attempts) >= 2  # 2 % of channels is not 20 % of the parameters
    assert attempts[0].param_reduction < 0.2 <= attempts[-1].param_reduction
    assert attempts[-1].size_reduction >= 0.2
    with pytest.raises(ModelError, match="did not remove"):
        prune_to_target(tiny, "mobilenet_v3_small", SIZE, ratio=0.02, max_ratio=0.03)


def test_fp32_size_matches_a_written_file(tiny, tmp_path):
    p = tmp_path / "f.safetensors"
    save_file({k: v.contiguous() for k, v in tiny.state_dict().items()}, str(p), {"format": "pt"})
    assert abs(fp32_safetensors_bytes(tiny) - p.stat().st_size) < 64


def _card(arch: str = "mobilenet_v3_small") -> ModelCard:
    return ModelCard(
        model_id="tiny",
        version="0",
        input_size=SIZE,
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        positive_labels=("crack",),
        stage1=StageCard(arch, "", "", 2, CLASSES),
        stage2=StageCard(S2, "", "", 1, ("conservation_needed",)),
        cam_layer="features.12",
        cam_method="gradcam",
        threshold=0.5,
        decision_stage="stage2",
        cam_target="positive",
        metrics={"thresholds": {"stage1": 0.4, "stage2": 0.5}},
    )


def test_pruned_model_folder_round_trip_without_pickle(pruned, tmp_path, monkeypatch):
    model, _ = pruned
    torch.manual_seed(1)
    stage2 = build_model(S2, 1).eval()
    card = _card()
    card = ModelCard(**{**card.__dict__, "pruning": {"ratio": 0.25}})
    save_model(tmp_path / "m", card, model, stage2)
    assert json.loads((tmp_path / "m" / "model.json").read_text())["pruning"]["ratio"] == 0.25

    def no_pickle(*a, **k):
        raise AssertionError("torch.load (pickle) must not be used")

    monkeypatch.setattr(torch, "load", no_pickle)
    loaded = load_pruned(tmp_path / "m")
    x = torch.randn(2, 3, SIZE, SIZE)
    with torch.inference_mode():
        assert torch.equal(loaded.stage1(x), model(x))
        assert torch.equal(loaded.stage2(x), stage2(x))
    # the ordinary loader (used by classify/evaluate) recognises the pruned card too
    from heritage.model.card import load_model

    plain = load_model(tmp_path / "m")
    with torch.inference_mode():
        assert torch.equal(plain.stage1(x), model(x))
    # a tampered weights file is refused before parsing
    w = tmp_path / "m" / "stage1.safetensors"
    w.write_bytes(w.read_bytes()[:-8])
    with pytest.raises(ModelError, match="tampered or truncated"):
        load_pruned(tmp_path / "m")


# ----------------------------------------------------------------------- end to end


def _images(root: Path, n: int = 10) -> Path:
    from PIL import Image

    for cls in CLASSES:
        for i in range(n):
            rng = np.random.default_rng(hash((cls, i)) % 2**32)
            a = rng.normal(150, 20, (48, 48, 3)).clip(0, 255).astype(np.uint8)
            if cls == "crack":
                a[:, 20:24] = 20
            p = root / "set" / cls / f"{cls}_{i:02d}.png"
            p.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(a).save(p)
    return root / "set"


def test_prune_command_end_to_end_with_split_recreated_from_data(tmp_path):
    from heritage.cli import cli
    from heritage.training.data import SplitSettings, make_or_load_split

    data = _images(tmp_path)
    # the "training run": only its split matters here
    run = tmp_path / "run"
    make_or_load_split(SplitSettings(data_dirs=(str(data.resolve()),)), run)
    torch.manual_seed(0)
    s1 = build_model("mobilenet_v3_small", 2).eval()
    s2 = build_model(S2, 1).eval()
    card = _card()  # the card names no run folder: the split is recreated from --data
    card = ModelCard(**{**card.__dict__, "training": {**card.training, "config": {"seed": 0}}})
    save_model(tmp_path / "model", card, s1, s2)

    out = tmp_path / "pruned"
    res = CliRunner().invoke(
        cli,
        ["prune", str(tmp_path / "model"), "-o", str(out), "--data", str(data), "--epochs", "1",
         "--device", "cpu", "--bench-batches", "1", "--bench-batch-size", "2",
         "--report", str(tmp_path / "docs" / "pruning.md")],
    )  # fmt: skip
    assert res.exit_code == 0, res.output + repr(res.exception)
    rep = json.loads((tmp_path / "docs" / "pruning.json").read_text())
    assert rep["params"]["reduction"] >= 0.2 and rep["file_bytes"]["reduction"] >= 0.2
    assert "recreated from --data" in rep["split"]
    # the recreated split is the training split: same seed, same data, same test images
    from heritage.training.data import load_split

    test_a = sorted(it.rel for it in load_split(run) if it.split == "test")
    test_b = sorted(it.rel for it in load_split(tmp_path / "pruned-run") if it.split == "test")
    assert test_a == test_b and rep["test_images"] == len(test_a)
    for when in ("before", "after"):
        assert set(rep["test"][when]) == {"n", "stage1", "decision"}
        assert 0 <= rep["test"][when]["decision"]["accuracy"] <= 1
    assert rep["cpu_images_per_s"]["after"]["images_per_s"] > 0
    md = (tmp_path / "docs" / "pruning.md").read_text()
    assert "| parameters (M) |" in md and "heritage prune" in md
    loaded = load_pruned(out)
    assert param_count(loaded.stage1) == rep["params"]["after"]
    assert loaded.card.pruning is not None and loaded.card.pruning.source_model == "tiny 0"
    assert loaded.card.cam_target == "positive"  # the typed settings travel to the pruned card
    assert str(tmp_path) not in (out / "model.json").read_text()  # no machine path
    # pruning a pruned model is refused
    res = CliRunner().invoke(
        cli, ["prune", str(out), "-o", str(tmp_path / "p2"), "--device", "cpu"]
    )
    assert res.exit_code != 0 and "already pruned" in str(res.exception)


def test_a_split_other_than_the_cards_is_refused(tmp_path):
    from heritage.training.data import (
        SplitSettings,
        load_split,
        make_or_load_split,
        split_fingerprint,
    )
    from heritage.training.prune import _split_items

    data = _images(tmp_path, n=10)
    run = tmp_path / "run"
    make_or_load_split(SplitSettings(data_dirs=(str(data.resolve()),)), run)
    recorded = {"split": {"fingerprint": split_fingerprint(load_split(run))}}
    cfg = PruneConfig("m", "o", run_dir=str(run))
    card = ModelCard(**{**_card().__dict__, "training": recorded})
    items, source = _split_items(cfg, card, tmp_path / "w")
    assert len(items) == 20 and source == f"split.csv of {run}"
    other = ModelCard(**{**_card().__dict__, "training": {"split": {"fingerprint": "0" * 64}}})
    with pytest.raises(DataError, match="not the one the model was trained on"):
        _split_items(cfg, other, tmp_path / "w")
    with pytest.raises(DataError, match="give --run-dir RUN_DIR"):
        _split_items(PruneConfig("m", "o"), card, tmp_path / "w")


def test_prune_model_rejects_bad_ratio(tiny):
    with pytest.raises(ValueError, match="ratio"):
        prune_model(tiny, "mobilenet_v3_small", 1.0, SIZE)
    assert PruneConfig("a", "b").resolved_work_dir == Path("b-run")


def test_efficientnet_lite0_prunes_and_rebuilds_with_its_own_padding_layers():
    """EfficientNet's convolutions are a Conv2d subclass with static 'same' padding; the
    rebuilt layers must keep it, or the pruned net computes something else."""
    torch.manual_seed(0)
    net = build_model("efficientnet_lite0", 3).eval()
    small = prune_model(net, "efficientnet_lite0", 0.2, SIZE)
    assert param_count(small) <= 0.8 * param_count(net)
    state = small.state_dict()
    again = rebuild_pruned("efficientnet_lite0", {k: v.shape for k, v in state.items()}, 3)
    again.load_state_dict(state, strict=True)
    again.eval()
    strided = again.get_submodule("_blocks.3._depthwise_conv")
    assert type(strided) is type(net.get_submodule("_blocks.3._depthwise_conv"))
    x = torch.randn(2, 3, SIZE, SIZE)
    with torch.inference_mode():
        assert torch.allclose(again(x), small(x), atol=1e-5)
