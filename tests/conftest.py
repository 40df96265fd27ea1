"""Shared fixtures. Full-size models are costly to build (134 M parameters), so the ones
tests only read are built once per session."""

from __future__ import annotations

import numpy as np
import pytest

import fcnxs


@pytest.fixture(scope="session")
def fcn8s_model() -> fcnxs.FCN:
    return fcnxs.build_model("fcn8s", num_classes=5, seed=0).eval()


@pytest.fixture(scope="session")
def model_file(tmp_path_factory, fcn8s_model) -> str:
    path = tmp_path_factory.mktemp("models") / "fcn8s.safetensors"
    fcnxs.save_model(fcn8s_model, path)
    return str(path)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
