"""PASCAL VOC class names and the VOC colour map, the defaults of every model."""

from __future__ import annotations

import functools

VOC_CLASSES: tuple[str, ...] = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip

VOID_LABEL = 255
"""Label of object boundaries and unlabelled pixels: ignored by the loss and the metrics."""
MAX_CLASSES = VOID_LABEL
"""Label maps are 8-bit (palette PNGs) with 255 void, so classes are 0..254."""


def voc_colormap(n: int = 256) -> list[tuple[int, int, int]]:
    """The VOC colour of classes 0..n-1 (a new list: callers may extend it)."""
    return list(_colormap(n))


@functools.cache  # every label PNG written needs the 256 colours: 0.44 ms each time
def _colormap(n: int) -> tuple[tuple[int, int, int], ...]:
    """The bits of the class index are spread over R, G and B from the high bit down
    (bit 0 -> R, bit 1 -> G, bit 2 -> B, the next three one position lower, ...), which
    gives 256 distinct colours; index 255 (void) comes out as (224, 224, 192).
    """
    colors = []
    for i in range(n):
        r = g = b = 0
        c = i
        for shift in range(7, -1, -1):
            r |= (c & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        colors.append((r, g, b))
    return tuple(colors)


def default_class_names(num_classes: int) -> list[str]:
    """VOC names when the model has the 21 VOC classes, else ``class_<i>``."""
    if num_classes == len(VOC_CLASSES):
        return list(VOC_CLASSES)
    return [f"class_{i}" for i in range(num_classes)]
