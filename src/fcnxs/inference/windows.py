"""Where each trunk layer can see the image, and where an all-zero image's maps differ
from their uniform middle: the geometry border reuse runs on (docs/design.md §6), pure
functions of the input size and the pools' rounding.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fcnxs.model.architecture import TRUNK, Conv, Pool

ZERO_STEP = 32
"""By how much an all-zero input may be shortened: the trunk's stride, so that every pool
meets sizes of the same parity and rounds alike."""


@dataclass(frozen=True)
class Window:
    """Positions ``lo .. hi-1`` of a map of length ``size`` that can see the image."""

    lo: int
    hi: int
    size: int

    @property
    def full(self) -> bool:
        return self.lo == 0 and self.hi == self.size


def _next_window(layer, window: Window, ceil: bool) -> Window:
    if isinstance(layer, Conv):
        k, p = layer.kernel, layer.pad
        size = window.size + 2 * p - k + 1
        return Window(max(0, window.lo + p - k + 1), min(size, window.hi + p), size)
    size = (window.size + 1) // 2 if ceil else window.size // 2
    return Window(window.lo // 2, min(size, (window.hi + 1) // 2), size)


def image_windows(length: int, ceil: bool = False) -> list[Window]:
    """Along one axis of an input of ``length``, the image-dependent window of every
    trunk layer's output (conv1_1 … fc7)."""
    windows, window = [], Window(0, length, length)
    for layer in TRUNK:
        window = _next_window(layer, window, ceil)
        windows.append(window)
    return windows


def saved_share(height: int, width: int, ceil: bool = False) -> float:
    """The share of the trunk's multiply-adds that fall outside the windows."""
    total = dependent = 0
    for layer, rows, cols in zip(
        TRUNK, image_windows(height, ceil), image_windows(width, ceil), strict=True
    ):
        if isinstance(layer, Conv):
            macs = layer.in_channels * layer.out_channels * layer.kernel**2
            total += rows.size * cols.size * macs
            dependent += (rows.hi - rows.lo) * (cols.hi - cols.lo) * macs
    return 1 - dependent / total if total else 0.0


def frame_plan(height: int, width: int, ceil: bool = False) -> list[tuple[Window, Window, bool]]:
    """Per trunk layer: its output windows along rows and columns, and whether it runs on
    a patch (its input or its output is only a window), reading a kept border."""
    plan, input_full = [], True  # the image itself is all image
    for rows, cols in zip(image_windows(height, ceil), image_windows(width, ceil), strict=True):
        output_full = rows.full and cols.full
        plan.append((rows, cols, not (input_full and output_full)))
        input_full = output_full
    return plan


def patch_span(layer: Conv | Pool, window: Window, input_size: int) -> tuple[int, int]:
    """Along one axis, the positions of a layer's padded input that its output ``window``
    reads."""
    if isinstance(layer, Conv):
        return window.lo, min(input_size + 2 * layer.pad, window.hi + layer.kernel - 1)
    return 2 * window.lo, min(input_size, 2 * window.hi)


@dataclass(frozen=True)
class Rims:
    """Along one axis of a layer's padded input, for an all-zero image: its length, and how
    many positions next to each edge differ from the uniform middle."""

    size: int
    top: int
    bottom: int


def zero_rims(length: int, ceil: bool = False) -> list[Rims]:
    """Along one axis of an all-zero input of ``length``, the rims of every trunk layer's
    padded input. A padded convolution widens each rim by its pad, a pool halves it,
    rounding as it rounds its size; conv1_1's pad is zeros like its input, so conv1_1's
    output is uniform."""
    rims, size, top, bottom = [], length, 0, 0
    for i, layer in enumerate(TRUNK):
        if isinstance(layer, Conv):
            pad = layer.pad if i else 0
            rims.append(Rims(size + 2 * layer.pad, top + pad, bottom + pad))
            size = size + 2 * layer.pad - layer.kernel + 1
            top, bottom = min(size, top + pad), min(size, bottom + pad)
        else:
            rims.append(Rims(size, top, bottom))
            pooled = (size + 1) // 2 if ceil else size // 2
            # output o reads rows 2o and 2o+1 (those that exist); the bottom rim's first row
            # is size - bottom
            first_bottom = -(-(size - bottom - 1) // 2) if bottom else pooled
            size, top, bottom = pooled, -(-top // 2), max(0, pooled - first_bottom)
    return rims


def zero_shortened(length: int, layers: int, ceil: bool = False) -> int:
    """The shortest length, ``length`` less a multiple of `ZERO_STEP`, at which an all-zero
    input's first ``layers`` padded inputs keep a uniform middle: the same rims, so the same
    values at the same distance from each edge."""
    for steps in range((length - 1) // ZERO_STEP, 0, -1):  # an input keeps a row
        shortened = zero_rims(length - steps * ZERO_STEP, ceil)[:layers]
        if all(r.top + r.bottom < r.size for r in shortened):
            return length - steps * ZERO_STEP
    return length


def zero_index(length: int, shortened: int, ceil: bool = False) -> list[torch.Tensor]:
    """Per trunk layer, for every position of its padded input at ``length``, the position
    at ``shortened`` holding its value: the same one before the middle, one in the middle,
    the one as far from the far edge after it."""
    index = []
    for full, short in zip(zero_rims(length, ceil), zero_rims(shortened, ceil), strict=True):
        position = torch.arange(full.size)
        after = position - (full.size - short.size)
        middle = full.top
        index.append(
            torch.where(position < middle, position, torch.where(after > middle, after, middle))
        )
    return index
