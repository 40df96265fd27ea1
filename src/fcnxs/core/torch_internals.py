"""Every private PyTorch call fcnxs makes, in one place, each checked before it is trusted.

The CPU engine's speed rests on PyTorch internals: oneDNN's bindings that take weights laid
out once (what PyTorch's own compiler calls), oneDNN's report of native bf16/fp16, and
tensors' version counters (how border reuse knows the weights did not change). No release
promises them. So each is looked up when first needed, run on a small random case against
its public equivalent (`F.conv2d`, `F.linear`, an in-place add), and used only when present,
not raising, and right (within a tolerance that fits fp32 and bf16). Otherwise the public
path runs and one warning says what was lost and how much slower it is (measured with each
one off, FCN-8s at 375×500 on the 2-core AVX-512 EPYC, docs/design.md §10).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import reduce

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Internal:
    """A feature resting on private calls, and what its loss costs."""

    name: str
    calls: tuple[str, ...]
    lost: str


PACKED_CONVOLUTION = Internal(
    "oneDNN convolutions on weights packed once",
    ("torch._C._nn.mkldnn_reorder_conv2d_weight", "torch.ops.mkldnn._convolution_pointwise"),
    "convolutions re-lay their weights on every call (measured at 375×500: as fast with "
    "AVX-512 kernels; slower where oneDNN re-lays slowly)",
)
PACKED_INNER_PRODUCT = Internal(
    "oneDNN inner products on weights packed once",
    ("torch.ops.mkldnn._reorder_linear_weight", "torch.ops.mkldnn._linear_pointwise"),
    "fc6 runs without Winograd and fc7 as a convolution, about 1.2× slower per image "
    "(measured at 375×500; fc7 alone 3× slower with AVX2 kernels)",
)
NATIVE_HALF = Internal(
    "oneDNN's report of native bf16/fp16 arithmetic",
    ("torch.ops.mkldnn._is_mkldnn_bf16_supported", "torch.ops.mkldnn._is_mkldnn_fp16_supported"),
    "bf16 and fp16 run unpacked, as on a CPU that emulates them, about 1.6× slower "
    "(measured at 375×500)",
)
VERSION_COUNTERS = Internal(
    "tensors' version counters",
    ("torch.Tensor._version",),
    "border reuse and packed weights are off (the weights' changes could not be seen), "
    "about 2.9× slower per image (measured at 375×500)",
)

_verdicts: dict[tuple[str, torch.dtype | None], bool] = {}
_lock = threading.Lock()


def _lookup(dotted: str) -> Callable:
    """The object a dotted name reaches from ``torch`` (AttributeError when it is gone)."""
    return reduce(getattr, dotted.split(".")[1:], torch)


def _trusted(feature: Internal, dtype: torch.dtype | None, check: Callable[[], bool]) -> bool:
    """Whether ``feature`` passed its check (run once per dtype; one warning if not)."""
    key = (feature.name, dtype)
    with _lock:
        if key in _verdicts:
            return _verdicts[key]
        try:
            good, why = bool(check()), "gives values that differ from the public call's"
        except Exception as exc:  # missing (AttributeError), renamed, changed signature
            good, why = False, f"is unusable ({type(exc).__name__}: {exc})"
        _verdicts[key] = good
    if not good:
        where = f" for {str(dtype).removeprefix('torch.')}" if dtype is not None else ""
        log.warning(
            "PyTorch %s's %s (%s) %s%s: %s",
            torch.__version__,
            feature.name,
            ", ".join(feature.calls),
            why,
            where,
            feature.lost,
        )
    return good


def _close(ours: torch.Tensor, reference: torch.Tensor, dtype: torch.dtype) -> bool:
    """Agreement within the rounding of ``dtype`` (relative to the largest value)."""
    tolerance = 1e-4 if dtype == torch.float32 else 3e-2
    scale = reference.float().abs().max().clamp_min(1e-6)
    return ours.shape == reference.shape and bool(
        ((ours.float() - reference.float()).abs().max() / scale) <= tolerance
    )


def _case(*shape: int, dtype: torch.dtype) -> torch.Tensor:
    generator = torch.Generator().manual_seed(len(shape))
    return torch.randn(shape, generator=generator).to(dtype)


# -- oneDNN convolutions on packed weights ---------------------------------------------------


def pack_convolution(weight: torch.Tensor, padding: int, shape: list[int]) -> torch.Tensor:
    """A convolution's weight in the blocked layout oneDNN picks for inputs of ``shape`` (it
    serves every shape at the same speed with the same outputs, docs/design.md §6)."""
    reorder = _lookup(PACKED_CONVOLUTION.calls[0])
    return reorder(weight.contiguous().to_mkldnn(), [padding] * 2, [1, 1], [1, 1], 1, shape)


def relu_convolution(
    x: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor | None, padding: int
) -> torch.Tensor:
    """relu(conv(x)) with stride 1 on a weight from `pack_convolution`."""
    convolution = _lookup(PACKED_CONVOLUTION.calls[1])
    one = [1, 1]
    return convolution(x, packed, bias, [padding] * 2, one, one, 1, "relu", [], "")


def packed_convolutions(dtype: torch.dtype) -> bool:
    """Whether `pack_convolution` and `relu_convolution` work in ``dtype`` here."""

    def check() -> bool:
        x = _case(1, 8, 7, 9, dtype=dtype).contiguous(memory_format=torch.channels_last)
        weight, bias = _case(16, 8, 3, 3, dtype=dtype), _case(16, dtype=dtype)
        ours = relu_convolution(x, pack_convolution(weight, 1, list(x.shape)), bias, 1)
        return _close(
            ours, F.relu(F.conv2d(x.float(), weight.float(), bias.float(), padding=1)), dtype
        )

    return _trusted(PACKED_CONVOLUTION, dtype, check)


# -- oneDNN inner products on packed weights -------------------------------------------------


def pack_inner_product(matrix: torch.Tensor) -> torch.Tensor:
    """An (out, in) matrix in the blocked layout oneDNN's inner product picks (for a few
    dozen rows; it serves any number at the same speed)."""
    return _lookup(PACKED_INNER_PRODUCT.calls[0])(matrix.contiguous(), 64)


def inner_product(
    rows: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor | None, relu: bool
) -> torch.Tensor:
    """rows × matrixᵀ (+ bias, then ReLU when ``relu``) on a matrix from `pack_inner_product`."""
    linear = _lookup(PACKED_INNER_PRODUCT.calls[1])
    return linear(rows, packed, bias, "relu" if relu else "none", [], "")


def packed_inner_products(dtype: torch.dtype) -> bool:
    """Whether `pack_inner_product` and `inner_product` work in ``dtype`` here."""

    def check() -> bool:
        rows, matrix, bias = _case(5, 24, dtype=dtype), _case(40, 24, dtype=dtype), None
        ours = inner_product(rows, pack_inner_product(matrix), bias, relu=True)
        return _close(ours, F.relu(F.linear(rows.float(), matrix.float())), dtype)

    return _trusted(PACKED_INNER_PRODUCT, dtype, check)


# -- native half precision -------------------------------------------------------------------


def mkldnn_native(dtype: torch.dtype) -> bool:
    """Whether oneDNN reports native arithmetic for ``dtype`` (bf16 or fp16) on this CPU.
    Unknown counts as no: the slower, always correct, public path."""
    call = NATIVE_HALF.calls[0 if dtype == torch.bfloat16 else 1]

    def check() -> bool:
        answer = _lookup(call)()
        if not isinstance(answer, bool):
            raise TypeError(f"answered {answer!r}, not a bool")
        return True

    return _trusted(NATIVE_HALF, dtype, check) and _lookup(call)()


# -- version counters ------------------------------------------------------------------------


def version(tensor: torch.Tensor) -> int:
    """How often ``tensor`` was changed in place (-1 for an inference tensor, which has no
    counter and can be changed in place under inference mode only)."""
    return -1 if tensor.is_inference() else tensor._version


def version_counters() -> bool:
    """Whether `version` sees an in-place change."""

    def check() -> bool:
        with torch.inference_mode(False):
            t = torch.zeros(2)
            before = version(t)
            t.add_(1)
            return isinstance(before, int) and version(t) > before

    return _trusted(VERSION_COUNTERS, None, check)
