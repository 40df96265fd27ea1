"""``fcnxs evaluate --model`` against ``fcnxs segment`` on the same images: one engine, so
evaluating should cost what segmenting costs, plus reading the truth.

    .venv/bin/python benchmarks/evaluate.py [--images 24] [--model M.safetensors]

A synthetic VOC root of --images 500×375 photos is written; each command runs once per
precision (bf16 only where this CPU computes it natively) as a fresh process, and its wall
time over the images (start-up included, alike for both) is printed per image.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import bf16_is_native, describe_machine

FCNXS = [sys.executable, "-m", "fcnxs"]


def _seconds(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--model", help="a 6-class fcnxs model (default: a random FCN-8s)")
    args = parser.parse_args()
    from fcnxs.data.synth import write_synthetic_voc

    print(describe_machine() + "\n")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        root = write_synthetic_voc(work / "voc", args.images, height=375, width=500,
                                   val_fraction=0.0)  # fmt: skip
        model = args.model or str(work / "fcn8s.safetensors")
        if args.model is None:
            create = ["create", "--arch", "fcn8s", "--num-classes", "6", "--seed", "0", "-o"]
            subprocess.run([*FCNXS, *create, model], check=True, capture_output=True)
        print("| precision | segment (s/img) | evaluate --model (s/img) | evaluate / segment |")
        print("|---|---:|---:|---:|")
        for precision in ["fp32", *(["bf16"] if bf16_is_native() else [])]:
            engine = ["--model", model, "--precision", precision]
            segment = _seconds([*FCNXS, "segment", str(root / "JPEGImages"), *engine,
                                "-o", str(work / f"masks-{precision}")])  # fmt: skip
            evaluate = _seconds([*FCNXS, "evaluate", "--data", str(root), "--split", "train",
                                 *engine, "--out", str(work / f"{precision}.json")])  # fmt: skip
            n = args.images
            print(f"| {precision} | {segment / n:.3f} | {evaluate / n:.3f} | "
                  f"{evaluate / segment:.2f}× |")  # fmt: skip


if __name__ == "__main__":
    main()
