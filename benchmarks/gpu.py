"""FCN-8s on a GPU: what the card gives and what fcnxs takes of it (issue 15's tables).

    PYTHONPATH=src python benchmarks/gpu.py [--images 48] [--steps 5]

Tables, each for fp32, tf32 and bf16: `Segmenter.labels` per image against the eager forward
of the same batch, in the same arithmetic (`gpu_arithmetic`), and the first call's peak
memory; `fcnxs segment` over a folder of 375×500 JPEGs (its own wall time, model loading
excluded by timing a one-image run and subtracting it); training steps as the training loop
takes them (channels-last, deterministic cuDNN) on whole images (batch 1) and on 320×320 crops
(batch 16), with images/s, peak memory and model FLOP utilisation against the card's dense
bf16 peak (--peak-tflops), and the staged schedule's projected time. Without CUDA it says so
and exits 2.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from machine import describe_machine
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent


def forward_flop(batch: int, height: int, width: int) -> float:
    """FLOP of one FCN-8s forward pass, counted by PyTorch on the meta device (283 G at
    375×500); a training step is taken as three times that."""
    from torch.utils.flop_counter import FlopCounterMode

    import fcnxs

    with torch.device("meta"):
        model = fcnxs.FCN(fcnxs.ModelConfig("fcn8s", num_classes=21))
    with FlopCounterMode(display=False) as counter:
        model(torch.empty(batch, 3, height, width, device="meta"))
    return float(counter.get_total_flops())


def _timed(call, runs: int) -> float:
    call()
    torch.cuda.synchronize()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


PRECISIONS = ("fp32", "tf32", "bf16")
SCHEDULE_STEPS = 8498 * (31 + 27 + 19)
"""The staged recipe over SBD's training images, whole images one at a time."""


def inference(model, precision: str, batch: int, runs: int) -> tuple[float, float, float]:
    """(Segmenter per image ms, eager forward per image ms, first-call peak GiB)."""
    import fcnxs
    from fcnxs.core.precision import autocast_to, gpu_arithmetic

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (375, 500, 3), dtype=np.uint8) for _ in range(batch)]
    torch.cuda.reset_peak_memory_stats()
    segmenter = fcnxs.Segmenter(model, precision=precision, tile=None)
    segmenter.labels_batch(images)
    peak = torch.cuda.max_memory_allocated() / 2**30
    ours = _timed(lambda: segmenter.labels_batch(images), runs) / batch
    x = torch.randn(batch, 3, 375, 500, device="cuda").contiguous(memory_format=torch.channels_last)
    cuda = torch.device("cuda")

    def eager():
        with torch.inference_mode(), gpu_arithmetic(precision, cuda), autocast_to(precision, cuda):
            model(x)

    return 1000 * ours, 1000 * _timed(eager, runs) / batch, peak


def folder(model_file: Path, precision: str, count: int, work: Path) -> float:
    """Images per second of `fcnxs segment` over ``count`` JPEGs, start-up excluded."""
    rng = np.random.default_rng(1)
    photos = work / "photos"
    photos.mkdir(exist_ok=True)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (375, 500, 3), dtype=np.uint8)).save(
            photos / f"{i:04d}.jpg", quality=90
        )
    one = photos / "0000.jpg"

    def run(inputs: list[str]) -> float:
        start = time.perf_counter()
        command = [sys.executable, "-m", "fcnxs", "segment", *inputs, "--model", str(model_file)]
        command += ["-o", str(work / "masks"), "--precision", precision, "--device", "cuda"]
        subprocess.run(command, check=True, capture_output=True)
        return time.perf_counter() - start

    start_up = run([str(one)])
    return (count - 1) / max(run([str(photos)]) - start_up, 1e-9)


def training(precision: str, batch: int, crop: int | None, steps: int) -> tuple[float, float]:
    """(seconds per step, peak GiB) of FCN-8s steps with SGD, in the training loop's layout
    and arithmetic."""
    import fcnxs
    from fcnxs.core.precision import autocast_to, gpu_arithmetic

    cuda, layout = torch.device("cuda"), torch.channels_last
    model = fcnxs.build_model("fcn8s", num_classes=21, seed=0)
    model = model.to(cuda, memory_format=layout).train()
    model.bigscore.weight.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=1e-6, momentum=0.99, fused=True)
    height, width = (crop, crop) if crop else (375, 500)
    x = (torch.randn(batch, 3, height, width, device="cuda") * 50).contiguous(memory_format=layout)
    y = torch.randint(0, 21, (batch, height, width), device="cuda")

    def step():
        with gpu_arithmetic(precision, cuda, deterministic=True):
            with autocast_to(precision, cuda):
                logits = model(x)
            loss = torch.nn.functional.cross_entropy(logits.float(), y, ignore_index=255)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    torch.cuda.reset_peak_memory_stats()
    seconds = _timed(step, steps)
    return seconds, torch.cuda.max_memory_allocated() / 2**30


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=48, help="JPEGs in the folder run")
    parser.add_argument("--steps", type=int, default=5, help="timed repetitions")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("benchmarks/gpu.py: no CUDA device here", file=sys.stderr)
        return 2
    import fcnxs

    print(describe_machine())
    print(f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    model = fcnxs.build_model("fcn8s", num_classes=21, seed=0).cuda().eval()
    print("\n| precision | batch | Segmenter ms/img | eager ms/img | ratio | first-call peak GiB |")
    print("|---|---:|---:|---:|---:|---:|")
    for precision in PRECISIONS:
        for batch in (1, 16):
            ours, eager, peak = inference(model, precision, batch, args.steps)
            print(f"| {precision} | {batch} | {ours:.2f} | {eager:.2f} | {ours / eager:.2f} "
                  f"| {peak:.2f} |")  # fmt: skip
    with tempfile.TemporaryDirectory() as work:
        model_file = Path(work) / "fcn8s.safetensors"
        fcnxs.save_model(model.cpu(), model_file)
        print("\n| precision | `fcnxs segment` images/s (folder of 375×500 JPEGs) |")
        print("|---|---:|")
        for precision in PRECISIONS:
            rate = folder(model_file, precision, args.images, Path(work))
            print(f"| {precision} | {rate:.1f} |")
    print("\n| precision | input | s/step | images/s | peak GiB | MFU | staged schedule |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for precision in PRECISIONS:
        for batch, crop in ((1, None), (16, 320)):
            seconds, peak = training(precision, batch, crop, args.steps)
            flop = 3 * forward_flop(batch, crop or 375, crop or 500)  # forward + backward
            mfu = flop / seconds / (args.peak_tflops * 1e12)
            shape = f"{crop}×{crop} ×{batch}" if crop else "375×500 ×1"
            hours = "" if crop else f"{seconds * SCHEDULE_STEPS / 3600:.1f} h"
            print(f"| {precision} | {shape} | {seconds:.4f} | {batch / seconds:.1f} "
                  f"| {peak:.1f} | {100 * mfu:.1f} % | {hours} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
