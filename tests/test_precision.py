"""bf16 and fp16 are used where asked, and said to be slow where the CPU only emulates them."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from fcnxs.cli import main
from fcnxs.core import precision


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
    # the device that trains decides, not the host's CPU: fp32 on a GPU (bf16 diverged there)
    assert precision.fast_precision(torch.device("cuda")) == "fp32"


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
