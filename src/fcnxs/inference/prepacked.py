"""Convolutions with their weights laid out for oneDNN once, not on every call.

Eager PyTorch hands oneDNN plain weights, which it re-lays out into its blocked format on
every call: 45 % of fc6's time at 375×500 (docs/design.md §6). oneDNN is told the first input
shape it will see when it picks the layout, but the layout serves every shape at the same
speed with the same outputs (measured on fc6, conv1_2 and conv3_3 over several sizes, and
with or without padding), so weights are packed once per (layer, dtype). ReLU is fused.
On anything but a CPU with oneDNN, and in a format the CPU only emulates, the plain
convolution runs.
"""

from __future__ import annotations

import threading

import torch
import torch.nn.functional as F
from torch import nn

from fcnxs.core import precision

_pointwise = getattr(torch.ops.mkldnn, "_convolution_pointwise", None)


def available(x: torch.Tensor) -> bool:
    """Whether oneDNN can take ``x`` (a CPU tensor in a format this CPU computes natively)."""
    return (
        x.device.type == "cpu"
        and torch.backends.mkldnn.is_available()
        and _pointwise is not None
        and precision.native_on_cpu(x.dtype)
    )


class PackedConvs:
    """``relu(conv(x))`` for a model's convolutions, with weights packed once."""

    def __init__(self) -> None:
        self._packed: dict[tuple, tuple[torch.Tensor, torch.Tensor | None]] = {}
        self._lock = threading.Lock()

    @property
    def nbytes(self) -> int:
        return sum(w.element_size() * w.numel() for w, _ in self._packed.values())

    def relu_conv(self, module: nn.Conv2d, x: torch.Tensor, padding: int) -> torch.Tensor:
        if not available(x):
            return F.relu(
                F.conv2d(x, module.weight.to(x.dtype), _cast(module.bias, x), padding=padding)
            )
        key = (id(module), x.dtype)
        with self._lock:
            packed = self._packed.get(key)
        if packed is None:
            weight = module.weight.detach().to(x.dtype).contiguous()
            layout = torch._C._nn.mkldnn_reorder_conv2d_weight(
                weight.to_mkldnn(), [padding] * 2, [1, 1], [1, 1], 1, list(x.shape)
            )
            packed = (layout, _cast(module.bias, x))
            with self._lock:
                self._packed[key] = packed
        weight, bias = packed
        x = x.contiguous(memory_format=torch.channels_last)
        return _pointwise(x, weight, bias, [padding] * 2, [1, 1], [1, 1], 1, "relu", [], "")


def _cast(bias: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor | None:
    return None if bias is None else bias.detach().to(x.dtype)
