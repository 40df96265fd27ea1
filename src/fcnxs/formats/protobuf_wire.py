"""Just enough of the protobuf wire format to walk a ``.caffemodel`` without Caffe.

A message is a sequence of (field number, wire type, value); nested messages and packed
arrays are length-delimited byte ranges, which we slice without copying.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

import numpy as np

from fcnxs.formats.binary import BinaryReader

VARINT, FIXED64, LENGTH, FIXED32 = 0, 1, 2, 5


def _varint(r: BinaryReader) -> int:
    result = shift = 0
    while True:
        byte = r.take(1, "varint")[0]
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result
        shift += 7
        if shift > 63:
            raise r.error("malformed protobuf varint")


def fields(data: memoryview, path) -> Iterator[tuple[int, int, int | memoryview]]:
    """Yield (field number, wire type, value) of one message."""
    r = BinaryReader(data, path)
    while r.remaining:
        key = _varint(r)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise r.error("malformed protobuf (field number 0)")
        if wire == VARINT:
            yield number, wire, _varint(r)
        elif wire == FIXED64:
            yield number, wire, r.take(8, "fixed64")
        elif wire == LENGTH:
            yield number, wire, r.take(_varint(r), f"field {number}")
        elif wire == FIXED32:
            yield number, wire, r.take(4, "fixed32")
        else:
            raise r.error(f"unsupported protobuf wire type {wire} (field {number})")


def packed_varints(value: int | memoryview, path) -> list[int]:
    """A repeated integer field, packed (one byte range) or not (one varint)."""
    if isinstance(value, int):
        return [value]
    r = BinaryReader(value, path)
    out = []
    while r.remaining:
        out.append(_varint(r))
    return out


def floats(value: memoryview, wire: int, dtype: str) -> np.ndarray:
    """A repeated float/double field: a packed byte range or one fixed-width value."""
    if wire in (FIXED32, FIXED64):
        return np.array(struct.unpack("<" + ("f" if wire == FIXED32 else "d"), value), dtype)
    return np.frombuffer(value, dtype=np.dtype(dtype).newbyteorder("<"))
