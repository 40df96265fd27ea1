"""Shared fixtures. Full-size models are costly to build (134 M parameters), so the ones
tests only read are built once per session."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

import fcnxs
from fcnxs.cli import main
from fcnxs.core import precision


@pytest.fixture(scope="session")
def fcn8s_model() -> fcnxs.FCN:
    """A 5-class FCN-8s with every layer random (a fresh model's zero score layers would
    make all its scores 0, and comparisons of scores meaningless)."""
    model = fcnxs.build_model("fcn8s", num_classes=5, seed=0).eval()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name in ("score", "score_pool4", "score_pool3"):
            layer = model.get_submodule(name)
            layer.weight.normal_(0, 0.02, generator=generator)
            layer.bias.normal_(0, 0.1, generator=generator)
        for name in ("score2", "score4", "bigscore"):
            weight = model.get_submodule(name).weight
            weight.add_(torch.randn(weight.shape, generator=generator) * 0.05)
    return model


@pytest.fixture(scope="session")
def model_file(tmp_path_factory, fcn8s_model) -> str:
    path = tmp_path_factory.mktemp("models") / "fcn8s.safetensors"
    fcnxs.save_model(fcn8s_model, path)
    return str(path)


@pytest.fixture
def cpu_without_half(monkeypatch):
    """Make this CPU look like an AVX2-only one, whatever it is: fp32 only is native."""
    monkeypatch.setattr(precision, "native_on_cpu", lambda dtype: dtype == torch.float32)


@pytest.fixture
def cli(capsys):
    """Run ``fcnxs ARGV`` in-process: (exit status, stdout, stderr lines)."""

    def run(*argv) -> tuple[int, str, list[str]]:
        try:
            status = main([str(a) for a in argv])
        except SystemExit as exc:  # argparse
            status = exc.code
        out, err = capsys.readouterr()
        return status, out, err.strip().splitlines()

    return run


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _remove_tmp_path_after_each_test(tmp_path):
    """Tests write model files and checkpoints of gigabytes; pytest would keep them all
    until the session ends (tens of GB at peak). Each test's folder goes when it ends."""
    yield
    shutil.rmtree(tmp_path, ignore_errors=True)
