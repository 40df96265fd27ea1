"""Reading label maps however they are stored: palette PNGs, single-channel PNGs, RGB
colour PNGs (mapped back through the class colours) and SBD ``.mat`` files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from fcnxs.core.errors import file_error
from fcnxs.core.palette import VOID_LABEL, voc_colormap
from fcnxs.data.classes import ClassList

VOID_COLOR = voc_colormap(256)[VOID_LABEL]


def _read_mat(path: Path) -> np.ndarray:
    import scipy.io  # only SBD needs scipy

    try:
        mat = scipy.io.loadmat(path, squeeze_me=True, struct_as_record=False)
        segmentation = mat["GTcls"].Segmentation
    except (KeyError, AttributeError):
        raise file_error(path, "has no GTcls.Segmentation (not an SBD class label file)") from None
    except (ValueError, OSError, TypeError) as exc:
        raise file_error(path, f"unreadable .mat file ({exc})") from None
    array = np.asarray(segmentation)
    if array.ndim != 2:
        raise file_error(path, f"GTcls.Segmentation has shape {array.shape}, expected H×W")
    return array.astype(np.uint8)


def colors_to_labels(rgb: np.ndarray, classes: ClassList, path: Path) -> np.ndarray:
    """Map each pixel's colour to its class (the void colour to 255); unknown colours fail."""
    packed = (
        (rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8) | rgb[..., 2]
    )
    table = {(r << 16) | (g << 8) | b: i for i, (r, g, b) in enumerate(classes.colors)}
    table.setdefault((VOID_COLOR[0] << 16) | (VOID_COLOR[1] << 8) | VOID_COLOR[2], VOID_LABEL)
    values, inverse = np.unique(packed, return_inverse=True)
    unknown = [v for v in values if int(v) not in table]
    if unknown:
        v = int(unknown[0])
        raise file_error(path, f"colour {(v >> 16, (v >> 8) & 255, v & 255)} is not a class colour")
    mapped = np.array([table[int(v)] for v in values], dtype=np.uint8)
    return mapped[inverse].reshape(packed.shape)


def read_label(path: str | Path, classes: ClassList) -> np.ndarray:
    """An H×W uint8 map of class indices (255 = void)."""
    path = Path(path)
    if not path.is_file():
        raise file_error(path, "no such label file")
    if path.suffix.lower() == ".mat":
        return _read_mat(path)
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode in ("RGB", "RGBA"):
                return colors_to_labels(np.asarray(image.convert("RGB")), classes, path)
            if image.mode in ("P", "L", "1"):
                return np.asarray(image, dtype=np.uint8)
            values = np.asarray(image)
    except UnidentifiedImageError:
        raise file_error(path, "not an image file Pillow can read") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise file_error(path, f"unreadable or truncated label image ({exc})") from None
    if values.ndim != 2 or values.min() < 0 or values.max() > 255:
        raise file_error(path, f"label image of mode {image.mode} holds values outside 0..255")
    return values.astype(np.uint8)
