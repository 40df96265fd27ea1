"""Reading images and writing label maps, with one-line errors and atomic writes."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from fcnxs.atomic import atomic_path
from fcnxs.errors import FcnxsError, file_error
from fcnxs.palette import voc_colormap


def read_image(path: str | os.PathLike) -> Image.Image:
    """Decode an image file to RGB, turned as its EXIF orientation says (as viewers show it)."""
    path = Path(path)
    if not path.exists():
        raise file_error(path, "no such file")
    if path.is_dir():
        raise file_error(path, "is a directory, not an image")
    if path.stat().st_size == 0:
        raise file_error(path, "empty file")
    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image)
            image.load()
            return image.convert("RGB")
    except UnidentifiedImageError:
        raise file_error(path, "not an image file Pillow can read") from None
    except Image.DecompressionBombError as exc:
        raise file_error(path, f"too many pixels ({exc})") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise file_error(path, f"unreadable or truncated image ({exc})") from None


def label_image(labels: np.ndarray, colors: list[tuple[int, int, int]] | tuple) -> Image.Image:
    """A palette ("P") image of class indices with the given class colours."""
    if len(colors) > 256:
        raise FcnxsError(f"a palette PNG holds at most 256 classes, the model has {len(colors)}")
    image = Image.fromarray(labels.astype(np.uint8), mode="P")
    # Entries past the classes follow the VOC map, so void (255) shows as VOC's (224, 224, 192).
    full = list(colors) + voc_colormap(256)[len(colors) :]
    image.putpalette([v for color in full for v in color])
    return image


def write_label_png(
    labels: np.ndarray, colors: list[tuple[int, int, int]] | tuple, path: str | os.PathLike
) -> None:
    """Write ``labels`` as a palette PNG, atomically."""
    image = label_image(labels, colors)
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")


def write_npy(array: np.ndarray, path: str | os.PathLike) -> None:
    """Write a ``.npy`` file atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, array)
