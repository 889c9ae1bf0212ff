"""Model zoo: every architecture builds with the right head; weights load safely."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import pytest
import torch

from heritage.kernel.errors import InputNotFoundError, ModelError
from heritage.model import zoo as modelzoo
from heritage.model.zoo import ARCHS, build_model, cam_target_layer, default_input_size, head_layer


def _out_features(model: torch.nn.Module, arch: str) -> int:
    return model.get_submodule(head_layer(arch)).out_features


@pytest.mark.parametrize("arch", ARCHS)
def test_every_arch_builds_with_num_classes_and_cam_layer(arch):
    model = build_model(arch, 3)
    assert _out_features(model, arch) == 3
    layer = model.get_submodule(cam_target_layer(arch))
    assert isinstance(layer, torch.nn.Module)
    assert default_input_size(arch) == (299 if arch == "inception_v3" else 224)


@pytest.mark.parametrize("arch", ["mobilenet_v3_small", "mobilenet_v3_large", "resnet18"])
def test_small_forward_gives_num_classes_logits_and_cam_layer_is_conv_output(arch):
    model = build_model(arch, 2).eval()
    seen: dict = {}

    def hook(module, inputs, output) -> None:
        seen["shape"] = tuple(output.shape)

    model.get_submodule(cam_target_layer(arch)).register_forward_hook(hook)
    with torch.inference_mode():
        out = model(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 2)
    assert len(seen["shape"]) == 4  # a spatial feature map, usable by Grad-CAM


@pytest.mark.parametrize(("arch", "edge"), [("googlenet", 64), ("inception_v3", 75)])
def test_inception_family_trains_without_auxiliary_heads(arch, edge):
    """One cross-entropy on one tensor for every row of the comparison (research/comparison.md)."""
    model = build_model(arch, 4).train()
    assert not any("aux" in name for name, _ in model.named_modules())
    out = model(torch.randn(2, 3, edge, edge))
    assert isinstance(out, torch.Tensor) and out.shape == (2, 4)


def test_binary_head_has_one_output():
    assert _out_features(build_model("resnet18", 1), "resnet18") == 1


def test_unknown_arch_is_a_model_error():
    with pytest.raises(ModelError, match="unknown architecture"):
        build_model("resnet1000", 2)
    with pytest.raises(ModelError):
        cam_target_layer("nope")


def test_imagenet_offline_fails_fast_with_where_to_put_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    calls = []

    def no_network(url, target):
        calls.append(url)
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(modelzoo, "_download", no_network)
    with pytest.raises(ModelError) as info:
        build_model("mobilenet_v3_small", 2, "imagenet")
    msg = str(info.value)
    assert calls and calls[0].startswith("https://download.pytorch.org/")
    assert str(tmp_path / "hub" / "checkpoints" / "mobilenet_v3_small-047dcff4.pth") in msg
    assert "no route to host" in msg


def test_imagenet_weights_are_taken_from_the_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(modelzoo, "_download", lambda *a: pytest.fail("must not download"))
    ref = build_model("resnet18", 1000)
    ckpt = tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    ckpt.parent.mkdir(parents=True)
    torch.save(ref.state_dict(), ckpt)
    model = build_model("resnet18", 2, "imagenet")
    assert torch.equal(model.conv1.weight, ref.conv1.weight)
    assert model.fc.out_features == 2  # head of another shape left freshly initialised


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_pretrained_path_loads_body_and_ignores_other_head(tmp_path, suffix):
    src = build_model("mobilenet_v3_small", 5)
    path = tmp_path / f"w{suffix}"
    if suffix == ".pth":
        torch.save({"state_dict": src.state_dict()}, path)  # wrapped checkpoint dict
    else:
        from safetensors.torch import save_file

        save_file({k: v.contiguous().clone() for k, v in src.state_dict().items()}, str(path))
    model = build_model("mobilenet_v3_small", 2, str(path))
    assert torch.equal(model.features[0][0].weight, src.features[0][0].weight)
    assert model.classifier[3].out_features == 2
    same = build_model("mobilenet_v3_small", 5, str(path))
    assert torch.equal(same.classifier[3].weight, src.classifier[3].weight)


def test_pretrained_path_of_another_arch_or_missing_file(tmp_path):
    path = tmp_path / "r18.pth"
    torch.save(build_model("resnet18", 2).state_dict(), path)
    with pytest.raises(ModelError, match="does not fit mobilenet_v3_small"):
        build_model("mobilenet_v3_small", 2, str(path))
    with pytest.raises(InputNotFoundError):
        build_model("resnet18", 2, str(tmp_path / "missing.pth"))


def test_pickled_code_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"model": Path("x")}, path)  # not loadable with weights_only=True
    with pytest.raises(ModelError, match="cannot read weights"):
        build_model("resnet18", 2, str(path))


def test_efficientnet_lite0_imagenet_weights_come_from_the_wheel_offline(monkeypatch):
    monkeypatch.setattr(modelzoo, "_download", lambda *a: pytest.fail("must not download"))
    ref = modelzoo.load_state_dict_file(modelzoo._efficientnet_weights_file())
    model = build_model("efficientnet_lite0", 4, "imagenet")
    assert torch.equal(model._conv_stem.weight, ref["_conv_stem.weight"])
    key = "_blocks.15._project_conv.weight"
    assert torch.equal(model.get_parameter(key), ref[key])
    assert model._fc.out_features == 4  # the 1000-class head is not loaded
    fresh = build_model("efficientnet_lite0", 4)
    assert not torch.equal(fresh._conv_stem.weight, ref["_conv_stem.weight"])


def test_efficientnet_without_its_packages_says_what_to_install(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name.startswith("efficientnet_lite") else real(name, *a),
    )
    ok, why = modelzoo.efficientnet_available()
    assert not ok and "pip install efficientnet-lite-pytorch" in why
    with pytest.raises(ModelError, match="pip install"):
        build_model("efficientnet_lite0", 2)


def test_freeze_leading_keeps_frozen_weights_and_batchnorm_statistics(tmp_path):
    from heritage.training.fit import FitConfig, fit

    torch.manual_seed(0)
    model = build_model("mobilenet_v3_small", 2)
    frozen = modelzoo.freeze_leading(model, "mobilenet_v3_small", 4)
    assert frozen == [f"features.{i}" for i in range(4)]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(16, 3, 64, 64)
    y = torch.randint(0, 2, (16,))
    loader = torch.utils.data.DataLoader(list(zip(x, y, strict=True)), batch_size=8)
    fit(model, loader, None, FitConfig(epochs=1, lr=1e-2, scheduler="none"), tmp_path, "s")
    after = model.state_dict()
    for k, v in before.items():
        if k.startswith(tuple(f"{f}." for f in frozen)):
            assert torch.equal(after[k], v), f"{k} changed although frozen"
    # trainable layers did move, their batch norms too
    assert not torch.equal(after["classifier.3.weight"], before["classifier.3.weight"])
    assert not torch.equal(after["features.6.block.0.1.running_mean"],
                           before["features.6.block.0.1.running_mean"])  # fmt: skip
    with pytest.raises(ModelError, match=r"--freeze must lie in 0\.\.13"):
        modelzoo.freeze_leading(model, "mobilenet_v3_small", 14)
    with pytest.raises(ModelError, match="not supported"):
        modelzoo.freeze_leading(build_model("alexnet", 2), "alexnet", 1)
