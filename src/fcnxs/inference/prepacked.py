"""Convolutions with their weights laid out for oneDNN once, not on every call.

Eager PyTorch hands oneDNN plain weights, which it re-lays out into its blocked format on
every call: 45 % of fc6's time at 375×500 (docs/design.md §6). oneDNN is told the first input
shape it will see when it picks the layout, but the layout serves every shape at the same
speed with the same outputs (measured on fc6, conv1_2 and conv3_3 over several sizes, and
with or without padding), so weights are packed once per (layer, dtype). ReLU is fused.
On anything but a CPU with oneDNN, and in a format the CPU only emulates, the plain
convolution runs. Wide 3×3 layers and fc6 run by Winograd's algorithm instead, their filters
transformed once (`fcnxs.inference.winograd`).
"""

from __future__ import annotations

import threading

import torch
import torch.nn.functional as F
from torch import nn

from fcnxs.core import precision
from fcnxs.inference.winograd import Winograd, transform_for

_pointwise = getattr(torch.ops.mkldnn, "_convolution_pointwise", None)
_reorder = torch._C._nn.mkldnn_reorder_conv2d_weight
SLICE_BYTES = 64 << 20
"""Packing copies a weight twice over (to oneDNN, then into its layout): fc6's 411 MB in one
piece would add 0.8 GB to the peak for a moment. Slices of output channels run at the same
speed (measured: fc6 in 1, 2, 4 or 8 slices within 3 %)."""


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
        self._packed: dict[tuple, OneDNN | Winograd] = {}
        self._lock = threading.Lock()

    @property
    def nbytes(self) -> int:
        return sum(packed.nbytes for packed in self._packed.values())

    def relu_conv(self, module: nn.Conv2d, x: torch.Tensor, padding: int) -> torch.Tensor:
        if not available(x):
            return F.relu(
                F.conv2d(x, module.weight.to(x.dtype), _cast(module.bias, x), padding=padding)
            )
        key = (id(module), x.dtype)
        with self._lock:
            packed = self._packed.get(key)
        if packed is None:
            transform = transform_for(module, x)
            packed = Winograd(module, transform) if transform else OneDNN(module, x, padding)
            with self._lock:
                self._packed[key] = packed
        return packed.relu_conv(x, padding)


class OneDNN:
    """A layer's weights in the blocked layout oneDNN picks for the first input it meets,
    in slices of output channels of at most `SLICE_BYTES` each."""

    def __init__(self, module: nn.Conv2d, x: torch.Tensor, padding: int) -> None:
        weight = module.weight.detach().to(x.dtype)
        bias = _cast(module.bias, x)
        rows = max(1, SLICE_BYTES // (weight[0].numel() * weight.element_size()))
        weights = weight.split(rows)
        biases = [None] * len(weights) if bias is None else bias.split(rows)
        shape = list(x.shape)
        self.slices = [
            (_reorder(w.contiguous().to_mkldnn(), [padding] * 2, [1, 1], [1, 1], 1, shape), b)
            for w, b in zip(weights, biases, strict=True)
        ]

    @property
    def nbytes(self) -> int:
        return sum(w.element_size() * w.numel() for w, _ in self.slices)

    def relu_conv(self, x: torch.Tensor, padding: int) -> torch.Tensor:
        x = x.contiguous(memory_format=torch.channels_last)
        pad, one = [padding] * 2, [1, 1]
        outs = [_pointwise(x, w, b, pad, one, one, 1, "relu", [], "") for w, b in self.slices]
        return outs[0] if len(outs) == 1 else torch.cat(outs, 1)


def _cast(bias: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor | None:
    return None if bias is None else bias.detach().to(x.dtype)
