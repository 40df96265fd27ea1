"""MXNet checkpoints, read without MXNet: ``PREFIX-symbol.json`` and ``PREFIX-EPOCH.params``.

The ``.params`` file is an NDArray list (docs/design.md §3): a header, N array records in one of
four layouts (legacy 2015–2017, V1, V2, V3), then the names. The symbol is a JSON graph;
from it we take the architecture, the crop offsets, the pool rounding and the upsamplers'
output padding, because the 2015 symbols and the later ones differ in exactly these.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from fcnxs.core.errors import FcnxsError, file_error, require_file
from fcnxs.formats.binary import BinaryReader

LIST_MAGIC = 0x112
V1_MAGIC, V2_MAGIC, V3_MAGIC = 0xF993FAC8, 0xF993FAC9, 0xF993FACA
DTYPES = {
    0: torch.float32, 1: torch.float64, 2: torch.float16, 3: torch.uint8, 4: torch.int32,
    5: torch.int8, 6: torch.int64, 12: torch.bfloat16,
}  # fmt: skip
MAX_NDIM = 32


def _read_record(r: BinaryReader, index: int) -> torch.Tensor | None:
    what = f"array {index}"
    first = r.one("<I", what)
    if first in (V1_MAGIC, V2_MAGIC, V3_MAGIC):
        if first != V1_MAGIC:
            storage = r.one("<i", what)
            if storage != 0:
                raise r.error(f"{what} is sparse (storage type {storage}); only dense arrays")
        ndim = r.one("<i", what)
        if ndim < 0 and first == V3_MAGIC:
            return None  # an array of unknown shape: holds nothing
        if not 0 <= ndim <= MAX_NDIM:
            raise r.error(f"{what} has an impossible number of dimensions ({ndim})")
        shape = r.unpack(f"<{ndim}q", what)
        if ndim == 0 and first != V3_MAGIC:
            return None  # an empty ("none") array
    else:  # legacy: no magic; the first word was the number of dimensions
        ndim = first
        if ndim > MAX_NDIM:
            raise r.error(f"{what}: not an NDArray record (bad magic or dimension count {ndim})")
        if ndim == 0:
            return None
        shape = r.unpack(f"<{ndim}I", what)
    r.unpack("<ii", what)  # device type and id: where it was saved from, irrelevant here
    code = r.one("<i", what)
    if code not in DTYPES:
        raise r.error(f"{what} has an unsupported data type code {code}")
    dtype = DTYPES[code]
    if any(d < 0 for d in shape):
        raise r.error(f"{what} has a negative dimension {shape}")
    count = 1
    for d in shape:
        count *= d
    raw = r.take(count * dtype.itemsize, f"{what} data")
    return (
        torch.frombuffer(bytearray(raw), dtype=dtype).reshape(shape)
        if count
        else torch.zeros(shape, dtype=dtype)
    )


def read_mxnet_params(path: str | Path) -> dict[str, torch.Tensor]:
    """The arrays of an MXNet ``.params`` file by name (``arg:``/``aux:`` prefixes kept)."""
    path = Path(path)
    data = _read_bytes(path)
    r = BinaryReader(data, path)
    if len(data) < 24 or r.one("<Q", "header") != LIST_MAGIC:
        raise file_error(path, "not an MXNet .params file (no NDArray list magic 0x112)")
    r.one("<Q", "header")
    count = r.one("<Q", "header")
    if count > r.remaining // 4:
        raise r.error(f"claims {count} arrays, more than the file can hold")
    arrays = [_read_record(r, i) for i in range(count)]
    num_names = r.one("<Q", "name count")
    if num_names not in (0, count):
        raise r.error(f"has {count} arrays but {num_names} names")
    names = []
    for i in range(num_names):
        length = r.one("<Q", f"name {i}")
        try:
            names.append(bytes(r.take(length, f"name {i}")).decode("utf-8"))
        except UnicodeDecodeError:
            raise r.error(f"name {i} is not UTF-8") from None
    if r.remaining:
        raise r.error(f"{r.remaining} unexpected bytes after the last name")
    if not names:
        raise file_error(path, "holds unnamed arrays; cannot tell which layer each belongs to")
    return {name: a for name, a in zip(names, arrays, strict=True) if a is not None}


def _read_bytes(path: Path) -> bytes:
    require_file(path, "an MXNet file")
    return path.read_bytes()


@dataclass(frozen=True)
class SymbolInfo:
    """What an FCN's MXNet symbol says beyond its weights."""

    layers: dict[str, str]
    """Name → op of every node with parameters (Convolution, Deconvolution)."""
    offsets_of_cropped: dict[str, int]
    """Each crop's offset, keyed by the layer it cuts (score_pool4, score_pool3, bigscore),
    which names a role in every version of the symbols; a model's `crop_offsets` are keyed
    by the crops themselves (`fcnxs.model.foreign` maps one to the other)."""
    pool_rounding: str
    output_padding: bool
    num_classes: int | None


def _tuple(text: str | None) -> tuple[int, ...]:
    return tuple(int(v) for v in re.findall(r"-?\d+", text or ""))


def read_mxnet_symbol(path: str | Path) -> SymbolInfo:
    """Parse ``PREFIX-symbol.json`` (any version of the format: param/attr/attrs)."""
    path = Path(path)
    try:
        graph = json.loads(_read_bytes(path))
        nodes = graph["nodes"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
        raise file_error(path, "not an MXNet symbol file (JSON with a 'nodes' list)") from None

    def attrs(node: dict) -> dict:
        return node.get("attrs") or node.get("attr") or node.get("param") or {}

    layers, offsets, roundings, paddings = {}, {}, set(), set()
    num_classes = None
    for node in nodes:
        op, name, a = node.get("op"), node.get("name"), attrs(node)
        if op in ("Convolution", "Deconvolution"):
            layers[name] = op
        if op == "Pooling":
            roundings.add("ceil" if a.get("pooling_convention") == "full" else "floor")
        if op == "Deconvolution":
            if a.get("no_bias", "True").lower() in ("false", "0"):
                raise file_error(path, f"upsampler {name} has a bias; FCN upsamplers have none")
            stride, adj = _tuple(a.get("stride")), _tuple(a.get("adj"))
            if adj and any(v not in (0, s - 1) for v, s in zip(adj, stride, strict=False)):
                raise file_error(path, f"upsampler {name} has unsupported adj {adj}")
            paddings.add(bool(adj) and adj[0] == stride[0] - 1 and adj[0] > 0)
            num_classes = int(a["num_filter"]) if "num_filter" in a else num_classes
        if op == "Crop":
            source = nodes[node["inputs"][0][0]].get("name")
            if a.get("center_crop", "False").lower() in ("true", "1"):
                raise file_error(path, f"crop {name} is a centre crop; FCN crops use offsets")
            offset = _tuple(a.get("offset")) or (0, 0)
            if len(set(offset)) != 1:
                raise file_error(path, f"crop {name} has different offsets per axis {offset}")
            offsets[source] = offset[0]
    if len(roundings) > 1 or len(paddings) > 1:
        raise file_error(path, "mixes pooling conventions or upsampler paddings")
    return SymbolInfo(
        layers=layers,
        offsets_of_cropped=offsets,
        pool_rounding=roundings.pop() if roundings else "floor",
        output_padding=paddings.pop() if paddings else True,
        num_classes=num_classes,
    )


EPOCH_FILE = re.compile(r"^(?P<prefix>.+)-(?P<epoch>\d{4})\.params$")


@dataclass(frozen=True)
class Checkpoint:
    params: Path
    symbol: Path | None


def find_checkpoint(source: str | Path, epoch: int | None = None) -> Checkpoint:
    """Resolve what a user named (the .params, the -symbol.json, or PREFIX) to both files."""
    source = Path(source)
    name = source.name
    if m := EPOCH_FILE.match(name):
        if epoch is not None and int(m["epoch"]) != epoch:
            raise FcnxsError(f"{source}: is epoch {int(m['epoch'])}, but `epoch` says {epoch}")
        symbol = source.with_name(f"{m['prefix']}-symbol.json")
        return Checkpoint(source, symbol if symbol.exists() else None)
    if name.endswith(".params"):
        return Checkpoint(source, None)
    prefix = source.with_name(name.removesuffix("-symbol.json"))
    symbol = prefix.with_name(prefix.name + "-symbol.json")
    if epoch is not None:
        params = prefix.with_name(f"{prefix.name}-{epoch:04d}.params")
        if not params.exists():
            raise file_error(params, "no such file (the checkpoint of `epoch`)")
    else:
        candidates = sorted(prefix.parent.glob(f"{prefix.name}-[0-9][0-9][0-9][0-9].params"))
        if not candidates:
            raise FcnxsError(f"{source}: no {prefix.name}-NNNN.params beside it")
        params = candidates[-1]
    return Checkpoint(params, symbol if symbol.exists() else None)
