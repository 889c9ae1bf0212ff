"""Grad-CAM explainer: shapes, reuse of the CAM object, empty-map fallback, overlays."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from heritage.kernel.errors import ModelError
from heritage.model import explain
from heritage.model.explain import (
    CAM_METHODS,
    CamExplainer,
    PositiveClassTarget,
    heatmap_png,
    overlay,
    positive_targets,
    save_png,
)

LAYER = "features.12"


@pytest.fixture(scope="module")
def tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torchvision.models.mobilenet_v3_small(num_classes=3).eval()


@pytest.fixture(scope="module")
def batch() -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.randn(3, 3, 72, 64, generator=g)


def _hooks(model: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) for m in model.modules())


@pytest.mark.parametrize("method", sorted(CAM_METHODS))
def test_every_method_gives_maps_of_input_size_in_unit_range(tiny_model, batch, method):
    with CamExplainer(tiny_model, LAYER, method=method) as cam:
        res = cam.explain(batch, [0, 1, 2])
    assert res.maps.shape == (3, 72, 64)
    assert res.maps.dtype == np.float32
    assert np.isfinite(res.maps).all()
    assert res.maps.min() >= 0.0 and res.maps.max() <= 1.0
    assert len(res.methods) == 3 and len(res.empty) == 3
    assert set(res.methods) <= {method, "eigencam"}
    for e, mp in zip(res.empty, res.maps, strict=True):
        assert e == (mp.max() == 0.0)
        if not e:
            assert mp.max() > 0.5  # min-max scaled per image


def test_hooks_removed_on_close(tiny_model, batch):
    before = _hooks(tiny_model)
    cam = CamExplainer(tiny_model, LAYER, method="gradcam")
    assert _hooks(tiny_model) > before
    cam.explain(batch[:1])
    cam.close()
    assert _hooks(tiny_model) == before
    with pytest.raises(RuntimeError):
        cam.explain(batch[:1])


def test_cam_object_built_once_and_reused(tiny_model, batch, monkeypatch):
    built = []

    class Counting(CAM_METHODS["gradcam"]):
        def __init__(self, *a, **k):
            built.append(1)
            super().__init__(*a, **k)

    monkeypatch.setitem(CAM_METHODS, "gradcam", Counting)
    with CamExplainer(tiny_model, LAYER, method="gradcam", fallback=None) as cam:
        for _ in range(3):
            cam.explain(batch[:2], [0, 0])
    assert len(built) == 1


def test_batch_made_under_inference_mode_and_frozen_model(batch):
    torch.manual_seed(3)
    model = torchvision.models.mobilenet_v3_small(num_classes=2).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    with torch.inference_mode():
        x = batch.clone()
    with CamExplainer(model, LAYER, method="layercam", fallback=None) as cam:
        res = cam.explain(x, [1, 1, 1])
    assert res.maps.shape == (3, 72, 64)
    assert all(p.grad is None for p in model.parameters())


def test_positive_class_target_sums_positive_logits(tiny_model, batch):
    t = PositiveClassTarget([0, 2])
    out = torch.tensor([[1.0, 5.0, 2.0], [0.5, 0.0, -1.0]])
    assert torch.allclose(t(out), torch.tensor([3.0, -0.5]))
    assert float(t(out[0])) == 3.0
    with CamExplainer(tiny_model, LAYER) as cam:
        res = cam.explain(batch, positive_targets(3, [0, 2]))
    assert res.maps.shape == (3, 72, 64)


class ZeroAfter(torch.nn.Module):
    """A conv 'backbone' whose output is multiplied by 0: every gradient is zero."""

    def __init__(self) -> None:
        super().__init__()
        self.features = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU())
        self.head = torch.nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x) * 0.0
        return self.head(f.mean(dim=(2, 3)))


def test_zero_gradient_map_falls_back_and_records_method():
    torch.manual_seed(0)
    model = ZeroAfter().eval()
    x = torch.rand(2, 3, 16, 16)
    with CamExplainer(model, "features", method="gradcam", fallback="eigencam") as cam:
        res = cam.explain(x, [0, 1])
    assert res.methods == ["eigencam", "eigencam"]
    assert res.empty == [False, False]
    assert res.maps.max() > 0.5


def test_doubly_empty_map_is_zero_and_marked_empty():
    torch.manual_seed(0)
    model = ZeroAfter().eval()
    x = torch.rand(2, 3, 16, 16)
    with CamExplainer(model, "features", method="gradcam", fallback="layercam") as cam:
        res = cam.explain(x, [0, 1])
    assert res.empty == [True, True]
    assert res.methods == ["layercam", "layercam"]
    assert not res.maps.any()


def test_nan_map_is_treated_as_empty(tiny_model, batch, monkeypatch):
    with CamExplainer(tiny_model, LAYER, method="gradcam", fallback="eigencam") as cam:
        real_run = cam._run

        def fake(name, b, targets):
            maps, logits = real_run(name, b, targets)
            if name == "gradcam":
                maps[1] = np.nan
            return maps, logits

        monkeypatch.setattr(cam, "_run", fake)
        res = cam.explain(batch, [0, 0, 0])
    assert res.methods[1] == "eigencam"
    assert res.methods[0] == "gradcam" or res.empty[0] is False
    assert np.isfinite(res.maps).all()


def test_result_carries_the_logits_of_its_own_forward_pass(tiny_model, batch):
    with torch.inference_mode():
        expected = tiny_model(batch).numpy()
    with CamExplainer(tiny_model, LAYER, method="gradcam") as cam:
        res = cam.explain(batch)  # no targets: each image's winning class
        again = cam.explain(batch, expected.argmax(axis=1).tolist())
    assert res.logits is not None and res.logits.shape == expected.shape
    np.testing.assert_allclose(res.logits, expected, atol=1e-5)
    np.testing.assert_allclose(res.maps, again.maps, atol=1e-6)


def test_unknown_layer_and_method_are_clear_errors(tiny_model):
    with pytest.raises(ModelError, match=r"features\.99"):
        CamExplainer(tiny_model, "features.99")
    with pytest.raises(ValueError, match="unknown CAM method"):
        CamExplainer(tiny_model, LAYER, method="scorecam")


def test_overlay_shape_dtype_and_resize():
    rgb = np.full((40, 30, 3), 128, np.uint8)
    cam = np.zeros((10, 10), np.float32)
    cam[0, 0] = 1.0
    out = overlay(rgb, cam, alpha=0.5)
    assert out.shape == (40, 30, 3) and out.dtype == np.uint8
    # alpha 0: the image alone (show_cam_on_image rescales to max 255)
    plain = overlay(rgb, cam, alpha=0.0)
    assert (plain == 255).all()
    with pytest.raises(ValueError):
        overlay(rgb.astype(np.float32), cam)


def test_png_files_written(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 255, (20, 24, 3), dtype=np.uint8)
    p = save_png(tmp_path / "sub" / "o.png", rgb)
    assert np.array_equal(np.asarray(Image.open(p)), rgb)
    cam = np.linspace(0, 1, 20 * 24, dtype=np.float32).reshape(20, 24)
    h = heatmap_png(tmp_path / "h.png", cam)
    img = np.asarray(Image.open(h))
    assert img.shape == (20, 24, 3)
    # jet: low values blue, high values red
    assert img[0, 0, 2] > img[0, 0, 0] and img[-1, -1, 0] > img[-1, -1, 2]


def test_module_lists_no_slow_methods():
    assert {"gradcam", "gradcam++", "eigencam", "layercam"} <= set(explain.CAM_METHODS)
    assert "scorecam" not in explain.CAM_METHODS and "ablationcam" not in explain.CAM_METHODS
