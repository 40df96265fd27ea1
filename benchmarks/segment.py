"""Time and peak memory of ``fcnxs segment`` on one 6000×4000 photo and on a folder of
VOC-sized (500×375) images, each a separate run of the command.

    .venv/bin/python benchmarks/segment.py [--images 100] [--model M.safetensors]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from machine import describe_machine
from PIL import Image


def run(command: list[str]) -> tuple[float, float]:
    """Wall seconds and the peak memory (GiB) of the command's process."""
    script = (
        "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", script, *command], check=True, capture_output=True, text=True
    ).stdout
    return time.perf_counter() - start, int(out.strip().splitlines()[-1]) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--model", help="an fcnxs model (default: a random FCN-8s)")
    parser.add_argument("--skip-large", action="store_true")
    args = parser.parse_args()
    fcnxs_cli = [sys.executable, "-m", "fcnxs"]
    from fcnxs.data.synth import render

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = args.model
        if model is None:
            model = str(work / "fcn8s.safetensors")
            subprocess.run(
                [*fcnxs_cli, "create", "--arch", "fcn8s", "--seed", "0", "-o", model],
                check=True,
                capture_output=True,
            )
        rng = np.random.default_rng(0)
        folder = work / "voc"
        folder.mkdir()
        for i in range(args.images):
            Image.fromarray(render(rng, 375, 500)[0]).save(folder / f"{i:04d}.jpg", quality=90)
        rows = []
        command = [*fcnxs_cli, "segment", str(folder), "--model", model, "-o", str(work / "out")]
        seconds, peak = run(command)
        rows.append((f"{args.images} images of 500×375", seconds, peak, args.images / seconds))
        if not args.skip_large:
            tile = render(rng, 1000, 1500)[0]
            Image.fromarray(np.tile(tile, (4, 4, 1))).save(work / "large.jpg", quality=90)
            seconds, peak = run(
                [
                    *fcnxs_cli,
                    "segment",
                    str(work / "large.jpg"),
                    "--model",
                    model,
                    "-o",
                    str(work / "out-large"),
                ]
            )
            rows.append(("one 6000×4000 image (tiles: auto)", seconds, peak, 1 / seconds))
        print(describe_machine() + "\n")
        print("| input | wall time (s) | peak memory (GiB) | images/s |")
        print("|---|---:|---:|---:|")
        for name, seconds, peak, rate in rows:
            print(f"| {name} | {seconds:.1f} | {peak:.2f} | {rate:.3f} |")


if __name__ == "__main__":
    main()
