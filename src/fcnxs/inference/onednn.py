"""The oneDNN primitives that fcnxs calls through PyTorch, on weights laid out once.

Eager PyTorch hands oneDNN plain weights, which it lays out again into its blocked format
on every call. PyTorch's own bindings of the primitives (``torch.ops.mkldnn``, what its
compiler calls) take weights laid out beforehand. They are internal to PyTorch and absent
from some builds: each is None there, and its callers fall back to the plain operators.
"""

from __future__ import annotations

import torch

from fcnxs.core import precision

convolution = getattr(torch.ops.mkldnn, "_convolution_pointwise", None)
"""``convolution(x, weight, bias, padding, stride, dilation, groups, "relu", [], "")``."""
inner_product = getattr(torch.ops.mkldnn, "_linear_pointwise", None)
"""``inner_product(rows, weight, bias, "relu" or "none", [], "")``: rows × weightᵀ."""


def available(x: torch.Tensor) -> bool:
    """Whether oneDNN's convolution can take ``x`` (a CPU tensor in a format this CPU
    computes natively)."""
    return (
        x.device.type == "cpu"
        and torch.backends.mkldnn.is_available()
        and convolution is not None
        and precision.native_on_cpu(x.dtype)
    )


def pack_convolution(weight: torch.Tensor, padding: int, shape: list[int]) -> torch.Tensor:
    """A convolution's weight in the blocked layout oneDNN picks for inputs of ``shape``
    (it serves every shape at the same speed with the same outputs, `fcnxs.inference.prepacked`)."""
    mkldnn = weight.contiguous().to_mkldnn()
    return torch._C._nn.mkldnn_reorder_conv2d_weight(
        mkldnn, [padding] * 2, [1, 1], [1, 1], 1, shape
    )


def pack_inner_product(matrix: torch.Tensor) -> torch.Tensor:
    """An (out, in) matrix in the blocked layout oneDNN's inner product picks (for a few
    dozen rows; it serves any number at the same speed)."""
    return torch.ops.mkldnn._reorder_linear_weight(matrix.contiguous(), 64)
