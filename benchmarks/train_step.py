"""Seconds per training step (forward + backward + SGD) of FCN-8s on one 375×500 image,
fp32 and bf16, with the peak memory of the process.

    .venv/bin/python benchmarks/train_step.py [--steps 3] [--mxnet-python .venv-mxnet/bin/python]

Each configuration runs in a process of its own, so that peak memory is its own. Given a
Python with MXNet 1.9.1, the table also holds MXNet's step on the same network (the
tutorial's SGD, bigscore frozen), from the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import EMULATED_BF16_HELP, EMULATED_BF16_NOTE, bf16_is_native, describe_machine

ROOT = Path(__file__).resolve().parent.parent


def one(precision: str, steps: int) -> dict:
    import torch
    import torch.nn.functional as F

    import fcnxs

    model = fcnxs.build_model("fcn8s", num_classes=21, seed=0).train()
    model.bigscore.weight.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=1e-6, momentum=0.99, weight_decay=5e-4, fused=True)
    x = torch.randn(1, 3, 375, 500) * 50
    y = torch.randint(0, 21, (1, 375, 500))
    times = []
    for _ in range(steps + 1):  # the first step warms up allocators and kernels
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y, ignore_index=255)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"precision": precision, "median_s": statistics.median(times[1:]),
            "peak_gib": peak_kib / 2**20, "threads": torch.get_num_threads()}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--mxnet-python", help="a Python with MXNet 1.9.1")
    parser.add_argument("--emulated-bf16", action="store_true", help=EMULATED_BF16_HELP)
    parser.add_argument("--one", choices=("fp32", "bf16"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.steps)))
        return
    print(describe_machine())
    print("FCN-8s training step, one 375×500 image, SGD momentum (median of "
          f"{args.steps} after one warm-up step)\n")  # fmt: skip
    print("| precision | s / step | peak memory (GiB) | threads |")
    print("|---|---:|---:|---:|")
    skip_bf16 = not (bf16_is_native() or args.emulated_bf16)
    for precision in ("fp32",) if skip_bf16 else ("fp32", "bf16"):
        command = [sys.executable, __file__, "--one", precision, "--steps", str(args.steps)]
        out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        print(f"| {r['precision']} | {r['median_s']:.2f} | {r['peak_gib']:.2f} | {r['threads']} |")
    if args.mxnet_python:
        r = mxnet_step(args.mxnet_python, args.steps)
        print(
            f"| MXNet 1.9.1 fp32 | {r['median_s']:.2f} | {r['peak_gib']:.2f} | {os.cpu_count()} |"
        )
    if skip_bf16:
        print(f"\n{EMULATED_BF16_NOTE}")


def mxnet_step(python: str, steps: int) -> dict:
    import numpy as np
    from PIL import Image

    with tempfile.TemporaryDirectory() as work:
        image = Path(work) / "image.png"
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (375, 500, 3), np.uint8)).save(
            image
        )
        command = [python, str(ROOT / "tools" / "mxnet_reference.py"), "--image", str(image)]
        command += ["--out", work, "--train-steps", str(steps)]
        env = dict(os.environ, OMP_NUM_THREADS=str(os.cpu_count() or 1))
        out = subprocess.run(command, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
