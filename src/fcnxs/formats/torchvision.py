"""torchvision's VGG16 state dict (``vgg16-397923af.pth``), loaded without unpickling code."""

from __future__ import annotations

from pathlib import Path

import torch

from fcnxs.core.errors import file_error
from fcnxs.formats.torch_file import load_weights_only

VGG16_CONVS = (
    "conv1_1",
    "conv1_2",
    "conv2_1",
    "conv2_2",
    "conv3_1",
    "conv3_2",
    "conv3_3",
    "conv4_1",
    "conv4_2",
    "conv4_3",
    "conv5_1",
    "conv5_2",
    "conv5_3",
)
CLASSIFIER = {"0": "fc6", "3": "fc7", "6": "fc8"}


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


def vgg16_to_fcnxs_names(state: dict[str, torch.Tensor], path) -> dict[str, torch.Tensor]:
    """torchvision's ``features.N`` / ``classifier.N`` keys → conv1_1 … fc8."""
    if any("running_mean" in k for k in state):
        raise file_error(path, "is a batch-normalised VGG (vgg16_bn), not the FCN's VGG16 trunk")
    feature_ids = sorted({int(k.split(".")[1]) for k in state if k.startswith("features.")})
    if len(feature_ids) != len(VGG16_CONVS):
        raise file_error(path, f"has {len(feature_ids)} feature convolutions, VGG16 has 13")
    names = {str(i): conv for i, conv in zip(feature_ids, VGG16_CONVS, strict=True)}
    out = {}
    for key, tensor in state.items():
        part, index, kind = [*key.split("."), "", ""][:3]
        table = names if part == "features" else CLASSIFIER if part == "classifier" else {}
        if index not in table or kind not in ("weight", "bias"):
            raise file_error(path, f"unexpected tensor {key!r} for a torchvision VGG16")
        out[f"{table[index]}.{kind}"] = tensor
    return out
