"""Weight files of other frameworks (MXNet, Caffe, torchvision) as FCN weights.

The readers in `fcnxs.formats` return a file's arrays under its own names; this module
renames them to the FCN's layers and adds what the framework implies: its preprocessing
and its semantics (pool rounding, upsampler padding, crop offsets; docs/design.md §3).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import torch

from fcnxs.core.errors import file_error
from fcnxs.formats.caffe import read_caffe_blobs
from fcnxs.formats.mxnet import find_checkpoint, read_mxnet_params, read_mxnet_symbol
from fcnxs.formats.torchvision import read_torch_state_dict
from fcnxs.model.architecture import CROP_OF, CROPS, LAYER_NAMES, TRUNK, arch_of, upsampler_names
from fcnxs.model.config import (
    CAFFE_PREPROCESSING,
    CAFFE_SEMANTICS,
    MXNET_PREPROCESSING,
    MXNET_SEMANTICS,
    TORCHVISION_PREPROCESSING,
    ModelConfig,
    Preprocessing,
    Semantics,
)
from fcnxs.model.geometry import derive_crop_offsets

CAFFE_VGG16_PREPROCESSING = Preprocessing("BGR", 1.0, (103.939, 116.779, 123.68))
"""The VGG16 caffemodel's own mean (BGR), which differs from the FCN reference models'."""
CAFFE_NAMES = {
    "score_fr": "score", "upscore2": "score2", "upscore_pool4": "score4",
    "upscore8": "bigscore", "upscore16": "bigscore", "upscore": "bigscore",
}  # fmt: skip
VGG_CLASSIFIER = "fc8"


VGG16_CONVS = tuple(layer.name for layer in TRUNK if layer.name.startswith("conv"))
TORCHVISION_CLASSIFIER = {"0": "fc6", "3": "fc7", "6": VGG_CLASSIFIER}
"""torchvision's classifier indices: the fully connected layers FCN turns into convolutions."""


@dataclass
class Weights:
    """A weight file's tensors under fcnxs names, and what its framework implies."""

    path: Path
    origin: str
    tensors: dict[str, torch.Tensor]
    preprocessing: Preprocessing
    semantics: Semantics
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    config: ModelConfig | None = None

    @property
    def arch(self) -> str | None:
        return arch_of({name.rsplit(".", 1)[0] for name in self.tensors})

    @property
    def num_classes(self) -> int | None:
        score = self.tensors.get("score.weight")
        return int(score.shape[0]) if score is not None else None


def read_foreign_weights(kind: str, source, *, epoch: int | None = None, symbol=None) -> Weights:
    """The weights of an MXNet, Caffe or torchvision file (``kind`` from `detect_format`)."""
    if kind == "mxnet":
        return _mxnet_weights(source, epoch, symbol)
    if kind == "caffe":
        return _caffe_weights(Path(source))
    return _torchvision_weights(Path(source))


def _mxnet_weights(source, epoch, symbol) -> Weights:
    checkpoint = find_checkpoint(source, epoch)
    symbol_path = Path(symbol) if symbol else checkpoint.symbol
    tensors, skipped = {}, []
    for key, array in read_mxnet_params(checkpoint.params).items():
        name = key.split(":", 1)[1] if key.startswith(("arg:", "aux:")) else key
        layer, _, kind = name.rpartition("_")
        if name in ("data", "softmax_label") or layer == VGG_CLASSIFIER:
            skipped.append(key)
            continue
        if layer not in LAYER_NAMES or kind not in ("weight", "bias"):
            raise file_error(checkpoint.params, f"unknown array {key!r} (not a VGG16/FCN layer)")
        tensors[f"{layer}.{kind}"] = array
    weights = Weights(
        checkpoint.params,
        "MXNet checkpoint",
        tensors,
        MXNET_PREPROCESSING,
        MXNET_SEMANTICS,
        skipped,
    )
    if symbol_path is None:
        weights.notes.append(
            "no -symbol.json beside the .params: assuming MXNet fcn-xs 2016+ semantics "
            "(floor pooling, upsampler output padding stride-1, derived crop offsets)"
        )
        return weights
    info = read_mxnet_symbol(symbol_path)
    unknown = sorted(set(info.layers) - LAYER_NAMES - {VGG_CLASSIFIER})
    if unknown:
        raise file_error(symbol_path, f"unknown layer {unknown[0]!r} (not a VGG16/FCN layer)")
    arch = weights.arch
    if arch_of(set(info.layers)) != arch:
        raise file_error(
            symbol_path,
            f"describes {arch_of(set(info.layers)) or 'a VGG16'}, but "
            f"{checkpoint.params} holds {arch or 'a VGG16'}",
        )
    crops = {}
    for layer, offset in info.offsets_of_cropped.items():
        if layer not in CROP_OF:
            raise file_error(symbol_path, f"crops an unexpected layer {layer!r}")
        crops[CROP_OF[layer]] = offset
    offsets = None
    if arch is not None:
        if set(crops) != set(CROPS[arch]):
            raise file_error(symbol_path, f"lacks the crops of an {arch} ({CROPS[arch]})")
        if crops != derive_crop_offsets(arch):
            offsets = crops
    weights.semantics = Semantics(
        pool_rounding=info.pool_rounding,
        upsample_output_padding=info.output_padding,
        crop_offsets=offsets,
    )
    weights.notes.append(f"semantics from {symbol_path}")
    return weights


def _caffe_weights(path: Path) -> Weights:
    tensors, skipped, scales = {}, [], {}
    for name, blobs in read_caffe_blobs(path).items():
        if name in ("scale_pool4", "scale_pool3"):
            values = blobs[0].flatten().unique()
            if values.numel() != 1:
                raise file_error(
                    path, f"{name} scales channels unevenly; only one factor is supported"
                )
            scales[name.removeprefix("scale_") + "_scale"] = float(values[0])
            continue
        if name == VGG_CLASSIFIER:
            skipped.append(name)
            continue
        target = CAFFE_NAMES.get(name, name)
        if target not in LAYER_NAMES or len(blobs) > 2:
            raise file_error(path, f"unknown layer {name!r} (not a VGG16/FCN layer)")
        tensors[f"{target}.weight"] = blobs[0]
        if len(blobs) == 2:
            tensors[f"{target}.bias"] = blobs[1]
    semantics = dataclasses.replace(CAFFE_SEMANTICS, **scales)
    weights = Weights(path, "Caffe model", tensors, CAFFE_PREPROCESSING, semantics, skipped)
    if weights.arch is None:
        weights.preprocessing = CAFFE_VGG16_PREPROCESSING
    if {f"{n}.bias" for n in upsampler_names("fcn8s")} & set(tensors):
        raise file_error(path, "an upsampling layer has a bias; FCN upsamplers have none")
    return weights


def _torchvision_weights(path: Path) -> Weights:
    tensors = _vgg16_names(read_torch_state_dict(path), path)
    skipped = [k for k in tensors if k.startswith(VGG_CLASSIFIER + ".")]
    for k in skipped:
        del tensors[k]
    return Weights(
        path, "torchvision VGG16", tensors, TORCHVISION_PREPROCESSING, MXNET_SEMANTICS, skipped
    )


def _vgg16_names(state: dict[str, torch.Tensor], path) -> dict[str, torch.Tensor]:
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
        table = (
            names if part == "features" else TORCHVISION_CLASSIFIER if part == "classifier" else {}
        )
        if index not in table or kind not in ("weight", "bias"):
            raise file_error(path, f"unexpected tensor {key!r} for a torchvision VGG16")
        out[f"{table[index]}.{kind}"] = tensor
    return out
