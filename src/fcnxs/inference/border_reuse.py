"""Inference that computes the image-independent part of the trunk once per input size.

conv1_1's pad of 100 surrounds every image with a frame of zeros (the mean colour). Every
position of an early feature map whose receptive field lies in that frame, or reaches
only the frame and a layer's own zero padding, holds a value that depends on the weights
and the map size alone: at 375×500 that is 35 % of the trunk's multiply-adds (docs/design.md §6).
So for each trunk layer we know, by interval arithmetic, the window of positions that
can see the image. The first image of a size (seen twice, so a one-off size costs
nothing extra) runs densely and its early feature maps are kept; later images of that
size compute only the windows, reading the border around each window from the kept maps.
Outside the windows the kept values are the same for every image, so the outputs are
those of the dense network up to floating-point rounding (tested).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from fcnxs.inference.prepacked import PackedConvs
from fcnxs.model.architecture import SKIP_POOLS, TRUNK, Conv, Pool
from fcnxs.model.fcn import FCN

MAX_CACHED_BYTES = 3 << 29
"""What is kept: the packed weights (0.5 GB in fp32, shared by every size) and the borders
of the sizes seen (0.4 GB at 375×500 in fp32); the newest size is always kept."""
MAX_SEEN_SIZES = 4096
"""Sizes remembered as seen once (a few hundred bytes each)."""
MIN_SAVING = 0.15
"""Below this share of the trunk's work saved (inputs over about 1.2 megapixels), the
kept maps are not worth their memory and the network runs densely."""


@dataclass(frozen=True)
class CacheInfo:
    """What a `BorderReuse` keeps (bounded by ``max_bytes`` and `MAX_SEEN_SIZES`)."""

    sizes_kept: int
    bytes_kept: int
    packed_bytes: int
    """Of ``bytes_kept``, the convolutions packed for the CPU, shared by every size (none
    where emulated)."""
    sizes_seen: int


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


def tile_plan(height: int, width: int, ceil: bool = False) -> list[tuple[Window, Window, bool]]:
    """Per trunk layer: its output windows along rows and columns, and whether it runs on
    a tile (its input or its output is only a window), reading a kept border."""
    plan, input_full = [], True  # the image itself is all image
    for rows, cols in zip(image_windows(height, ceil), image_windows(width, ceil), strict=True):
        output_full = rows.full and cols.full
        plan.append((rows, cols, not (input_full and output_full)))
        input_full = output_full
    return plan


def tile_span(layer: Conv | Pool, window: Window, input_size: int) -> tuple[int, int]:
    """Along one axis, the positions of a layer's padded input that its output ``window``
    reads."""
    if isinstance(layer, Conv):
        return window.lo, min(input_size + 2 * layer.pad, window.hi + layer.kernel - 1)
    return 2 * window.lo, min(input_size, 2 * window.hi)


@dataclass
class _Size:
    """What is kept for one input size: the border each tiled layer reads."""

    borders: list[torch.Tensor | None]

    @property
    def nbytes(self) -> int:
        return sum(m.numel() * m.element_size() for m in self.borders if m is not None)


class BorderReuse:
    """``model(x)`` for inference, computing only the image-dependent windows of the
    trunk for sizes already seen, every convolution with its weights packed once (one
    layout serves every input size: measured equal speed and equal outputs). Call it under
    ``torch.inference_mode()``, in eval mode.
    """

    def __init__(self, model: FCN, max_bytes: int = MAX_CACHED_BYTES) -> None:
        self.model = model
        self.max_bytes = max_bytes
        self._ceil = model.config.semantics.pool_rounding == "ceil"
        self._sizes: OrderedDict[tuple, _Size] = OrderedDict()
        self._seen: set[tuple] = set()
        self._convs = PackedConvs()
        self._versions: tuple = ()
        self._lock = threading.Lock()

    def cache_info(self) -> CacheInfo:
        """What is kept: the sizes whose borders are kept, their bytes with the packed
        weights', the sizes seen."""
        packed = self._convs.nbytes
        kept = sum(s.nbytes for s in self._sizes.values()) + packed
        return CacheInfo(len(self._sizes), kept, packed, len(self._seen))

    def _relu_conv(self, module: torch.nn.Conv2d, x: torch.Tensor, padding: int) -> torch.Tensor:
        return self._convs.relu_conv(module, x.to(_compute_dtype(x)), padding)

    def _dense_trunk(self, x: torch.Tensor, before_layer=None):
        return self.model.trunk(x, before_layer=before_layer, relu_conv=self._relu_conv)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.run_padded(self._forward_valid, x)

    def _forward_valid(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        return self.model.head(*self._trunk(x), height, width)

    def _trunk(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        height, width = x.shape[-2:]
        key = _key(self.model, x)
        with self._lock:
            if key[-1] != self._versions:  # the weights changed: what was kept is stale
                self._convs, self._versions = PackedConvs(), key[-1]
                self._sizes.clear()
        if x.shape[0] != 1 or saved_share(height, width, self._ceil) < MIN_SAVING:
            return self._dense_trunk(x)
        with self._lock:
            kept = self._sizes.get(key)
            if kept is not None:
                self._sizes.move_to_end(key)
            first_time = key not in self._seen
            if len(self._seen) >= MAX_SEEN_SIZES:  # a long run over ever new sizes
                self._seen.clear()
            self._seen.add(key)
        if kept is not None:
            return self._windowed(x, kept)
        if first_time:  # a one-off size costs nothing extra
            return self._dense_trunk(x)
        out, pools, borders = self._dense(x)
        with self._lock:
            self._sizes[key] = _Size(borders)
        self._evict()
        return out, pools

    def _evict(self) -> None:
        """Forget the least recently used sizes while over budget (keeping the newest)."""
        with self._lock:
            while (
                len(self._sizes) > 1
                and sum(s.nbytes for s in self._sizes.values()) + self._convs.nbytes
                > self.max_bytes
            ):
                self._sizes.popitem(last=False)

    def _dense(self, x: torch.Tensor) -> tuple[torch.Tensor, dict, list[torch.Tensor | None]]:
        """The model's own trunk, keeping the input of every layer that will run on a
        tile, padded as that layer pads: the border its tiles read."""
        tiled = [t for _, _, t in tile_plan(*x.shape[-2:], self._ceil)]
        borders: list[torch.Tensor | None] = []

        def keep(i: int, layer, layer_input: torch.Tensor) -> None:
            borders.append(_padded(layer_input, layer) if tiled[i] else None)

        out, pools = self._dense_trunk(x, before_layer=keep)
        return out, pools, borders

    def _windowed(self, x: torch.Tensor, kept: _Size):
        pools = {}
        height, width = x.shape[-2:]
        dtype = _compute_dtype(x)
        rows_in, cols_in = Window(0, height, height), Window(0, width, width)
        for i, (layer, (rows, cols, tiled)) in enumerate(
            zip(TRUNK, tile_plan(height, width, self._ceil), strict=True)
        ):
            module = getattr(self.model, layer.name)
            is_conv = isinstance(layer, Conv)
            if tiled:
                pad = layer.pad if is_conv else 0
                r0, r1 = tile_span(layer, rows, rows_in.size)
                c0, c1 = tile_span(layer, cols, cols_in.size)
                tile = kept.borders[i][..., r0:r1, c0:c1].clone()
                # The input window lies inside the tile (tested over sizes, both roundings).
                top, left = rows_in.lo + pad - r0, cols_in.lo + pad - c0
                tile[..., top : top + x.shape[-2], left : left + x.shape[-1]] = x
                x, padding = tile, 0
            else:
                padding = layer.pad if is_conv else 0
            if is_conv:
                x = self._convs.relu_conv(module, x.to(dtype), padding)
            else:
                x = module(x)
                if layer.name in SKIP_POOLS:
                    pools[layer.name] = _whole(x, rows, cols, kept.borders[i + 1], TRUNK[i + 1])
            rows_in, cols_in = rows, cols
        return x, pools


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype convolutions compute in: autocast's when it is on, else the input's."""
    if torch.is_autocast_enabled(x.device.type):
        return torch.get_autocast_dtype(x.device.type)
    return x.dtype


def _key(model: FCN, x: torch.Tensor) -> tuple:
    # A parameter changed in place (an optimiser step, a load) bumps its version.
    versions = tuple(p._version for p in model.parameters())
    return (tuple(x.shape), x.device, _compute_dtype(x), versions)


def _padded(x: torch.Tensor, layer) -> torch.Tensor:
    """A layer's input with the zero padding it applies (convolutions), as a new tensor in
    the input's memory format."""
    fmt = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else None
    pad = layer.pad if isinstance(layer, Conv) else 0
    padded = F.pad(x, (pad,) * 4) if pad else x.clone()
    return padded.contiguous(memory_format=fmt or torch.contiguous_format)


def _whole(window: torch.Tensor, rows: Window, cols: Window, border, consumer) -> torch.Tensor:
    """A pool map in full, as the skips read it: the window over the border kept for the
    layer that consumes the map."""
    if rows.full and cols.full:
        return window
    pad = consumer.pad if isinstance(consumer, Conv) else 0
    whole = border[..., pad : pad + rows.size, pad : pad + cols.size].clone()
    whole[..., rows.lo : rows.hi, cols.lo : cols.hi] = window
    return whole
