"""Number formats, and whether this machine computes them natively.

bf16 and fp16 halve the arithmetic only where the hardware has instructions for them: on a
CPU, AVX-512 (BF16/FP16) or AMX, which oneDNN then uses. Elsewhere (an AVX2-only CPU, say)
oneDNN refuses them and PyTorch emulates them, several times slower than fp32 (FCN-8s at
375×500 on a 2-core AVX2 EPYC: fp32 3.1 s, bf16 23 s). A precision the user asked for is
honoured, never swapped silently; it is said plainly when it will be slow.

On an NVIDIA GPU, fp32 means fp32: PyTorch lets cuDNN round convolution inputs to TF32 (10
mantissa bits) by default, which changed 0.13 % of an FCN-8s's labels against the CPU's fp32
on an H100, so fp32 turns that off during fcnxs's own calls and tf32 is asked for by name
(2-4× faster there). tf32 exists on GPUs only.
"""

from __future__ import annotations

import contextlib
import threading

import torch

from fcnxs.core import torch_internals
from fcnxs.core.errors import FcnxsError

PRECISIONS: dict[str, torch.dtype | None] = {
    "fp32": None,
    "tf32": None,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}
"""Precision names as the CLI takes them; None means no autocast (fp32 tensors, and for
tf32 the GPU's TF32 tensor cores)."""
GPU_ONLY = ("tf32",)
_GPU_SETTINGS = threading.RLock()
"""Held by `gpu_arithmetic` on CUDA: the flags are the process's, so threads take turns."""


def check_precision(precision: str, device: torch.device) -> None:
    """Refuse an unknown precision, or one ``device`` does not have."""
    if precision not in PRECISIONS:
        raise FcnxsError(f"unknown precision {precision!r} (expected {', '.join(PRECISIONS)})")
    if precision in GPU_ONLY and device.type != "cuda":
        raise FcnxsError(
            f"precision {precision} exists on NVIDIA GPUs only, and this runs on the "
            f"{device.type}: use fp32 or bf16"
        )


def autocast_to(precision: str, device: torch.device) -> torch.autocast:
    """Autocast for bf16 and fp16 (forward passes only); nothing for fp32 and tf32."""
    dtype = PRECISIONS[precision]
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


@contextlib.contextmanager
def gpu_arithmetic(precision: str, device: torch.device, *, deterministic: bool = False):
    """On CUDA, for the calls inside: TF32 on for tf32 and off otherwise, cuDNN's autotuner
    off, and when ``deterministic`` its deterministic algorithms (an exact resume needs them).
    The autotuner took 33 GiB and 6 s for each new image size on an H100, for a gain under
    10 %. Every global setting touched is restored on the way out; elsewhere nothing.

    Threads take turns inside (the service's workers share one segmenter): two that set and
    restored the flags in interleaved order would leave one computing in the other's
    arithmetic. They share the card's one stream anyway."""
    if device.type != "cuda":
        yield
        return
    with _GPU_SETTINGS:
        matmul = torch.backends.cuda.matmul
        kept = matmul.allow_tf32
        tf32 = precision == "tf32"
        cudnn = torch.backends.cudnn.flags(
            enabled=torch.backends.cudnn.enabled,
            benchmark=False,
            deterministic=deterministic,
            allow_tf32=tf32,
        )
        matmul.allow_tf32 = tf32
        try:
            with cudnn:
                yield
        finally:
            matmul.allow_tf32 = kept


def native_on_cpu(dtype: torch.dtype) -> bool:
    """Whether oneDNN computes ``dtype`` convolutions with this CPU's own instructions."""
    if dtype == torch.float32:
        return True
    if dtype in (torch.bfloat16, torch.float16):
        return torch_internals.mkldnn_native(dtype)
    return False


def fast_precision(device: torch.device | None = None) -> str:
    """The precision to train the demo in on ``device`` (the CPU when None): bf16 on CPUs
    with native bf16 arithmetic (where it is 2-3× faster), else fp32; tf32 on a GPU, where
    the demo's small steps leave the time to Python and the disk, so the format closest to
    fp32 costs nothing."""
    if device is not None and device.type == "cuda":
        return "tf32"
    return "bf16" if native_on_cpu(torch.bfloat16) else "fp32"


def emulation_warning(precision: str, device: torch.device) -> str | None:
    """A one-line warning when ``precision`` will run emulated on ``device``, else None."""
    dtype = PRECISIONS[precision]
    if dtype is None or device.type != "cpu" or native_on_cpu(dtype):
        return None
    cpu = torch.backends.cpu.get_cpu_capability()
    return (
        f"this CPU ({cpu}) has no native {precision} arithmetic; "
        f"{precision} runs emulated, several times slower than fp32"
    )
