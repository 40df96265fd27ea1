"""Starting weights: the staged recipe of docs/design.md §2.

A stage copies every layer its source has (a fully convolutional VGG16 for FCN-32s, the
coarser FCN for FCN-16s and FCN-8s); new score layers start at zero, so the new stage
initially reproduces the old one's predictions; every upsampler starts as bilinear
interpolation of each class onto itself.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from fcnxs.core.errors import FcnxsError
from fcnxs.model.architecture import TRUNK, Conv, score_names, upsampler_names
from fcnxs.model.config import ModelConfig
from fcnxs.model.fcn import FCN, empty_model


def bilinear_kernel(size: int) -> torch.Tensor:
    """The size×size kernel of bilinear upsampling by a factor ``ceil(size / 2)``."""
    factor = math.ceil(size / 2)
    centre = factor - 1 if size % 2 == 1 else factor - 0.5
    ramp = 1 - (torch.arange(size, dtype=torch.float64) - centre).abs() / factor
    return (ramp[:, None] * ramp[None, :]).float()


def bilinear_upsampler_weight(num_classes: int, size: int) -> torch.Tensor:
    """A (C, C, size, size) transposed-conv weight: bilinear, class c → class c only."""
    weight = torch.zeros(num_classes, num_classes, size, size)
    index = torch.arange(num_classes)
    weight[index, index] = bilinear_kernel(size)
    return weight


def _head_init(model: FCN) -> dict[str, str]:
    """How each head parameter starts when no source provides it: 'zeros' or 'bilinear'."""
    how = {f"{name}.weight": "bilinear" for name in upsampler_names(model.config.arch)}
    for name in score_names(model.config.arch):
        how[f"{name}.weight"] = how[f"{name}.bias"] = "zeros"
    return how


@torch.no_grad()
def _init_head_param(param: torch.Tensor, how: str) -> None:
    if how == "zeros":
        param.zero_()
    else:
        param.copy_(bilinear_upsampler_weight(param.shape[0], param.shape[-1]))


@torch.no_grad()
def initialise(model: FCN, seed: int | None = None) -> FCN:
    """Fresh weights: He-normal trunk (for training without a VGG16), zero scores, bilinear
    upsamplers. A seed makes the trunk reproducible."""
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    for layer in TRUNK:
        if isinstance(layer, Conv):
            conv: nn.Conv2d = getattr(model, layer.name)
            fan_in = conv.weight[0].numel()
            conv.weight.normal_(0.0, math.sqrt(2.0 / fan_in), generator=generator)
            conv.bias.zero_()
    params = dict(model.named_parameters())
    for name, how in _head_init(model).items():
        _init_head_param(params[name], how)
    return model


def build_model(
    arch: str | ModelConfig = "fcn8s",
    num_classes: int = 21,
    *,
    seed: int | None = None,
    **config_fields,
) -> FCN:
    """A new model with fresh weights (see `initialise`).

    ``arch`` is "fcn32s", "fcn16s", "fcn8s" or a whole `ModelConfig`; further
    `ModelConfig` fields (class_names, colors, preprocessing, semantics) may be given.
    """
    if isinstance(arch, ModelConfig):
        config = arch
    else:
        try:
            config = ModelConfig(arch=arch, num_classes=num_classes, **config_fields)
        except ValueError as exc:
            raise FcnxsError(str(exc)) from None
    return initialise(empty_model(config), seed)


@dataclass
class TransferReport:
    """What `transfer` did with each parameter, for the user to read."""

    copied: list[str] = field(default_factory=list)
    zeros: list[str] = field(default_factory=list)
    bilinear: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"copied {len(self.copied)} tensors: {', '.join(self.copied)}"]
        if self.zeros:
            lines.append(f"zero-initialised: {', '.join(self.zeros)}")
        if self.bilinear:
            lines.append(f"bilinear-initialised: {', '.join(self.bilinear)}")
        if self.ignored:
            lines.append(f"not used from the source: {', '.join(self.ignored)}")
        lines.extend(self.notes)
        return "\n".join(lines)


@torch.no_grad()
def transfer(
    model: FCN, source: Mapping[str, torch.Tensor] | FCN, origin: str = "source"
) -> TransferReport:
    """Start ``model`` from ``source`` (a state dict under fcnxs names, or a model): the
    staged recipe.

    Trunk layers must be present with the right shapes. A head layer that the source lacks,
    or has with another shape (a coarser stage's bigger ``bigscore``, another number of
    classes), starts as zeros or bilinear instead, and the report says so.
    """
    if isinstance(source, FCN):
        source = source.state_dict()
    report = TransferReport()
    head_init = _head_init(model)
    for name, param in model.named_parameters():
        tensor = source.get(name)
        if tensor is not None and tuple(tensor.shape) == tuple(param.shape):
            param.copy_(tensor.to(param.dtype))
            report.copied.append(name)
            continue
        if name not in head_init:
            if tensor is None:
                raise FcnxsError(f"{origin}: lacks {name}, which the trunk needs")
            raise FcnxsError(
                f"{origin}: {name} has shape {list(tensor.shape)}, expected {list(param.shape)}"
            )
        how = head_init[name]
        _init_head_param(param, how)
        (report.zeros if how == "zeros" else report.bilinear).append(name)
        if tensor is not None:
            report.notes.append(
                f"{name}: source shape {list(tensor.shape)} differs from {list(param.shape)}, "
                f"started as {how}"
            )
    own = {name for name, _ in model.named_parameters()}
    report.ignored = sorted(k for k in source if k not in own)
    return report
