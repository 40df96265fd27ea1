"""Helpers shared by the tests (importable as ``helpers``)."""

from __future__ import annotations

import numpy as np
import torch

import fcnxs


def random_image(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    return rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def meta_model(arch: str, **config_fields) -> fcnxs.FCN:
    """A model on the meta device: shapes without arithmetic."""
    with torch.device("meta"):
        return fcnxs.FCN(fcnxs.ModelConfig(arch=arch, **config_fields))
