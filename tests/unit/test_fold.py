"""Batch norm folded into the convolutions (heritage.model.fold): same outputs, no batch norm."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from heritage.model.fold import absorb_static_padding, conv_bn_pairs, fold_batch_norm


def _randomise_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.3)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model.eval()


@pytest.mark.parametrize("arch", ["mobilenet_v3_small", "resnet18"])
def test_folded_torchvision_network_gives_the_same_logits(arch: str) -> None:
    import torchvision

    torch.manual_seed(0)
    model = _randomise_bn(getattr(torchvision.models, arch)(num_classes=4))
    x = torch.randn(2, 3, 64, 64)
    folded = fold_batch_norm(model, x)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # original untouched
    with torch.inference_mode():
        torch.testing.assert_close(folded(x), model(x), atol=1e-4, rtol=1e-4)


def test_efficientnet_lite_padding_moves_into_the_convolutions() -> None:
    from efficientnet_lite_pytorch import EfficientNet

    torch.manual_seed(0)
    model = _randomise_bn(EfficientNet.from_name("efficientnet-lite0", num_classes=4))
    x = torch.randn(2, 3, 224, 224)
    folded = fold_batch_norm(model, x)
    assert not any(isinstance(m, nn.ZeroPad2d) for m in folded.modules())
    assert any(isinstance(m, nn.ZeroPad2d) for m in model.modules())  # original untouched
    assert absorb_static_padding(folded) == 0  # nothing left to move
    assert all(m.inplace for m in folded.modules() if isinstance(m, nn.ReLU6))
    assert not any(m.inplace for m in model.modules() if isinstance(m, nn.ReLU6))
    with torch.inference_mode():
        torch.testing.assert_close(folded(x), model(x), atol=1e-4, rtol=1e-4)


class _AddsItsOwnActivation(nn.Module):
    """conv → bn, then relu(y) + y: an in-place ReLU would overwrite the y it adds."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn, self.act = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn(self.conv(x))
        return self.act(y) + y


def test_an_activation_whose_input_is_read_again_stays_out_of_place() -> None:
    torch.manual_seed(0)
    model = _randomise_bn(_AddsItsOwnActivation())
    x = torch.randn(2, 3, 8, 8)
    folded = fold_batch_norm(model, x)
    assert isinstance(folded.bn, nn.Identity) and folded.act.inplace is False
    with torch.inference_mode():
        torch.testing.assert_close(folded(x), model(x), atol=1e-4, rtol=1e-4)


def test_batch_norm_not_fed_by_a_convolution_is_kept() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.BatchNorm2d(4), nn.Flatten())
    model = _randomise_bn(model)
    x = torch.randn(1, 3, 8, 8)
    assert conv_bn_pairs(model, x) == []
    folded = fold_batch_norm(model, x)
    assert isinstance(folded[2], nn.BatchNorm2d)


def test_a_fold_that_changes_the_output_is_refused(monkeypatch) -> None:
    import heritage.model.fold as fold

    model = _randomise_bn(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)))
    monkeypatch.setattr(fold, "FOLD_TOLERANCE", -1.0)  # nothing is close enough
    with pytest.raises(ValueError, match="differs"):
        fold_batch_norm(model, torch.randn(1, 3, 8, 8))


@pytest.mark.parametrize(
    ("kernel", "stride", "padding", "size"),
    [
        (3, 2, (0, 1, 0, 1), 16),
        (5, 2, (1, 2, 1, 2), 16),
        (3, 2, (1, 0, 0, 1), 15),
        (3, 1, (1, 1, 1, 1), 9),
    ],
)
def test_asymmetric_padding_becomes_a_grown_kernel(kernel, stride, padding, size) -> None:
    """pad + conv == conv with a zero-grown kernel and symmetric padding, exactly."""
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 4, kernel, stride=stride, groups=4)
    conv.static_padding = nn.ZeroPad2d(padding)
    x = torch.randn(2, 4, size, size)
    with torch.inference_mode():
        expected = conv(conv.static_padding(x))
    holder = nn.Sequential(conv)
    assert absorb_static_padding(holder) == 1
    assert isinstance(conv.static_padding, nn.Identity)
    with torch.inference_mode():
        got = conv(x)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-6)
