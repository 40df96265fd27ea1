"""Segmenting images of any size: whole when they fit in memory, else in overlapping tiles.

Each tile decides a square of SIZE pixels but runs on it with CONTEXT pixels of the image
around it, starting on the network's 32-pixel grid, so its scores are those the whole
image would give; neighbouring tiles are cross-faded over a narrow band to leave no seam.
Scores are finished band by band, top to bottom, so memory stays bounded by one band of
tiles however tall the image.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from fcnxs.core.errors import FcnxsError
from fcnxs.core.precision import autocast_to, check_precision, gpu_arithmetic
from fcnxs.core.progress import progress
from fcnxs.data.images import composite, open_image
from fcnxs.inference.border_reuse import BorderReuse, CacheInfo
from fcnxs.inference.tta import NO_TTA, TTA, averaged_probabilities
from fcnxs.model.fcn import FCN, evaluating
from fcnxs.model.loading import load_model
from fcnxs.model.preprocessing import as_rgb_array, normalise

BYTES_PER_PADDED_PIXEL = 800
"""Measured peak of an FCN-8s forward pass per pixel of the (pad-100) input, fp32."""
CONTEXT = 192
"""Pixels of image around a tile that its forward pass also sees: far enough that the
scores of the tile are those of the whole image (measured: 99.8 % equal argmax at 128,
100 % at 192)."""
BLEND = 16
"""Half-width of the band over which neighbouring tiles' scores are cross-faded."""
ALIGN = 32
"""The network's total stride: tiles starting at multiples of it see the pooling grid of
the whole image."""


def labels_of(scores: torch.Tensor) -> np.ndarray:
    """Argmax over classes, as uint8 (a model has at most 255 classes)."""
    return scores.argmax(0).to(torch.uint8).numpy()


def mean_color(model: FCN) -> tuple[int, int, int]:
    """The model's mean input colour as 0..255 RGB: what "no image" looks like to it."""
    pre = model.config.preprocessing
    mean = [m / pre.scale for m in pre.mean]
    if pre.channel_order == "BGR":
        mean = mean[::-1]
    return tuple(round(min(255.0, max(0.0, v))) for v in mean)


def available_memory() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 << 30


def auto_tile(height: int, width: int, budget: int | None = None) -> int | None:
    """None (whole image) when inference fits in ``budget`` bytes (40 % of the available
    memory by default), else the largest tile that does with its context."""
    budget = budget or int(0.4 * available_memory())
    if (height + 200) * (width + 200) * BYTES_PER_PADDED_PIXEL <= budget:
        return None
    side = int(math.sqrt(budget / BYTES_PER_PADDED_PIXEL)) - 200 - 2 * CONTEXT
    return max(256, min(2048, side)) // ALIGN * ALIGN


def _cores(length: int, size: int) -> list[tuple[int, int]]:
    """Consecutive (start, end) of tiles of about ``size``, starts on the 32-pixel grid."""
    size = max(ALIGN, size // ALIGN * ALIGN)
    starts = list(range(0, length, size))
    if len(starts) > 1 and length - starts[-1] < size // 2:
        starts.pop()  # fold a thin last tile into the previous one
    return [(a, b) for a, b in zip(starts, [*starts[1:], length], strict=True)]


def _fade(core: tuple[int, int], window: tuple[int, int], length: int) -> torch.Tensor:
    """Weights over ``window`` of the tile deciding ``core``: 1 inside, cross-faded over
    ±BLEND around each boundary with a neighbour, 0 beyond."""
    positions = torch.arange(window[0], window[1], dtype=torch.float32) + 0.5
    w = torch.ones(len(positions))
    if core[0] > 0:
        w = torch.minimum(w, ((positions - core[0] + BLEND) / (2 * BLEND)).clamp(0, 1))
    if core[1] < length:
        w = torch.minimum(w, ((core[1] + BLEND - positions) / (2 * BLEND)).clamp(0, 1))
    return w


@dataclass
class Segmenter:
    """A model ready for many images: precision and tiling chosen once, and what border
    reuse learns of each image size kept from call to call (`cache_info`).

    It runs where the model is (move the model first to choose the device) and changes
    nothing outside itself: the model keeps its device, memory format and mode, and no
    global setting is left changed (`gpu_arithmetic` sets the GPU's for its own calls only).
    """

    model: FCN | str | os.PathLike
    """A model, or a file or registry name to load one from (`fcnxs.load_model`)."""
    precision: str = "fp32"
    tile: int | str | None = "auto"
    max_pixels: int | None = None
    tta: TTA = NO_TTA
    """Test-time augmentation: with it, scores are averaged class probabilities."""

    def __post_init__(self) -> None:
        if not isinstance(self.model, FCN):
            self.model = load_model(self.model)
        check_precision(self.precision, self.model.device)
        if isinstance(self.tile, int) and self.tile < 64:
            raise FcnxsError(f"tile must be at least 64 pixels, not {self.tile}")
        self.device = self.model.device
        self.forward = BorderReuse(self.model, max_bytes=self.tta.cache_bytes)
        self.background = mean_color(self.model)

    @property
    def classes(self) -> int:
        return self.model.config.num_classes

    def cache_info(self) -> CacheInfo:
        """What border reuse keeps of the sizes seen so far."""
        return self.forward.cache_info()

    def load(self, image: Image.Image | np.ndarray | str | os.PathLike) -> np.ndarray:
        """An H×W×3 uint8 RGB array; transparent pixels become the model's mean colour."""
        if isinstance(image, (str, os.PathLike)):
            image = open_image(image, self.max_pixels)
        if isinstance(image, Image.Image):
            image = composite(image, self.background)
        return as_rgb_array(image)

    def tile_size(self, height: int, width: int) -> int | None:
        if self.tile in (None, "none", 0):
            return None
        if self.tile == "auto":  # sized for the largest view
            scale = max(1.0, self.tta.largest)
            tile = auto_tile(
                math.ceil(height * scale), math.ceil(width * scale), self._memory_budget()
            )
            return None if tile is None else max(ALIGN, int(tile / scale) // ALIGN * ALIGN)
        return None if max(height, width) <= int(self.tile) else int(self.tile)

    def _run(self, rgbs: list[np.ndarray]) -> torch.Tensor:
        """(N, C, H, W) scores, on the device, of images of one size. Only their uint8
        pixels travel there; the preprocessing runs on the device."""
        pixels = torch.from_numpy(np.stack(rgbs))
        if self.device.type == "cuda":
            pixels = pixels.pin_memory()
        pixels = pixels.to(self.device, non_blocking=True).permute(0, 3, 1, 2)
        x = normalise(pixels.float(), self.model.config.preprocessing)
        # channels-last is 14 % faster for this network on oneDNN at the same outputs.
        x = x.contiguous(memory_format=torch.channels_last)
        device, precision = self.device, self.precision
        with (
            evaluating(self.model),
            gpu_arithmetic(precision, device),
            autocast_to(precision, device),
        ):
            if not self.tta.active:
                return self.forward(x)
            return averaged_probabilities(self.forward, x, self.tta)

    def _forward(self, rgb: np.ndarray) -> torch.Tensor:
        return self._run([rgb])[0].float().cpu()

    def _memory_budget(self) -> int | None:
        """On a GPU, 40 % of its free memory (None: 40 % of the host's available memory)."""
        if self.device.type != "cuda":
            return None
        return int(0.4 * torch.cuda.mem_get_info(self.device)[0])

    def labels(self, image) -> np.ndarray:
        """The H×W uint8 label map of an image (any `load` takes)."""
        return self.labels_batch([image])[0]

    def labels_batch(self, images: list) -> list[np.ndarray]:
        """The label maps of several images. Images of one size that need no tiles run as
        one batch, and the argmax is taken where the network ran: only labels come back.
        (Batches skip border reuse, which works one image at a time: batch on a GPU.)"""
        rgbs = [self.load(image) for image in images]
        out: list[np.ndarray | None] = [None] * len(rgbs)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, rgb in enumerate(rgbs):
            if self.tile_size(*rgb.shape[:2]) is None:
                groups.setdefault(rgb.shape, []).append(i)
            else:
                out[i] = labels_of(torch.cat([b for _, _, b in self.score_bands(rgb)], 1))
        for members in groups.values():
            scores = self._run([rgbs[i] for i in members])
            found = scores.argmax(1).to(torch.uint8).cpu().numpy()
            for i, labels in zip(members, found, strict=True):
                out[i] = labels
        return out

    def score_bands(self, rgb: np.ndarray) -> Iterator[tuple[int, int, torch.Tensor]]:
        """(y0, y1, scores of rows y0..y1 as (C, y1-y0, W)) from top to bottom."""
        height, width = rgb.shape[:2]
        tile = self.tile_size(height, width)
        if tile is None:
            yield 0, height, self._forward(rgb)
            return
        rows, cols = _cores(height, tile), _cores(width, tile)
        # A 10000×10000 image takes a minute: say how far it is, a band of tiles at a time.
        shown = progress(
            rows, len(rows), f"{width}×{height} in {len(rows)}×{len(cols)} tiles", unit="band"
        )
        classes = self.model.config.num_classes
        top = 0  # first image row held in the buffers
        scores = torch.zeros(classes, 0, width)
        weights = torch.zeros(0, width)
        for r, row in enumerate(shown):
            y0, y1 = max(0, row[0] - CONTEXT), min(height, row[1] + CONTEXT)
            fy0, fy1 = max(0, row[0] - BLEND), min(height, row[1] + BLEND)
            if fy1 - top > scores.shape[1]:
                grow = fy1 - top - scores.shape[1]
                scores = torch.cat([scores, torch.zeros(classes, grow, width)], 1)
                weights = torch.cat([weights, torch.zeros(grow, width)], 0)
            wy = _fade(row, (fy0, fy1), height)
            for col in cols:
                x0, x1 = max(0, col[0] - CONTEXT), min(width, col[1] + CONTEXT)
                fx0, fx1 = max(0, col[0] - BLEND), min(width, col[1] + BLEND)
                out = self._forward(rgb[y0:y1, x0:x1])[:, fy0 - y0 : fy1 - y0, fx0 - x0 : fx1 - x0]
                w = wy[:, None] * _fade(col, (fx0, fx1), width)[None, :]
                scores[:, fy0 - top : fy1 - top, fx0:fx1] += out * w
                weights[fy0 - top : fy1 - top, fx0:fx1] += w
            done = height if r + 1 == len(rows) else rows[r + 1][0] - BLEND
            k = done - top
            yield top, done, scores[:, :k] / weights[:k]
            scores, weights, top = scores[:, k:], weights[k:], done

    @property
    def scores_are_probabilities(self) -> bool:
        """Whether `scores` are TTA's averaged probabilities rather than logits."""
        return self.tta.active

    def scores(self, image) -> torch.Tensor:
        """The (C, H, W) float32 class scores of a whole image (tiled if need be): logits,
        or with TTA the averaged probabilities."""
        bands = [band for _, _, band in self.score_bands(self.load(image))]
        return torch.cat(bands, 1)
