"""Reading images and writing label maps, with one-line errors and atomic writes."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from fcnxs.core.atomic import save_image
from fcnxs.core.errors import FcnxsError, file_error, require_file
from fcnxs.core.palette import voc_colormap

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm")


def _to_8bit(image: Image.Image) -> Image.Image:
    """16-bit and 32-bit single-channel images scaled to 8 bits (65535 → 255)."""
    values = np.asarray(image)
    if image.mode == "F":
        scaled = np.clip(values, 0, 255)
    else:
        scaled = values.astype(np.float64) / (257.0 if values.max(initial=0) > 255 else 1.0)
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), mode="L")


class TooManyPixels(FcnxsError):
    """An image over the decompression-bomb limit (the service answers it with 413)."""


def open_image(path: str | os.PathLike, max_pixels: int | None = None) -> Image.Image:
    """Decode an image file as a viewer shows it: EXIF orientation applied, the first frame
    of an animation, any mode brought to "RGB", or "RGBA" when it has transparency.

    The decompression-bomb guard stays on: more pixels than ``max_pixels`` (Pillow's
    default limit, about 89 M, when None) is an error, and a larger ``max_pixels`` admits
    larger images than Pillow's own check would.
    """
    require_file(path, "an image")
    return decode_image(path, str(path), max_pixels)


def decode_image(
    source: str | os.PathLike | BinaryIO,
    name: str,
    max_pixels: int | None = None,
    limit_option: str = "--max-pixels",
) -> Image.Image:
    """`open_image` for a path or an open binary file (an upload); errors name ``name``
    and, for too many pixels, the option that raises the limit."""
    try:
        with _pillow_check_off() as pillow_limit:
            opened = Image.open(source)
        limit = max_pixels if max_pixels is not None else pillow_limit
        with opened as image:
            if limit and image.width * image.height > limit:
                raise TooManyPixels(
                    f"{name}: {image.width}×{image.height} = {image.width * image.height} "
                    f"pixels exceeds the decompression-bomb limit of {limit} "
                    f"(raise it with {limit_option})"
                )
            image.seek(0)
            image = ImageOps.exif_transpose(image)
            image.load()
            return _normalise_mode(image)
    except UnidentifiedImageError:
        raise file_error(name, "not an image file Pillow can read") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise file_error(name, f"unreadable or truncated image ({exc})") from None


_PILLOW_LIMIT = threading.Lock()


@contextlib.contextmanager
def _pillow_check_off() -> Iterator[int | None]:
    """Open images with Pillow's own decompression-bomb check off, yielding its limit.

    Pillow warns past ``Image.MAX_IMAGE_PIXELS`` and refuses past twice that, whatever
    ``max_pixels`` says; the one limit that applies is ours, checked right after opening
    (which reads only the header). The setting is Pillow's global, so it is switched under
    a lock and restored at once.
    """
    with _PILLOW_LIMIT:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            yield saved
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _normalise_mode(image: Image.Image) -> Image.Image:
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        image = _to_8bit(image)
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (
        image.mode == "P" and "transparency" in image.info
    )
    return image.convert("RGBA" if has_alpha else "RGB")


def read_image(path: str | os.PathLike, max_pixels: int | None = None) -> Image.Image:
    """`open_image` with any transparency dropped (alpha ignored): an "RGB" image."""
    return open_image(path, max_pixels).convert("RGB")


def composite(image: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """An RGBA image over a solid colour (the model's mean: transparent pixels then look
    like "nothing" to the network); other images unchanged, as RGB."""
    if image.mode != "RGBA":
        return image.convert("RGB")
    canvas = Image.new("RGB", image.size, background)
    canvas.paste(image, mask=image.getchannel("A"))
    return canvas


def label_image(labels: np.ndarray, colors: list[tuple[int, int, int]] | tuple) -> Image.Image:
    """A palette ("P") image of class indices with the given class colours."""
    image = Image.fromarray(labels.astype(np.uint8), mode="P")
    # Entries past the classes follow the VOC map, so void (255) shows as VOC's (224, 224, 192).
    full = list(colors) + voc_colormap(256)[len(colors) :]
    image.putpalette([v for color in full for v in color])
    return image


def write_label_png(
    labels: np.ndarray, colors: list[tuple[int, int, int]] | tuple, path: str | os.PathLike
) -> None:
    """Write ``labels`` as a palette PNG, atomically."""
    save_image(label_image(labels, colors), path, "PNG")
