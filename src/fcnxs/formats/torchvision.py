"""torchvision's VGG16 state dict (``vgg16-397923af.pth``), loaded without unpickling code.

Its ``features.N`` / ``classifier.N`` names are mapped to the FCN's by the model layer
(`fcnxs.model.foreign`), which knows the trunk."""

from __future__ import annotations

from pathlib import Path

import torch

from fcnxs.core.errors import file_error
from fcnxs.formats.torch_file import load_weights_only


def read_torch_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A ``torch.save``d dict of tensors, through the ``weights_only`` unpickler."""
    state = load_weights_only(path, "a PyTorch state dict")
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise file_error(path, "is not a state dict (a mapping of names to tensors)")
    return {k.removeprefix("module."): v for k, v in state.items()}
