"""Augmentations that take (image, label) together.

Each step is a picklable class (no closures), so that loader workers started by ``spawn``
or ``forkserver`` (macOS, Windows, Linux from Python 3.14) can receive it. Geometric steps
work on the uint8 arrays (H×W×3 image, H×W label) with the sample's own
random generator, so a sample's augmentation depends only on (seed, epoch, index) and not
on which loader worker draws it. Cropping and padding to a fixed size happen after
normalisation (`crop_or_pad`), so padded image pixels are exactly the mean colour (0) and
padded labels are void (255).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from fcnxs.core.palette import VOID_LABEL

Pair = tuple[np.ndarray, np.ndarray]
# The generator's type as a string: numpy.random takes 0.08 s to import, and every command
# imports this module (a one-photo ``segment`` never draws a random number).
Transform = Callable[[np.ndarray, np.ndarray, "np.random.Generator"], Pair]


def _offset(rng: np.random.Generator, upper: float) -> int:
    # The original drew round(uniform(0, extent - size - 1)): Python's round, half to even.
    return round(float(rng.uniform(0, upper)))


@dataclass(frozen=True)
class CutOff:
    """The fcn-xs ``cut_off_size`` rule (docs/design.md §1), exactly as the original data iterator.

    If the shorter side exceeds ``size``: a random size×size crop. Else if the longer side
    does: a random square crop whose side is the shorter side. Else: unchanged.
    """

    size: int

    def __call__(self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator) -> Pair:
        size = self.size
        h, w = label.shape
        longer, shorter = max(h, w), min(h, w)
        if shorter > size:
            along_longer = _offset(rng, longer - size - 1)
            along_shorter = _offset(rng, shorter - size - 1)
            top, left = (
                (along_longer, along_shorter) if h == longer else (along_shorter, along_longer)
            )
            window = (slice(top, top + size), slice(left, left + size))
        elif longer > size:
            start = _offset(rng, longer - shorter - 1)
            span = slice(start, start + shorter)
            window = (span, slice(None)) if h == longer else (slice(None), span)
        else:
            return image, label
        return image[window], label[window]


@dataclass(frozen=True)
class RandomScale:
    """Resize by a factor drawn uniformly from [low, high]: bilinear image, nearest label."""

    low: float
    high: float

    def __call__(self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator) -> Pair:
        factor = float(rng.uniform(self.low, self.high))
        h, w = label.shape
        size = (max(1, round(w * factor)), max(1, round(h * factor)))
        image = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))
        label = np.asarray(Image.fromarray(label).resize(size, Image.Resampling.NEAREST))
        return image, label


@dataclass(frozen=True)
class HorizontalFlip:
    """Mirror image and label left to right with the given probability."""

    probability: float = 0.5

    def __call__(self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator) -> Pair:
        if rng.random() < self.probability:
            return image[:, ::-1], label[:, ::-1]
        return image, label


def crop_or_pad(
    image: torch.Tensor, label: torch.Tensor, size: int, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """A random size×size window of a normalised (3, H, W) image and its (H, W) label;
    sides shorter than ``size`` are padded (image 0, label void) at the bottom/right."""
    h, w = label.shape
    pad_h, pad_w = max(0, size - h), max(0, size - w)
    if pad_h or pad_w:
        image = F.pad(image, (0, pad_w, 0, pad_h), value=0.0)
        label = F.pad(label, (0, pad_w, 0, pad_h), value=VOID_LABEL)
        h, w = label.shape
    top = int(rng.integers(0, h - size + 1))
    left = int(rng.integers(0, w - size + 1))
    return image[:, top : top + size, left : left + size], label[
        top : top + size, left : left + size
    ]


@dataclass(frozen=True)
class Augmentation:
    """A training recipe's data side. The original: ``cut_off_size`` only, whole images."""

    cut_off_size: int | None = None
    scale: tuple[float, float] | None = None
    flip: bool = False
    crop_size: int | None = None

    def transforms(self) -> list[Transform]:
        steps: list[Transform] = []
        if self.cut_off_size:
            steps.append(CutOff(self.cut_off_size))
        if self.scale:
            steps.append(RandomScale(*self.scale))
        if self.flip:
            steps.append(HorizontalFlip())
        return steps
