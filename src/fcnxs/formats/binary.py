"""A bounds-checked little-endian reader: a truncated file becomes a one-line error."""

from __future__ import annotations

import os
import struct

from fcnxs.core.errors import FcnxsError, file_error


class BinaryReader:
    """Reads values from a bytes-like buffer, naming ``path`` in every error."""

    def __init__(self, data: bytes | memoryview, path: str | os.PathLike) -> None:
        self.data = memoryview(data)
        self.pos = 0
        self.path = path

    @property
    def remaining(self) -> int:
        return len(self.data) - self.pos

    def error(self, problem: str) -> FcnxsError:
        return file_error(self.path, f"{problem} (at byte {self.pos})")

    def take(self, size: int, what: str) -> memoryview:
        if size < 0 or size > self.remaining:
            raise self.error(f"truncated: {what} needs {size} bytes, {self.remaining} left")
        chunk = self.data[self.pos : self.pos + size]
        self.pos += size
        return chunk

    def unpack(self, fmt: str, what: str) -> tuple:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt), what))

    def one(self, fmt: str, what: str):
        return self.unpack(fmt, what)[0]
