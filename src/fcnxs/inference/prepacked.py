"""Convolutions with their weights laid out for oneDNN once, not on every call.

Eager PyTorch hands oneDNN plain weights, which it re-lays out into its blocked format on
every call: 45 % of fc6's time at 375×500 (docs/design.md §6). oneDNN is told the first input
shape it will see when it picks the layout, but the layout serves every shape at the same
speed with the same outputs (measured on fc6, conv1_2 and conv3_3 over several sizes, and
with or without padding), so weights are packed once per (layer, dtype). ReLU is fused.
On anything but a CPU with oneDNN, and in a format the CPU only emulates, the plain
convolution runs. Wide 3×3 layers and fc6 run by Winograd's algorithm instead, their filters
transformed once (`fcnxs.inference.winograd`), and 1×1 layers (fc7) by oneDNN's inner product.
"""

from __future__ import annotations

import threading

import torch
import torch.nn.functional as F
from torch import nn

from fcnxs.core import precision, torch_internals
from fcnxs.inference.winograd import Winograd, transform_for

SLICE_BYTES = 64 << 20
"""Packing copies a weight twice over (to oneDNN, then into its layout): fc6's 411 MB in one
piece would add 0.8 GB to the peak for a moment. Slices of output channels run at the same
speed (measured: fc6 in 1, 2, 4 or 8 slices within 3 %)."""


class PackedConvs:
    """``relu(conv(x))`` for a model's convolutions, with weights packed once."""

    def __init__(self) -> None:
        self._packed: dict[tuple, OneDNN | InnerProduct | Winograd | None] = {}
        self._lock = threading.Lock()

    @property
    def nbytes(self) -> int:
        return sum(packed.nbytes for packed in self._packed.values() if packed is not None)

    def relu_conv(self, module: nn.Conv2d, x: torch.Tensor, padding: int) -> torch.Tensor:
        packed = self._get(module, x, padding) if _packs(x) else None
        if packed is None:
            return plain_relu_conv(module, x, padding)
        return packed.relu_conv(x, padding)

    def _get(self, module: nn.Conv2d, x: torch.Tensor, padding: int):
        """The layer packed for ``x``'s dtype, packed by the first caller while later ones
        wait: two threads packing fc6 at once would hold two copies (0.5 GB each)."""
        key = (id(module), x.dtype)
        with self._lock:
            if key not in self._packed:
                self._packed[key] = _pack(module, x, padding)
            return self._packed[key]


def plain_relu_conv(module: nn.Conv2d, x: torch.Tensor, padding: int) -> torch.Tensor:
    """relu(conv(x)) by PyTorch's own convolution, its weights laid out on the call."""
    return F.relu(F.conv2d(x, module.weight.to(x.dtype), _cast(module.bias, x), padding=padding))


def _packs(x: torch.Tensor) -> bool:
    """Whether packed weights can serve ``x``: a CPU tensor in a format this CPU computes
    natively (emulated formats take the plain convolution)."""
    return (
        x.device.type == "cpu"
        and torch.backends.mkldnn.is_available()
        and precision.native_on_cpu(x.dtype)
    )


def _pack(
    module: nn.Conv2d, x: torch.Tensor, padding: int
) -> Winograd | InnerProduct | OneDNN | None:
    """``module`` packed for the fastest of the algorithms that can run it on ``x``, or
    None where only the plain convolution can (`torch_internals` found its calls unusable)."""
    transform = transform_for(module, x)
    if transform is not None:
        return Winograd(module, transform)
    if InnerProduct.suits(module, x):
        return InnerProduct(module, x)
    if torch_internals.packed_convolutions(x.dtype):
        return OneDNN(module, x, padding)
    return None


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
            (torch_internals.pack_convolution(w, padding, shape), b)
            for w, b in zip(weights, biases, strict=True)
        ]

    @property
    def nbytes(self) -> int:
        return sum(w.element_size() * w.numel() for w, _ in self.slices)

    def relu_conv(self, x: torch.Tensor, padding: int) -> torch.Tensor:
        x = x.contiguous(memory_format=torch.channels_last)
        convolution = torch_internals.relu_convolution
        outs = [convolution(x, w, b, padding) for w, b in self.slices]
        return outs[0] if len(outs) == 1 else torch.cat(outs, 1)


class InnerProduct:
    """A 1×1 convolution (fc7) as oneDNN's inner product on its weight packed once: a
    channels-last map is already the matrix of its positions' channels. With AVX2 kernels
    oneDNN's 1×1 convolution of 4096 channels is 3× slower than its inner product (fc7 at
    375×500: 96 ms against 29; at 600×800: 310 against 114), with AVX-512 as fast (26 ms
    against 26; docs/design.md §6)."""

    @staticmethod
    def suits(module: nn.Conv2d, x: torch.Tensor) -> bool:
        return (
            module.kernel_size == (1, 1)
            and module.stride == (1, 1)
            and module.groups == 1
            and torch_internals.packed_inner_products(x.dtype)
        )

    def __init__(self, module: nn.Conv2d, x: torch.Tensor) -> None:
        weight = module.weight.detach().to(x.dtype).flatten(1)
        self.weight = torch_internals.pack_inner_product(weight)
        self.bias = _cast(module.bias, x)

    @property
    def nbytes(self) -> int:
        return self.weight.element_size() * self.weight.numel()

    def relu_conv(self, x: torch.Tensor, padding: int) -> torch.Tensor:
        """relu(conv(x)), channels-last in and out: zero padding is the same 1×1 convolution
        of a padded input."""
        if padding:
            x = F.pad(x, [padding] * 4)
        x = x.contiguous(memory_format=torch.channels_last)
        n, c, h, w = x.shape
        rows = x.permute(0, 2, 3, 1).reshape(-1, c)  # a view
        y = torch_internals.inner_product(rows, self.weight, self.bias, relu=True)
        return y.view(n, h, w, -1).permute(0, 3, 1, 2)


def _cast(bias: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor | None:
    return None if bias is None else bias.detach().to(x.dtype)
