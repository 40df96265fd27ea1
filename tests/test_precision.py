"""bf16 and fp16 are used where asked, and said to be slow where the CPU only emulates them."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from PIL import Image

import fcnxs
from fcnxs.cli import main
from fcnxs.core import precision
from fcnxs.core.errors import FcnxsError


def test_fp32_and_gpus_never_warn():
    assert precision.native_on_cpu(torch.float32)
    assert precision.emulation_warning("fp32", torch.device("cpu")) is None
    assert precision.emulation_warning("bf16", torch.device("cuda")) is None


def test_emulated_half_precisions_warn_and_the_demo_keeps_fp32(cpu_without_half):
    for name in ("bf16", "fp16"):
        warning = precision.emulation_warning(name, torch.device("cpu"))
        assert warning is not None and f"no native {name}" in warning
    assert precision.fast_precision() == "fp32"


def test_native_bf16_is_quiet_and_the_demo_takes_it(monkeypatch):
    monkeypatch.setattr(precision, "native_on_cpu", lambda dtype: True)
    assert precision.emulation_warning("bf16", torch.device("cpu")) is None
    assert precision.fast_precision() == "bf16"
    # the device that trains decides, not the host's CPU
    assert precision.fast_precision(torch.device("cuda")) == "tf32"


@pytest.mark.slow  # a full-size model in emulated bf16: 50 s on an AVX2-only CPU
def test_segment_in_emulated_bf16_warns_once_and_still_segments(
    cpu_without_half, tmp_path, model_file, capsys
):
    image = tmp_path / "photo.png"
    rgb = np.random.default_rng(0).integers(0, 256, (40, 56, 3), np.uint8)
    Image.fromarray(rgb).save(image)
    argv = ["segment", str(image), str(image), "--model", model_file, "-o", str(tmp_path / "out"),
            "--precision", "bf16"]  # fmt: skip
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert err.count("no native bf16 arithmetic") == 1
    labels = np.asarray(Image.open(tmp_path / "out" / "photo.png"))
    assert labels.shape == (40, 56)


def test_train_in_emulated_bf16_warns_before_its_first_step(cpu_without_half, tmp_path, capsys):
    from fcnxs.data.synth import write_synthetic_voc

    root = write_synthetic_voc(tmp_path / "voc", 2, height=40, width=40, val_fraction=0)
    for jpeg in (root / "JPEGImages").iterdir():  # every step would fail: none is run
        jpeg.write_bytes(jpeg.read_bytes()[:100])
    argv = ["train", "--arch", "fcn32s", "--data", str(root), "--split", "train",
            "--out", str(tmp_path / "run"), "--precision", "bf16", "--workers", "0"]  # fmt: skip
    assert main(argv) != 0
    err = capsys.readouterr().err
    assert err.count("no native bf16 arithmetic") == 1
    assert "JPEGImages" in err.splitlines()[-1]  # the run stopped at its first sample


@pytest.mark.parametrize("name", ["fp32", "bf16", "tf32"])
def test_gpu_arithmetic_sets_tf32_only_for_tf32_and_restores_everything(name):
    """The flags are the process's, so this runs without a GPU too; on a CPU nothing moves."""
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    before = (cudnn.allow_tf32, cudnn.benchmark, cudnn.deterministic, matmul.allow_tf32)
    cudnn.benchmark = True  # a caller's autotuner: off inside, back after
    try:
        with precision.gpu_arithmetic(name, torch.device("cuda"), deterministic=True):
            assert cudnn.allow_tf32 == matmul.allow_tf32 == (name == "tf32")
            assert cudnn.deterministic and not cudnn.benchmark
        assert cudnn.benchmark
        with precision.gpu_arithmetic(name, torch.device("cpu")):
            assert cudnn.benchmark and cudnn.allow_tf32 == before[0]
    finally:
        cudnn.benchmark = before[1]
    assert (cudnn.allow_tf32, cudnn.benchmark, cudnn.deterministic, matmul.allow_tf32) == before


def test_threads_take_turns_in_gpu_arithmetic():
    """Flags are the process's: a second thread waits until the first has restored them."""
    cuda, cudnn = torch.device("cuda"), torch.backends.cudnn
    inside, seen = threading.Event(), []

    def second():
        inside.wait()
        with precision.gpu_arithmetic("fp32", cuda):
            seen.append(("second", cudnn.allow_tf32))

    thread = threading.Thread(target=second)
    thread.start()
    with precision.gpu_arithmetic("tf32", cuda):
        inside.set()
        thread.join(timeout=0.3)  # it cannot get in while this one is inside
        seen.append(("first", cudnn.allow_tf32))
    thread.join()
    assert seen == [("first", True), ("second", False)]


def test_tf32_on_a_cpu_is_refused_before_anything_is_written(
    tmp_path, model_file, fcn8s_model, capsys
):
    with pytest.raises(FcnxsError, match="tf32 exists on NVIDIA GPUs only"):
        fcnxs.Segmenter(fcn8s_model, precision="tf32")
    image = tmp_path / "photo.png"
    Image.fromarray(np.zeros((40, 56, 3), np.uint8)).save(image)
    out = tmp_path / "out"
    argv = ["segment", str(image), "--model", model_file, "-o", str(out), "--device", "cpu",
            "--precision", "tf32"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "use fp32 or bf16" in err[0]
    assert not out.exists()
