"""Which framework wrote a weight file: from its name, or failing that its first bytes."""

from __future__ import annotations

import os
import struct
from pathlib import Path

from fcnxs.core.errors import file_error
from fcnxs.formats.mxnet import LIST_MAGIC


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
        raise file_error(
            path,
            "no such file (nor an MXNet checkpoint with this prefix, nor a registry name: "
            "`fcnxs models list`)",
        )
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
