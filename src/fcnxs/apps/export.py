"""ONNX export: the model with dynamic batch, height and width, its preprocessing and
classes in the ONNX metadata, checked against PyTorch with ONNX Runtime."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fcnxs.core.atomic import atomic_path
from fcnxs.core.errors import FcnxsError
from fcnxs.inference.segmenter import Segmenter
from fcnxs.model.fcn import FCN, evaluating
from fcnxs.model.geometry import padded_length
from fcnxs.model.preprocessing import normalise

OPSET = 17
OPSETS = (10, 20)
"""The opsets the export takes: 10 is the first whose Slice takes the crops' dynamic
bounds, 20 the last of PyTorch's TorchScript exporter."""
PROTOBUF_LIMIT = 2_000_000_000


class _Exportable(nn.Module):
    def __init__(self, model: FCN) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_valid(x)


def min_side(model: FCN) -> int:
    """The smallest side the exported graph takes (it has no Python to pad smaller ones)."""
    return next(
        n
        for n in range(1, 512)
        if all(padded_length(model.config, m) == m for m in range(n, n + 64))
    )


def external_data_path(path: str | os.PathLike) -> Path:
    """Where the weights of a model over protobuf's 2 GB limit go, beside the graph."""
    return Path(path).with_name(Path(path).name + ".data")


def export_onnx(model: FCN, path: str | os.PathLike, opset: int = OPSET) -> Path:
    """Write ``model`` as ONNX: input ``image`` (N, 3, H, W) already preprocessed, output
    ``scores`` (N, C, H, W). Metadata ``fcnxs_config`` holds the preprocessing (channel
    order, scale, mean, std), class names and colours; ``min_side`` the smallest H or W."""
    import onnx

    path = Path(path)
    if model.device.type != "cpu":  # a copy: the caller's model stays where it is
        model = copy.deepcopy(model).cpu()
    side = max(min_side(model), 64)
    example = torch.zeros(1, 3, side + 37, side + 53)
    big = sum(p.numel() * 4 for p in model.parameters()) > PROTOBUF_LIMIT
    with atomic_path(path) as tmp, evaluating(model):
        torch.onnx.export(
            _Exportable(model),
            (example,),
            str(tmp),
            dynamo=False,
            opset_version=opset,
            input_names=["image"],
            output_names=["scores"],
            dynamic_axes={
                "image": {0: "batch", 2: "height", 3: "width"},
                "scores": {0: "batch", 2: "height", 3: "width"},
            },
        )
        proto = onnx.load(str(tmp))
        for key, value in {
            "fcnxs_config": model.config.to_json(),
            "min_side": str(min_side(model)),
            "preprocessing": "image = (RGB or BGR pixels * scale - mean) / std; see fcnxs_config",
        }.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        if big:
            location = external_data_path(path).name
            onnx.save(proto, str(tmp), save_as_external_data=True, location=location)
        else:
            onnx.save(proto, str(tmp))
    return path


def check_onnx(model: FCN, path: str | os.PathLike, sizes: list[tuple[int, int]]) -> float | None:
    """The largest |ONNX − fcnxs| over random images of ``sizes``, relative to the largest
    |logit|, fcnxs's scores being those ``segment`` computes (the one engine, a
    `Segmenter`); None when every logit is zero (a fresh model's): then agreement would
    prove nothing."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    segmenter = Segmenter(model, tile=None)
    worst, largest = 0.0, 0.0
    rng = np.random.default_rng(0)
    for h, w in sizes:
        rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        pixels = torch.from_numpy(rgb).permute(2, 0, 1)[None].float()
        image = normalise(pixels, model.config.preprocessing).numpy()
        (theirs,) = session.run(["scores"], {"image": image})
        ours = segmenter.scores(rgb)[None].numpy()
        if theirs.shape != ours.shape:
            raise FcnxsError(f"{path}: ONNX output {theirs.shape} for input {h}×{w}")
        scale = float(np.abs(ours).max())
        largest = max(largest, scale)
        worst = max(worst, float(np.abs(theirs - ours).max()) / max(scale, 1e-12))
    return worst if largest > 0 else None


def read_onnx_config(path: str | os.PathLike) -> dict:
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return json.loads({p.key: p.value for p in proto.metadata_props}["fcnxs_config"])
