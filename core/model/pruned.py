"""Pruned networks: rebuilt from the shapes of their stored tensors.

A pruned network has channel counts no torchvision constructor makes. It is stored as
an ordinary safetensors state dict, and :func:`rebuild_pruned` makes the module tree
again from the tensor shapes alone: it builds the stock torchvision network and
replaces every ``Conv2d``/``BatchNorm2d``/``Linear`` whose recorded shape differs by a
new layer of that shape (depthwise convolutions keep ``groups == channels``). Nothing
is unpickled, and the pruning plan (importance scores) is not needed at load time.
Loading a model (:func:`heritage.model.card.load_model`) needs this; pruning itself
(:mod:`heritage.training.prune`) makes such networks.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from heritage.kernel.errors import ModelError

log = logging.getLogger(__name__)


def _shape(v: Any) -> tuple[int, ...]:
    return tuple(int(s) for s in (v.shape if hasattr(v, "shape") else v))


def rebuild_pruned(arch: str, state_dict_shapes: Mapping[str, Any], num_classes: int) -> nn.Module:
    """The ``arch`` network with every layer sized as in ``state_dict_shapes``.

    Args:
        arch: a :data:`heritage.model.zoo.ARCHS` name (the un-pruned architecture).
        state_dict_shapes: state-dict key -> shape (a tuple/list, or a tensor whose
            ``.shape`` is used), e.g. ``{k: v.shape for k, v in load_file(p).items()}``.
        num_classes: outputs of the classifier head; must match the recorded head.

    Returns a float32 module with random weights whose ``state_dict`` has exactly the
    recorded keys and shapes (load the weights with ``load_state_dict(strict=True)``).
    Raises ModelError when a key is missing or a layer other than Conv2d, BatchNorm2d
    or Linear changed shape (this function then cannot rebuild it).
    """
    from heritage.model.zoo import build_model

    shapes = {k: _shape(v) for k, v in state_dict_shapes.items()}
    model = build_model(arch, num_classes, pretrained=None)
    replaced = 0
    for name, mod in list(model.named_modules()):
        if not isinstance(mod, (nn.Conv2d, nn.BatchNorm2d, nn.Linear)):
            continue
        key = f"{name}.weight" if mod.weight is not None else f"{name}.running_mean"
        if key not in shapes:
            raise ModelError(
                f"the weights have no {key}: they were not made from a {arch}; "
                "the card and the weights do not belong together"
            )
        new_shape = shapes[key]
        ref = mod.weight if mod.weight is not None else mod.running_mean
        if new_shape == tuple(ref.shape):
            continue
        _set_submodule(model, name, _resized(mod, new_shape, name))
        replaced += 1
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    bad = sorted(k for k in shapes if k in own and own[k] != shapes[k])
    missing = sorted(set(own) ^ set(shapes))
    if bad or missing:
        first = (bad or missing)[0]
        raise ModelError(
            f"cannot rebuild a pruned {arch} from these weights: {len(bad)} tensors of "
            f"another shape and {len(missing)} missing or extra keys (first: {first})"
        )
    log.debug("rebuilt %s with %d resized layers", arch, replaced)
    return model


def _set_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def _resized(mod: nn.Module, shape: tuple[int, ...], name: str) -> nn.Module:
    """A fresh layer like ``mod`` with the weight shape ``shape``."""
    if isinstance(mod, nn.BatchNorm2d):
        return nn.BatchNorm2d(
            shape[0],
            eps=mod.eps,
            momentum=mod.momentum,
            affine=mod.affine,
            track_running_stats=mod.track_running_stats,
        )
    if isinstance(mod, nn.Linear):
        return nn.Linear(shape[1], shape[0], bias=mod.bias is not None)
    assert isinstance(mod, nn.Conv2d)
    out_c, in_per_group = shape[0], shape[1]
    if mod.groups == 1:
        groups = 1
    elif mod.groups == mod.in_channels == mod.out_channels and in_per_group == 1:
        groups = out_c  # depthwise stays depthwise
    else:
        raise ModelError(
            f"{name}: grouped convolution with {mod.groups} groups changed shape; only "
            "ordinary and depthwise convolutions can be rebuilt"
        )
    # a copy keeps the layer's own class and forward (e.g. EfficientNet's static "same"
    # padding, a Conv2d subclass); only the channel counts and the tensors change
    conv = copy.deepcopy(mod)
    conv.in_channels, conv.out_channels, conv.groups = in_per_group * groups, out_c, groups
    conv.weight = nn.Parameter(torch.empty(shape, dtype=mod.weight.dtype))
    if mod.bias is not None:
        conv.bias = nn.Parameter(torch.empty(out_c, dtype=mod.bias.dtype))
    conv.reset_parameters()
    return conv


def layer_widths(model: nn.Module) -> dict[str, list[int]]:
    """``{module path: [out, in]}`` of every Conv2d/Linear (the card's channel plan)."""
    out: dict[str, list[int]] = {}
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Conv2d):
            out[name] = [mod.out_channels, mod.in_channels]
        elif isinstance(mod, nn.Linear):
            out[name] = [mod.out_features, mod.in_features]
    return out
