"""A faster copy of a network for inference: batch norm folded into the convolutions.

In evaluation mode a ``BatchNorm2d`` that directly follows a ``Conv2d`` is an affine map per
channel, so it can be merged into the convolution's weights and bias
(``torch.nn.utils.fusion.fuse_conv_bn_weights``). On this project's two-core CPU batch norm
is about a quarter of the stage-1 network's time (docs/benchmarks-scene.md).

Which batch norms follow which convolution is read from one forward pass (a batch norm is
folded only when its input *is* the tensor its convolution returned), not from module
names, so the same code serves EfficientNet-Lite (whose convolutions are ``Conv2d``
subclasses with their own padding) and torchvision's MobileNetV3. The folded copy is
checked against the original on the example batch; :func:`fold_batch_norm` refuses
(raises) when they differ, and the caller keeps the original network.

The copy serves inference only, so its activations also run in place
(:func:`activations_in_place`): EfficientNet-Lite's ``ReLU6`` modules allocate a new
tensor for every activation, and on the tile pass (32 tiles of 224 px, bfloat16) that
allocation cost more than a third of the network's time.
"""

from __future__ import annotations

import copy
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from torch import nn

log = logging.getLogger(__name__)

#: largest difference of the logits allowed between the folded and the original network
FOLD_TOLERANCE = 1e-3


def conv_bn_pairs(model: nn.Module, example: torch.Tensor) -> list[tuple[str, str]]:
    """``(conv name, batch-norm name)`` for every ``BatchNorm2d`` whose input is the output
    of a ``Conv2d`` (seen in one forward pass of ``example``; ``model`` in eval mode)."""
    import torch
    from torch import nn

    names = {m: n for n, m in model.named_modules()}
    last_conv: dict[int, str] = {}
    pairs: list[tuple[str, str]] = []

    def on_conv(module: nn.Module, args: tuple, out: torch.Tensor) -> None:
        last_conv[id(out)] = names[module]
        keep.append(out)  # keeps the id unique while the pass runs

    def on_bn(module: nn.Module, args: tuple) -> None:
        conv = last_conv.get(id(args[0]))
        if conv is not None:
            pairs.append((conv, names[module]))

    keep: list[torch.Tensor] = []
    hooks = []
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            hooks.append(module.register_forward_hook(on_conv))
        elif isinstance(module, nn.BatchNorm2d):
            hooks.append(module.register_forward_pre_hook(on_bn))
    try:
        with torch.inference_mode():
            model(example)
    finally:
        for h in hooks:
            h.remove()
    used = [bn for _, bn in pairs]
    if len(used) != len(set(used)):  # a batch norm fed by two convolutions: do not fold
        raise ValueError("a batch norm is reached from more than one convolution")
    return pairs


def _set_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def absorb_static_padding(model: nn.Module) -> int:
    """Move the "same" padding done by a separate ``ZeroPad2d`` (EfficientNet-Lite's
    ``Conv2dStaticSamePadding.static_padding``) into the convolution's own ``padding``,
    which saves a copy of the activations per convolution; returns how many were moved.

    A symmetric padding moves as it is. An asymmetric one (TensorFlow's "same" padding of
    a stride-2 convolution on an even size: one pixel more at the right and bottom) is
    made symmetric by growing the kernel with zero weights on the short side: the
    convolution then reads the same pixels with the same weights (zeros add exact
    zeros) and gives the same output size. On the 2-core CPU this saves the ``pad``
    copies of the large stride-2 activations, about a tenth of the tile pass."""
    import torch
    from torch import nn

    moved = 0
    for module in model.modules():
        pad = getattr(module, "static_padding", None)
        if not (isinstance(module, nn.Conv2d) and isinstance(pad, nn.ZeroPad2d)):
            continue
        if tuple(module.padding) != (0, 0) or module.padding_mode != "zeros":
            continue
        left, right, top, bottom = pad.padding
        if min(left, right, top, bottom) < 0:
            continue
        ph, pw = max(top, bottom), max(left, right)
        if (left, right, top, bottom) != (pw, pw, ph, ph):
            if tuple(module.dilation) != (1, 1):
                continue
            w = module.weight.data
            kh, kw = w.shape[-2:]
            grown = torch.zeros(
                *w.shape[:-2], kh + 2 * ph - top - bottom, kw + 2 * pw - left - right,
                dtype=w.dtype, device=w.device,
            )  # fmt: skip
            grown[..., ph - top : ph - top + kh, pw - left : pw - left + kw] = w
            module.weight = nn.Parameter(grown, requires_grad=module.weight.requires_grad)
            module.kernel_size = tuple(grown.shape[-2:])
        module.padding = (ph, pw)
        module.static_padding = nn.Identity()
        moved += 1
    return moved


def activations_in_place(model: nn.Module) -> list[nn.Module]:
    """Let every activation module of ``model`` (an inference-only copy) overwrite its
    input instead of allocating its output; returns the modules switched.

    Only right for a network whose activations' inputs are not read again (true of the
    conv → activation chains of EfficientNet-Lite and MobileNetV3, not of a block that adds
    a tensor to its own activation): :func:`fold_batch_norm` checks the copy's output
    against the original and switches them back when it differs.
    """
    from torch import nn

    kinds = (nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.SiLU)
    switched = [m for m in model.modules() if isinstance(m, kinds) and not m.inplace]
    for module in switched:
        module.inplace = True
    return switched


def fold_batch_norm(model: nn.Module, example: torch.Tensor) -> nn.Module:
    """A copy of ``model`` (eval mode) with every conv → batch-norm pair folded into the
    convolution; the batch norms become ``Identity`` and the activations run in place
    (:func:`activations_in_place`). Raises ``ValueError`` when the copy's
    output differs from the original's on ``example`` by more than :data:`FOLD_TOLERANCE`
    (the caller then keeps ``model``)."""
    from torch import nn
    from torch.nn.utils.fusion import fuse_conv_bn_weights

    source = model.eval()
    folded = copy.deepcopy(source).eval()
    pairs = conv_bn_pairs(folded, example)
    for conv_name, bn_name in pairs:
        conv = folded.get_submodule(conv_name)
        bn = folded.get_submodule(bn_name)
        if not isinstance(bn, nn.BatchNorm2d) or bn.running_mean is None:
            continue
        weight, bias = fuse_conv_bn_weights(
            conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias
        )
        conv.weight, conv.bias = weight, bias
        _set_module(folded, bn_name, nn.Identity())
    absorb_static_padding(folded)
    in_place = activations_in_place(folded)
    diff = _largest_difference(folded, source, example)
    if not diff <= FOLD_TOLERANCE and in_place:
        for module in in_place:  # an activation's input is read again: allocate outputs
            module.inplace = False
        in_place = []
        diff = _largest_difference(folded, source, example)
    if not diff <= FOLD_TOLERANCE:
        raise ValueError(f"folded network differs from the original by {diff:.2g}")
    log.debug(
        "folded %d batch norms, %d activations in place (largest logit difference %.2g)",
        len(pairs), len(in_place), diff,
    )  # fmt: skip
    return folded


def _largest_difference(a: nn.Module, b: nn.Module, example: torch.Tensor) -> float:
    """Largest absolute difference of two networks' outputs on ``example``."""
    import torch

    with torch.inference_mode():
        return float((a(example).float() - b(example).float()).abs().max())
