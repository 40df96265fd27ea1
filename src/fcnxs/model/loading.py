"""Models from any weight file users hold (native, MXNet, Caffe or torchvision) or ask for
by name.

`load_model` is the one way to load: it gives the FCN a file defines, exactly, with the
outputs of the framework that wrote it. `start_model` starts a new FCN from a VGG16 or a
coarser FCN by the staged recipe. Wherever a file is taken, a name of the registry
(`fcnxs.hub.registry`) stands for its file: the hub fetches it, and an FCN is converted
once, into the cache, to the native format (the bytes `fcnxs convert` writes for that
file), so later uses make no request and no conversion.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Callable
from pathlib import Path

import torch

from fcnxs.core.errors import FcnxsError, file_error
from fcnxs.formats.detect import detect_format
from fcnxs.hub import fetch
from fcnxs.hub.registry import NAME, Entry, entries
from fcnxs.model.config import ModelConfig
from fcnxs.model.fcn import FCN, empty_model
from fcnxs.model.foreign import Weights, read_foreign_weights
from fcnxs.model.initialisation import TransferReport, build_model, transfer
from fcnxs.model.modelfile import read_model, read_model_config, save_model

log = logging.getLogger(__name__)


def registry_entry(source: str | os.PathLike) -> Entry | None:
    """The entry ``source`` names when it is a registry name rather than a file (a name has
    no slash and no suffix; a file or an MXNet checkpoint of that name wins)."""
    text = os.fspath(source)
    path = Path(text)
    if not NAME.match(text) or path.exists() or list(path.parent.glob(f"{path.name}-*.params")):
        return None
    return entries(fetch.home()).get(text)


def converted_path(entry: Entry) -> Path:
    """Where an FCN entry's native model file is kept."""
    return fetch.home() / "models" / f"{entry.name}.safetensors"


def named_file(entry: Entry, copy_from: Path | None = None) -> Path:
    """The file a model entry stands for: fetched (or taken from ``copy_from``) and checked,
    and for an FCN converted once."""
    if entry.kind == "dataset":
        raise FcnxsError(f"{entry.name}: a dataset, not a model (`fcnxs data fetch {entry.name}`)")
    target = converted_path(entry)
    if entry.kind != "vgg16" and target.exists():
        return target
    raw = fetch.fetch(entry, copy_from=copy_from)
    if entry.kind == "vgg16":
        return raw
    weights = _read(detect_format(raw), raw, None, None)
    if weights.config is not None or (weights.arch is None and entry.kind == "model"):
        return raw  # a native file already, or a user's VGG16 to start models from
    save_model(model_from_weights(weights), target)
    log.info("%s: converted to %s", entry.name, target)
    return target


def _located(source: str | os.PathLike) -> str | os.PathLike:
    """``source`` as a file to read: a path as it is, a registry name as its cached file."""
    entry = registry_entry(source)
    return source if entry is None else named_file(entry)


def read_weights(
    source: str | os.PathLike, *, epoch: int | None = None, symbol: str | os.PathLike | None = None
) -> Weights:
    """Read any supported weight file (``epoch`` and ``symbol`` apply to MXNet)."""
    source = _located(source)
    return _read(detect_format(symbol or source), source, epoch, symbol)


def _read(kind: str, source: str | os.PathLike, epoch: int | None, symbol) -> Weights:
    """`read_weights` of a file whose format is known."""
    if kind != "native":
        return read_foreign_weights(kind, source, epoch=epoch, symbol=symbol)
    model = read_model(source)
    c = model.config
    tensors = dict(model.state_dict())
    return Weights(Path(source), "fcnxs model", tensors, c.preprocessing, c.semantics, config=c)


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
    on_foreign: Callable[[Weights], None] | None = None,
) -> FCN:
    """An FCN from any supported file, giving the outputs of the framework that wrote it.

    ``arch`` and ``num_classes``, when given, must agree with what the file defines
    (``arch`` decides only where the file cannot tell, which never happens for an FCN).
    ``on_foreign`` hears of another framework's weights (what was skipped or assumed) once
    the model is built from them. The file's format is found once.
    """
    source = _located(source)
    kind = detect_format(symbol or source)
    if symbol is None and kind == "native":
        model = read_model(source, device)
        _check_agrees(Path(source), model.config.arch, model.config.num_classes, arch, num_classes)
        return model
    weights = _read(kind, source, epoch, symbol)
    model = model_from_weights(weights, arch=arch, num_classes=num_classes).to(device)
    if on_foreign is not None:
        on_foreign(weights)
    return model


def model_config(
    source: str | os.PathLike,
    *,
    epoch: int | None = None,
    on_foreign: Callable[[Weights], None] | None = None,
) -> ModelConfig:
    """The configuration a model file defines; a native file's is read without its weights."""
    source = _located(source)
    kind = detect_format(source)
    if kind == "native":
        return read_model_config(source)
    weights = _read(kind, source, epoch, None)
    config = model_from_weights(weights).config
    if on_foreign is not None:
        on_foreign(weights)
    return config


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
        raise file_error(path, f"holds an {arch}, but `arch` says {want_arch}")
    if want_classes is not None and want_classes != num_classes:
        raise file_error(
            path, f"defines {num_classes} classes, but `num_classes` says {want_classes}"
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
