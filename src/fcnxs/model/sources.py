"""Models from any weight file users hold: native, MXNet, Caffe or torchvision.

Each reader in `fcnxs.formats` returns tensors under fcnxs names; this module adds what
the file's framework implies (preprocessing, semantics), then either loads an FCN exactly
(`load_model`) or starts a new one from it by the staged recipe (`start_model`).
"""

from __future__ import annotations

import dataclasses
import math
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import torch

from fcnxs.core.errors import file_error
from fcnxs.formats.caffe import read_caffe_blobs
from fcnxs.formats.mxnet import LIST_MAGIC, find_checkpoint, read_mxnet_params, read_mxnet_symbol
from fcnxs.formats.torchvision import read_torch_state_dict, vgg16_to_fcnxs_names
from fcnxs.model import modelfile
from fcnxs.model.architecture import LAYER_NAMES, arch_of, upsampler_names
from fcnxs.model.config import (
    CAFFE_PREPROCESSING,
    CAFFE_SEMANTICS,
    CROPS,
    MXNET_PREPROCESSING,
    MXNET_SEMANTICS,
    TORCHVISION_PREPROCESSING,
    ModelConfig,
    Preprocessing,
    Semantics,
)
from fcnxs.model.fcn import FCN, empty_model
from fcnxs.model.geometry import derive_crop_offsets
from fcnxs.model.initialisation import TransferReport, build_model, transfer

CAFFE_VGG16_PREPROCESSING = Preprocessing("BGR", 1.0, (103.939, 116.779, 123.68))
"""The VGG16 caffemodel's own mean (BGR), which differs from the FCN reference models'."""
CAFFE_NAMES = {
    "score_fr": "score", "upscore2": "score2", "upscore_pool4": "score4",
    "upscore8": "bigscore", "upscore16": "bigscore", "upscore": "bigscore",
}  # fmt: skip
VGG_CLASSIFIER = "fc8"


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


def detect_format(source: str | os.PathLike) -> str:
    """'native', 'mxnet', 'caffe' or 'torch', from the name or, failing that, the content."""
    path = Path(source)
    name = path.name.lower()
    if path.is_dir():
        raise file_error(path, "is a directory, not a model file")
    if name.endswith(".safetensors"):
        return "native"
    if name.endswith((".params", "-symbol.json")):
        return "mxnet"
    if name.endswith(".caffemodel"):
        return "caffe"
    if name.endswith((".pth", ".pt")):
        return "torch"
    if not path.exists():
        if list(path.parent.glob(f"{path.name}-*.params")):
            return "mxnet"  # a checkpoint PREFIX
        raise file_error(path, "no such file (nor an MXNet checkpoint with this prefix)")
    with open(path, "rb") as f:
        head = f.read(16)
    if len(head) >= 8 and struct.unpack("<Q", head[:8])[0] == LIST_MAGIC:
        return "mxnet"
    if head.startswith(b"PK\x03\x04"):
        return "torch"
    if len(head) >= 9 and head[8:9] == b"{":
        return "native"
    raise file_error(
        path,
        "unrecognised model format (expected .safetensors, an MXNet .params or "
        "-symbol.json, a .caffemodel, or a torchvision .pth)",
    )


def read_weights(
    source: str | os.PathLike, *, epoch: int | None = None, symbol: str | os.PathLike | None = None
) -> Weights:
    """Read any supported weight file (``epoch`` and ``symbol`` apply to MXNet)."""
    kind = detect_format(symbol or source) if symbol else detect_format(source)
    if kind == "native":
        model = modelfile.load_model(source)
        c = model.config
        tensors = dict(model.state_dict())
        return Weights(Path(source), "fcnxs model", tensors, c.preprocessing, c.semantics, config=c)
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
    offsets = None
    if arch is not None:
        if set(info.crop_offsets) != set(CROPS[arch]):
            raise file_error(symbol_path, f"lacks the crops of an {arch} ({CROPS[arch]})")
        if info.crop_offsets != derive_crop_offsets(arch):
            offsets = dict(info.crop_offsets)
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
    tensors = vgg16_to_fcnxs_names(read_torch_state_dict(path), path)
    skipped = [k for k in tensors if k.startswith(VGG_CLASSIFIER + ".")]
    for k in skipped:
        del tensors[k]
    return Weights(
        path, "torchvision VGG16", tensors, TORCHVISION_PREPROCESSING, MXNET_SEMANTICS, skipped
    )


def _conform(tensors: dict[str, torch.Tensor], model: FCN) -> dict[str, torch.Tensor]:
    """Reshape tensors stored in another layout of the same size (fc6 as a matrix, Caffe's
    4-D biases) to the model's shapes; leave the rest for the caller's checks."""
    out = {}
    for name, shape in ((k, v.shape) for k, v in model.state_dict().items()):
        tensor = tensors.get(name)
        if tensor is None:
            continue
        if tensor.shape != shape and tensor.numel() == math.prod(shape):
            tensor = tensor.reshape(shape)
        out[name] = tensor.float()
    return out


def load_model(
    source: str | os.PathLike,
    *,
    arch: str | None = None,
    num_classes: int | None = None,
    epoch: int | None = None,
    symbol: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
) -> FCN:
    """An FCN from any supported file, giving the outputs of the framework that wrote it.

    ``arch`` and ``num_classes``, when given, must agree with what the file defines
    (``arch`` decides only where the file cannot tell, which never happens for an FCN).
    """
    if symbol is None and detect_format(source) == "native":
        model = modelfile.load_model(source, device)
        _check_agrees(Path(source), model.config.arch, model.config.num_classes, arch, num_classes)
        return model
    weights = read_weights(source, epoch=epoch, symbol=symbol)
    return model_from_weights(weights, arch=arch, num_classes=num_classes).to(device)


def model_from_weights(
    weights: Weights, *, arch: str | None = None, num_classes: int | None = None
) -> FCN:
    """The FCN that ``weights`` define, exactly; every gap or misfit is an error."""
    if weights.config is not None:
        c = weights.config
        _check_agrees(weights.path, c.arch, c.num_classes, arch, num_classes)
        model = empty_model(c)
        model.load_state_dict(weights.tensors)
        return model.eval()
    if weights.arch is None:
        raise file_error(
            weights.path,
            "is a VGG16 without an FCN head; start a model from it with "
            f"`fcnxs create --arch fcn32s --from {weights.path}`",
        )
    _check_agrees(weights.path, weights.arch, weights.num_classes, arch, num_classes)
    try:
        config = ModelConfig(
            arch=weights.arch,
            num_classes=weights.num_classes,
            preprocessing=weights.preprocessing,
            semantics=weights.semantics,
            provenance={"format": weights.origin, "source": str(weights.path)},
        )
    except ValueError as exc:
        raise file_error(weights.path, str(exc)) from None
    model = empty_model(config)
    state = _conform(weights.tensors, model)
    missing = [k for k in model.state_dict() if k not in state]
    if missing:
        raise file_error(weights.path, f"lacks {', '.join(missing[:4])} of an {weights.arch}")
    for name, param in model.state_dict().items():
        if state[name].shape != param.shape:
            raise file_error(
                weights.path,
                f"{name} has shape {list(state[name].shape)}, expected {list(param.shape)}",
            )
    model.load_state_dict(state)
    return model.eval()


def _check_agrees(path: Path, arch: str, num_classes: int, want_arch, want_classes) -> None:
    if want_arch is not None and want_arch != arch:
        raise file_error(path, f"holds an {arch}, but --arch says {want_arch}")
    if want_classes is not None and want_classes != num_classes:
        raise file_error(
            path, f"defines {num_classes} classes, but --num-classes says {want_classes}"
        )


def start_model(
    arch: str,
    source: str | os.PathLike,
    *,
    num_classes: int | None = None,
    seed: int | None = None,
    epoch: int | None = None,
) -> tuple[FCN, TransferReport]:
    """A new ``arch`` started from a VGG16 or a coarser FCN in any format (staged recipe).

    The new model keeps the source's preprocessing (its trunk was trained on that input)
    and, for an FCN source, its class names, colours and semantics.
    """
    weights = read_weights(source, epoch=epoch)
    base = weights.config
    classes = num_classes or weights.num_classes or 21
    semantics = dataclasses.replace(weights.semantics, crop_offsets=None)
    if base is not None and classes == base.num_classes:
        config = base.replace(arch=arch, semantics=semantics)
    else:
        try:
            config = ModelConfig(
                arch=arch,
                num_classes=classes,
                semantics=semantics,
                preprocessing=weights.preprocessing,
            )
        except ValueError as exc:
            raise file_error(weights.path, str(exc)) from None
    config = config.replace(
        provenance={"initialised_from": str(weights.path), "format": weights.origin}
    )
    model = build_model(config, seed=seed)
    report = transfer(model, _conform(weights.tensors, model), origin=str(weights.path))
    report.ignored = sorted([*report.ignored, *weights.skipped])
    report.notes.extend(weights.notes)
    return model, report
