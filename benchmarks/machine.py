"""The machine a benchmark ran on, printed above its table: figures from CPUs with and
without native bf16 (AVX-512/AMX against AVX2) differ by 2× and more, so a table without its
machine cannot be compared with another. And the one way the benchmarks time a call."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable


def median_seconds(call: Callable[[], object], runs: int) -> float:
    """The median wall time of ``runs`` calls (the caller warms up first)."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_machine() -> str:
    """One line: CPU, cores, the instruction set PyTorch uses, whether bf16 is native."""
    import torch

    bf16 = "native bf16" if bf16_is_native() else "no native bf16"
    return (
        f"Machine: {cpu_name()}, {os.cpu_count()} cores, "
        f"{torch.backends.cpu.get_cpu_capability()}, {bf16}; torch {torch.__version__}"
    )


def bf16_is_native() -> bool:
    import torch

    from fcnxs.core.precision import native_on_cpu

    return native_on_cpu(torch.bfloat16)


EMULATED_BF16_HELP = "run the bf16 rows on a CPU that only emulates bf16 (slow)"
EMULATED_BF16_NOTE = (
    "bf16 rows left out: this CPU only emulates bf16, several times slower than fp32 "
    "(`--emulated-bf16` runs them anyway)"
)
