"""What ``fcnxs segment`` writes: label PNGs, overlays with a legend, scores as .npy.

Every file is written under a temporary name and renamed when complete; the .npy score
files are filled band by band through a memory map, so a 6000×4000 image never holds its
2 GB of scores in memory. Their disk space is reserved before the first band: writing into
a memory map on a full disk would kill the process (SIGBUS), not raise an error.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from fcnxs.core.atomic import atomic_path, save_image
from fcnxs.core.palette import VOID_LABEL


def overlay_image(
    rgb: np.ndarray, labels: np.ndarray, colors, names, alpha: float = 0.5
) -> Image.Image:
    """The image with every non-background class tinted in its colour, and a legend of
    the classes present (colour swatch and name) in the top-left corner."""
    palette = np.zeros((256, 3), np.float32)
    palette[: len(colors)] = np.asarray(colors, np.float32)[:256]
    tint = (labels > 0) & (labels != VOID_LABEL)
    out = rgb.astype(np.float32)
    out[tint] = (1 - alpha) * out[tint] + alpha * palette[labels[tint]]
    image = Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))
    present = [int(c) for c in np.unique(labels) if c != VOID_LABEL and c < len(names)]
    size = max(9, min(image.size) // 40)
    font = ImageFont.load_default(size=size)
    draw = ImageDraw.Draw(image, "RGBA")
    width = max(draw.textlength(names[c], font=font) for c in present) if present else 0
    line = int(size * 1.4)
    draw.rectangle((4, 4, 16 + size + width + 8, 8 + line * len(present)), fill=(0, 0, 0, 150))
    for row, c in enumerate(present):
        y = 8 + row * line
        draw.rectangle((10, y + 2, 10 + size, y + 2 + size), fill=tuple(colors[c]), outline="white")
        draw.text((16 + size, y), names[c], fill="white", font=font)
    return image


def write_overlay(image: Image.Image, path: Path) -> None:
    save_image(image, path, "JPEG", quality=90)


@contextlib.contextmanager
def npy_stream(path: Path, shape: tuple[int, ...], dtype) -> Iterator[np.ndarray]:
    """A memory-mapped .npy array to fill in pieces; renamed into place when the block ends."""
    with atomic_path(path) as tmp:
        header = io.BytesIO()
        descr = np.lib.format.dtype_to_descr(np.dtype(dtype))
        np.lib.format.write_array_header_1_0(
            header, {"descr": descr, "fortran_order": False, "shape": shape}
        )
        offset = len(header.getvalue())
        size = offset + math.prod(shape) * np.dtype(dtype).itemsize
        with open(tmp, "r+b") as f:
            f.write(header.getvalue())
            _reserve(f, size)
        array = np.memmap(tmp, dtype=dtype, mode="r+", offset=offset, shape=shape)
        yield array
        array.flush()
        del array


def _reserve(f, size: int) -> None:
    """Allocate ``size`` bytes of disk for ``f`` now, so that a full disk is an OSError."""
    f.flush()
    if hasattr(os, "posix_fallocate"):
        os.posix_fallocate(f.fileno(), 0, size)
        return
    chunk = bytes(1 << 20)
    f.seek(0, os.SEEK_END)
    while f.tell() < size:
        f.write(chunk[: size - f.tell()])
    f.flush()
