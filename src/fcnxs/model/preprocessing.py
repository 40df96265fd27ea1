"""Turn an image into the network's input tensor, as the model's configuration says."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from fcnxs.core.errors import FcnxsError
from fcnxs.model.config import Preprocessing


def as_rgb_array(image: Image.Image | np.ndarray) -> np.ndarray:
    """An H×W×3 uint8 RGB array from a PIL image (any mode) or an H×W[×3] uint8 array."""
    if isinstance(image, Image.Image):
        if image.mode != "RGB":
            image = image.convert("RGB")
        return np.array(image)
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise FcnxsError(f"image arrays must be uint8, got {image.dtype}")
        if image.ndim == 2:
            return np.repeat(image[:, :, None], 3, axis=2)
        if image.ndim == 3 and image.shape[2] == 3:
            return image
        raise FcnxsError(f"image arrays must be H×W or H×W×3, got shape {image.shape}")
    raise FcnxsError(f"expected a PIL image or a numpy array, got {type(image).__name__}")


def normalise(pixels: torch.Tensor, pre: Preprocessing) -> torch.Tensor:
    """(N, 3, H, W) RGB values in 0..255 → the network's input, in place where possible."""
    if pre.channel_order == "BGR":
        pixels = pixels.flip(-3)
    mean = torch.tensor(pre.mean, dtype=pixels.dtype, device=pixels.device).view(3, 1, 1)
    std = torch.tensor(pre.std, dtype=pixels.dtype, device=pixels.device).view(3, 1, 1)
    if pre.scale != 1.0:
        pixels = pixels * pre.scale
    pixels = pixels - mean
    if any(s != 1.0 for s in pre.std):
        pixels = pixels / std
    return pixels


def to_input(image: Image.Image | np.ndarray, pre: Preprocessing) -> torch.Tensor:
    """A (1, 3, H, W) float32 input tensor for one image."""
    rgb = as_rgb_array(image)
    pixels = torch.from_numpy(rgb.astype(np.float32)).permute(2, 0, 1)
    return normalise(pixels.unsqueeze(0), pre)
