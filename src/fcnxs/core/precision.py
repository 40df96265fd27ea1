"""Number formats, and whether this machine computes them natively.

bf16 and fp16 halve the arithmetic only where the hardware has instructions for them: on a
CPU, AVX-512 (BF16/FP16) or AMX, which oneDNN then uses. Elsewhere (an AVX2-only CPU, say)
oneDNN refuses them and PyTorch emulates them, several times slower than fp32 (FCN-8s at
375×500 on a 2-core AVX2 EPYC: fp32 3.1 s, bf16 23 s). A precision the user asked for is
honoured, never swapped silently; it is said plainly when it will be slow.
"""

from __future__ import annotations

import torch

PRECISIONS: dict[str, torch.dtype | None] = {
    "fp32": None,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}
"""Precision names as the CLI takes them; None means no autocast."""


def native_on_cpu(dtype: torch.dtype) -> bool:
    """Whether oneDNN computes ``dtype`` convolutions with this CPU's own instructions."""
    if dtype == torch.float32:
        return True
    if dtype == torch.bfloat16:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    if dtype == torch.float16:
        return bool(torch.ops.mkldnn._is_mkldnn_fp16_supported())
    return False


def fast_precision(device: torch.device | None = None) -> str:
    """The precision to train in on ``device`` (the CPU when None): bf16 on CPUs with native
    bf16 arithmetic (where it is 2-3× faster), else fp32. On a GPU fp32 for now: the demo
    diverged in bf16 on an H200, and the cause is not found yet (README, GPU)."""
    if device is not None and device.type != "cpu":
        return "fp32"
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
