"""Per-image inference of FCN-8s at 375×500: fcnxs's engines side by side with ONNX Runtime,
OpenVINO (when installed: pip install 'fcnxs[bench]') and, when given a Python with MXNet
1.9.1, MXNet itself, on this machine.

    .venv/bin/python benchmarks/inference.py [--model M.safetensors] [--runs 5]
        [--mxnet-python .venv-mxnet/bin/python]

Every engine runs in a process of its own (its own peak memory, no shared warm caches),
reports the median of --runs calls after a first (timed separately) one, and is compared
with eager fp32: max |Δ logit| / max |logit| and the share of equal argmax pixels. For
fcnxs's engines it also times a folder: five other images of that size through a fresh
`Segmenter`, per image after the first, (T5 − T1) / 4, and then one image of a size it has
not seen (376×500): what a new size costs once the weights are packed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from machine import (
    EMULATED_BF16_HELP,
    EMULATED_BF16_NOTE,
    bf16_is_native,
    describe_machine,
    median_seconds,
)

ENGINES = [
    "eager fp32",
    "eager fp32 channels_last",
    "eager bf16 channels_last",
    "onnxruntime fp32",
    "openvino fp32",
    "fcnxs segment fp32",
    "fcnxs segment bf16",
]
WARM_UP = 2
"""Untimed calls after the first, for every engine alike (caches, the allocator's pools)."""
ROOT = Path(__file__).resolve().parent.parent


def _timed(call, runs: int) -> tuple[float, float]:
    start = time.perf_counter()
    call()
    first = time.perf_counter() - start
    for _ in range(WARM_UP):
        call()
    return first, median_seconds(call, runs)


def run_engine(engine: str, model_path: str, image: np.ndarray, runs: int, work: Path) -> dict:
    import torch

    import fcnxs
    from fcnxs.model.preprocessing import to_input

    model = fcnxs.load_model(model_path).eval()
    x = to_input(image, model.config.preprocessing)
    if engine.startswith("fcnxs segment"):
        from fcnxs.cli.allocator import keep_freed_memory
        from fcnxs.inference.segmenter import Segmenter

        # as `fcnxs segment` runs it: the model in channels-last memory, freed memory kept
        keep_freed_memory()
        model = model.to(memory_format=torch.channels_last)
        segmenter = Segmenter(model, precision=engine.split()[-1], tile=None)

        def call():
            call.out = segmenter.scores(image)

        first, median = _timed(call, runs)
        logits = call.out.numpy()
        peak = _peak_gib()  # before the folder's segmenter adds its own
        del segmenter
        folder_s, new_size_s = _folder_time(model, engine.split()[-1], image.shape[:2])
    elif engine.startswith("eager"):
        channels_last = "channels_last" in engine
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        bf16 = "bf16" in engine

        def call():
            with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=bf16):
                call.out = model(x).float()

        first, median = _timed(call, runs)
        logits = call.out[0].numpy()
    elif engine.startswith("onnxruntime"):
        import onnxruntime

        session = onnxruntime.InferenceSession(
            str(_onnx(model, work)), providers=["CPUExecutionProvider"]
        )
        feed = {"image": x.numpy()}

        def call():
            call.out = session.run(["scores"], feed)[0]

        first, median = _timed(call, runs)
        logits = call.out[0]
    else:  # OpenVINO on the same ONNX model, fp32 kept (its CPU plugin would pick bf16)
        import openvino

        core = openvino.Core()
        compiled = core.compile_model(
            str(_onnx(model, work)), "CPU", {"INFERENCE_PRECISION_HINT": "f32"}
        )
        request = compiled.create_infer_request()
        feed = x.numpy()

        def call():
            call.out = request.infer({0: feed})[compiled.output(0)]

        first, median = _timed(call, runs)
        logits = call.out[0]
    np.save(work / f"{engine.replace(' ', '_')}.npy", logits)
    if not engine.startswith("fcnxs segment"):
        peak = _peak_gib()
    result = {"engine": engine, "first_s": first, "median_s": median, "peak_gib": peak}
    if engine.startswith("fcnxs segment"):
        result |= {"folder_s": folder_s, "new_size_s": new_size_s}
    return result


def _peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _folder_time(model, precision: str, size: tuple[int, int]) -> tuple[float, float]:
    """Per image after the first, over five other images of one size through a fresh
    `Segmenter` (what a folder of photos costs), and then one image one row taller."""
    from fcnxs.data.synth import render
    from fcnxs.inference.segmenter import Segmenter

    segmenter = Segmenter(model, precision=precision, tile=None)
    times = []
    for seed, (height, width) in enumerate([size] * 5 + [(size[0] + 1, size[1])], start=1):
        photo = render(np.random.default_rng(seed), height, width)[0]
        start = time.perf_counter()
        segmenter.labels(photo)
        times.append(time.perf_counter() - start)
    return sum(times[1:5]) / 4, times[5]


def _onnx(model, work: Path) -> Path:
    from fcnxs.apps.export import export_onnx

    path = work / "model.onnx"
    if not path.exists():
        export_onnx(model, path)
    return path


def missing(engine: str) -> str | None:
    """Why an optional engine cannot run here (None: it can)."""
    if engine.startswith("openvino"):
        try:
            import openvino  # noqa: F401
        except ImportError:
            return "OpenVINO is not installed (pip install 'fcnxs[bench]')"
    return None


def run_mxnet(python: str, image_path: Path, runs: int, work: Path) -> dict:
    tool = ROOT / "tools" / "mxnet_reference.py"
    env = dict(os.environ, OMP_NUM_THREADS=str(os.cpu_count() or 1))
    out = subprocess.run(
        [
            python,
            str(tool),
            "--image",
            str(image_path),
            "--out",
            str(work / "mx"),
            "--time",
            str(runs),
        ],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    timing = json.loads(out.stdout.strip().splitlines()[-1])
    return {"engine": "MXNet 1.9.1 (own random weights)", **timing}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="an fcnxs model (default: a seeded random FCN-8s)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--mxnet-python", help="a Python with MXNet 1.9.1")
    parser.add_argument("--emulated-bf16", action="store_true", help=EMULATED_BF16_HELP)
    parser.add_argument("--engine", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.engine:
        image = np.load(Path(args.work) / "image.npy")
        print(json.dumps(run_engine(args.engine, args.model, image, args.runs, Path(args.work))))
        return

    import fcnxs
    from fcnxs.data.synth import render

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        image = render(np.random.default_rng(0), 375, 500)[0]
        np.save(work / "image.npy", image)
        from PIL import Image

        Image.fromarray(image).save(work / "image.png")
        model_path = args.model
        if model_path is None:
            model_path = str(work / "fcn8s.safetensors")
            fcnxs.save_model(_random_fcn8s(), model_path)
        rows, skipped = [], []
        skip_bf16 = not (bf16_is_native() or args.emulated_bf16)
        for engine in ENGINES:
            if skip_bf16 and "bf16" in engine:
                continue
            if missing(engine):
                skipped.append(f"{engine}: skipped, {missing(engine)}")
                continue
            command = [
                sys.executable,
                __file__,
                "--engine",
                engine,
                "--model",
                model_path,
                "--runs",
                str(args.runs),
                "--work",
                str(work),
            ]
            out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
        if args.mxnet_python:
            rows.append(run_mxnet(args.mxnet_python, work / "image.png", args.runs, work))
        reference = np.load(work / "eager_fp32.npy")
        print(describe_machine())
        print(
            f"FCN-8s, one 375×500 image; median of {args.runs} calls "
            f"after the first and {WARM_UP} more\n"
        )
        header = [
            "engine",
            "first call (s)",
            "per image (ms)",
            "folder of 5, per image (s)",
            "a new size (s)",
            "peak memory (GiB)",
            "max abs Δ / max abs logit",
            "equal argmax",
        ]
        print("| " + " | ".join(header) + " |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for row in rows:
            name = row["engine"].replace(" ", "_") + ".npy"
            if (work / name).exists():
                logits = np.load(work / name)
                delta = np.abs(logits - reference).max() / np.abs(reference).max()
                agree = (logits.argmax(0) == reference.argmax(0)).mean()
                quality = f"{delta:.1e} | {100 * agree:.2f} %"
            else:
                quality = "– | –"
            print(
                f"| {row['engine']} | {row['first_s']:.2f} | {1000 * row['median_s']:.0f} | "
                f"{_folder(row)} | {row['peak_gib']:.2f} | {quality} |"
            )
        for line in skipped:
            print(f"\n{line}")
        if skip_bf16:
            print(f"\n{EMULATED_BF16_NOTE}")


def _folder(row: dict) -> str:
    if "folder_s" not in row:
        return " | "
    return f"{row['folder_s']:.2f} | {row['new_size_s']:.2f}"


def _random_fcn8s():
    import torch

    import fcnxs

    model = fcnxs.build_model("fcn8s", num_classes=21, seed=0)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name in ("score", "score_pool4", "score_pool3"):
            model.get_submodule(name).weight.normal_(0, 0.01, generator=generator)
    return model


if __name__ == "__main__":
    main()
