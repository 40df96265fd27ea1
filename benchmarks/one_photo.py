"""One photo, the whole job: from the command's start to the mask on disk, for fcnxs and for
ONNX Runtime, OpenVINO (pip install 'fcnxs[bench]') and MXNet 1.9.1 (--mxnet-python) doing
the same job, each in a fresh process; then the time per image after the first, from a
folder of five photos ((T5 − T1) / 4).

    .venv/bin/python benchmarks/one_photo.py [--mxnet-python .venv-mxnet/bin/python]
        [--repeats 3]

Every engine reads the same FCN-8s weights in its own format (with MXNet: its checkpoint,
converted by ``fcnxs convert``, exported to ONNX and from there to OpenVINO's IR; without:
a seeded random model), decodes a 375×500 JPEG, subtracts the mean, runs the network, takes
the argmax and writes a palette PNG, as the fcn-xs example's image_segmentaion.py does. The
one-photo time is the median of --repeats runs. Nothing is fetched from the network.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from machine import describe_machine
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
FCNXS = [sys.executable, "-m", "fcnxs"]
PHOTOS = 5
SIZE = (375, 500)

_PEER_COMMON = """
import sys, numpy as np
from PIL import Image
model, out, photos = sys.argv[1], sys.argv[2], sys.argv[3:]
MEAN = np.array([123.68, 116.779, 103.939], np.float32)
def save(labels, path):
    image = Image.fromarray(labels.astype(np.uint8), mode="P")
    palette = []
    for c in range(256):
        r = g = b = 0
        for k in range(8):
            r |= ((c >> 0 >> (3 * k)) & 1) << (7 - k)
            g |= ((c >> 1 >> (3 * k)) & 1) << (7 - k)
            b |= ((c >> 2 >> (3 * k)) & 1) << (7 - k)
        palette += [r, g, b]
    image.putpalette(palette)
    image.save(path)
def inputs():
    for i, photo in enumerate(photos):
        rgb = np.asarray(Image.open(photo).convert("RGB"), np.float32)
        yield i, (rgb - MEAN).transpose(2, 0, 1)[None].copy()
"""
PEERS = {
    "ONNX Runtime": """
import onnxruntime
session = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
for i, x in inputs():
    save(session.run(None, {"image": x})[0][0].argmax(0), f"{out}/{i}.png")
""",
    "OpenVINO (IR)": """
import openvino
compiled = openvino.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
for i, x in inputs():
    save(compiled(x)[0][0].argmax(0), f"{out}/{i}.png")
""",
    "MXNet 1.9.1": """
import mxnet as mx
symbol, args, aux = mx.model.load_checkpoint(model, 1)
for i, x in inputs():
    args["data"] = mx.nd.array(x)
    args["softmax_label"] = mx.nd.empty((1, x.shape[2] * x.shape[3]))
    executor = symbol.bind(mx.cpu(), args, args_grad=None, grad_req="null", aux_states=aux)
    executor.forward(is_train=False)
    save(executor.outputs[0].asnumpy()[0].argmax(0), f"{out}/{i}.png")
""",
}


def _timed(command: list[str], env: dict | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env=env)
    return time.perf_counter() - start


def _prepare(work: Path, mxnet_python: str | None) -> dict[str, tuple[str, Path]]:
    """(python, model) of every engine that can run here, the photos written."""
    photos = work / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(PHOTOS):  # smooth colour fields with noise: JPEG-like content
        y, x = np.mgrid[: SIZE[0], : SIZE[1]]
        base = np.stack([np.sin((x + 40 * i) / (30 + c * 7) + y / 50) for c in range(3)], -1)
        rgb = (127 + 100 * base + rng.normal(0, 12, (*SIZE, 3))).clip(0, 255)
        Image.fromarray(rgb.astype(np.uint8)).save(photos / f"p{i}.jpg", quality=90)
    engines: dict[str, tuple[str, Path]] = {}
    native = work / "model.safetensors"
    if mxnet_python:
        tool = ROOT / "tools" / "mxnet_reference.py"
        image = str(photos / "p0.jpg")
        subprocess.run([mxnet_python, str(tool), "--image", image, "--out", str(work / "mx")],
                       check=True, capture_output=True)  # fmt: skip
        engines["MXNet 1.9.1"] = (mxnet_python, work / "mx" / "FCN")
        subprocess.run([*FCNXS, "convert", str(work / "mx" / "FCN"), "--epoch", "1", "-o",
                        str(native)], check=True, capture_output=True)  # fmt: skip
    else:
        import fcnxs

        fcnxs.save_model(fcnxs.build_model("fcn8s", num_classes=21, seed=0), native)
    engines["fcnxs"] = (sys.executable, native)
    try:
        import fcnxs
        from fcnxs.apps.export import export_onnx

        export_onnx(fcnxs.load_model(native), work / "model.onnx")
        engines["ONNX Runtime"] = (sys.executable, work / "model.onnx")
    except ImportError:
        print("ONNX Runtime: not installed (pip install 'fcnxs[onnx]')")
    try:
        import openvino

        openvino.save_model(openvino.convert_model(work / "model.onnx"), work / "model.xml")
        engines["OpenVINO (IR)"] = (sys.executable, work / "model.xml")
        engines["OpenVINO (ONNX)"] = (sys.executable, work / "model.onnx")
    except ImportError:
        print("OpenVINO: not installed (pip install 'fcnxs[bench]')")
    return engines


def _command(name: str, python: str, model: Path, out: Path, photos: list[Path]) -> list[str]:
    if name == "fcnxs":
        return [*FCNXS, "segment", *map(str, photos), "--model", str(model), "-o", str(out)]
    job = PEERS[name.replace("(ONNX)", "(IR)")]  # OpenVINO reads either
    return [python, "-c", _PEER_COMMON + job, str(model), str(out), *map(str, photos)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mxnet-python", help="a Python with MXNet 1.9.1")
    parser.add_argument("--repeats", type=int, default=3, help="runs of the one-photo job")
    args = parser.parse_args()
    threads = str(os.cpu_count() or 1)
    env = dict(os.environ, OMP_NUM_THREADS=threads)
    print(describe_machine())
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        engines = _prepare(work, args.mxnet_python)
        photos = sorted((work / "photos").glob("*.jpg"))
        for name, (python, model) in engines.items():
            times = []
            for repeat in range(args.repeats):
                out = work / f"out-{len(rows)}-{repeat}"
                out.mkdir()
                times.append(_timed(_command(name, python, model, out, photos[:1]), env))
            out = work / f"out-{len(rows)}-folder"
            out.mkdir()
            folder = _timed(_command(name, python, model, out, photos), env)
            one = statistics.median(times)
            rows[name] = {"one_photo_s": one, "per_image_s": (folder - one) / (PHOTOS - 1)}
            print(f"{name}: {json.dumps(rows[name])}", flush=True)
    peers = {k: v for k, v in rows.items() if k != "fcnxs"}
    print("\n| engine | one photo, whole command (s) | per image after it (s) |")
    print("|---|---:|---:|")
    for name, row in rows.items():
        print(f"| {name} | {row['one_photo_s']:.2f} | {row['per_image_s']:.2f} |")
    if peers and "fcnxs" in rows:
        fastest = min(peers, key=lambda k: peers[k]["one_photo_s"])
        ours = rows["fcnxs"]
        print(f"\nfcnxs one photo / fastest peer ({fastest}): "
              f"{ours['one_photo_s'] / peers[fastest]['one_photo_s']:.2f}×")  # fmt: skip
        if "MXNet 1.9.1" in rows:
            ratio = ours["per_image_s"] / rows["MXNet 1.9.1"]["per_image_s"]
            print(f"fcnxs per image / MXNet's: {ratio:.2f}×")


if __name__ == "__main__":
    main()
