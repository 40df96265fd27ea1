"""Caffe ``.caffemodel`` files (the FCN reference models and the VGG16), read without Caffe.

Field numbers follow caffe.proto: NetParameter.layer = 100 (LayerParameter: name 1,
type 2, blobs 7) and, in old files, NetParameter.layers = 2 (V1LayerParameter: name 4,
blobs 6); BlobProto: num/channels/height/width 1–4, data 5 (packed float), shape 7
(BlobShape: dim 1, packed int64), double_data 8.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from fcnxs.core.errors import file_error, require_file
from fcnxs.formats.protobuf_wire import LENGTH, fields, floats, packed_varints

LAYER, V1_LAYER = 100, 2
LAYER_FIELDS = {LAYER: (1, 7), V1_LAYER: (4, 6)}  # (name, blobs) field numbers


def _blob(data: memoryview, path) -> torch.Tensor:
    legacy = {1: 1, 2: 1, 3: 1, 4: 1}
    shape: list[int] | None = None
    values = []
    for number, wire, value in fields(data, path):
        if number == 7 and wire == LENGTH:
            shape = []
            for n, _, v in fields(value, path):
                if n == 1:
                    shape.extend(packed_varints(v, path))
        elif number in legacy and isinstance(value, int):
            legacy[number] = value
        elif number == 5:
            values.append(floats(value, wire, "float32"))
        elif number == 8:
            values.append(floats(value, wire, "float64"))
    if shape is None:
        shape = [legacy[1], legacy[2], legacy[3], legacy[4]]
    array = np.concatenate(values) if values else np.zeros(0, np.float32)
    if array.size != int(np.prod(shape)):
        raise file_error(path, f"a blob of shape {shape} holds {array.size} values")
    return torch.from_numpy(array.astype(np.float32)).reshape(shape)


def read_caffe_blobs(path: str | Path) -> dict[str, list[torch.Tensor]]:
    """Layer name → its blobs, for every layer that has any (both layer encodings)."""
    path = Path(path)
    require_file(path, "a Caffe model")
    data = path.read_bytes()
    layers: dict[str, list[torch.Tensor]] = {}
    try:
        for number, wire, value in fields(memoryview(data), path):
            if number not in LAYER_FIELDS or wire != LENGTH:
                continue
            name_field, blobs_field = LAYER_FIELDS[number]
            name, blobs = None, []
            for n, w, v in fields(value, path):
                if n == name_field and w == LENGTH:
                    name = bytes(v).decode("utf-8", errors="replace")
                elif n == blobs_field and w == LENGTH:
                    blobs.append(_blob(v, path))
            if blobs:
                layers[name or f"<unnamed layer {len(layers)}>"] = blobs
    except ValueError as exc:  # numpy on a misaligned packed array
        raise file_error(path, f"not a Caffe model ({exc})") from None
    if not layers:
        raise file_error(path, "not a Caffe model (no layers with weights)")
    return layers
