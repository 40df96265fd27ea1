"""Inference that computes only the part of the trunk that can see the image.

conv1_1's pad of 100 surrounds every image with a frame of zeros (the mean colour). Every
position of an early feature map whose receptive field lies in that frame, or reaches
only the frame and a layer's own zero padding, holds a value that depends on the weights
and the map size alone: at 375×500 that is 35 % of the trunk's multiply-adds (docs/design.md §6).
So for each trunk layer we know, by interval arithmetic, the window of positions that
can see the image, and each layer computes only its window, reading the border around it
from an all-zero image's feature maps (the values outside the window are those of every
image, the all-zero one included).

Those maps are cheap: on an all-zero image every map is one uniform value except for rims
next to its edges, a few positions wide (its zero padding reaching in). An input shorter by a
multiple of 32 (so that every pool rounds alike) has the same rims and a shorter uniform
middle, so the trunk runs once per size on the shortest such input that keeps a middle, and
a full-size position reads the short map at the same distance from its nearer edge, or the
middle. At 375×500 that costs about an eighth of a dense pass; the outputs are those of the
dense network up to floating-point rounding (tested).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from fcnxs.inference.prepacked import PackedConvs
from fcnxs.inference.windows import (
    Window,
    saved_share,
    tile_plan,
    tile_span,
    zero_index,
    zero_shortened,
)
from fcnxs.model.architecture import SKIP_POOLS, TRUNK, Conv
from fcnxs.model.fcn import FCN

MAX_CACHED_BYTES = 3 << 29
"""What is kept: the packed weights (0.7 GB in fp32, shared by every size) and the short
all-zero maps of the sizes seen (60 MB at 375×500 in fp32); the newest size is always kept."""
MIN_SAVING = 0.15
"""Below this share of the trunk's work saved (inputs over about 1.2 megapixels), the
windows are not worth their copies and the network runs densely."""


@dataclass(frozen=True)
class CacheInfo:
    """What a `BorderReuse` keeps (bounded by ``max_bytes``)."""

    sizes_kept: int
    bytes_kept: int
    packed_bytes: int
    """Of ``bytes_kept``, the convolutions packed for the CPU, shared by every size (none
    where emulated)."""


@dataclass
class _Border:
    """A layer's padded input for an all-zero image, shortened, where each full-size
    position reads it, and the frames read from it so far (one per tile a size uses)."""

    short: torch.Tensor
    rows: torch.Tensor
    cols: torch.Tensor
    frames: dict = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        strips = [s for frame in self.frames.values() for *_, s in frame] + [self.short]
        return sum(s.numel() * s.element_size() for s in strips)

    def read(self, rows: slice, cols: slice) -> torch.Tensor:
        """The full-size map's ``[rows, cols]``."""
        rows_at, cols_at = self.rows[rows], self.cols[cols]
        short = self.short
        if len(rows_at) * short.shape[-1] <= len(cols_at) * short.shape[-2]:
            return short.index_select(-2, rows_at).index_select(-1, cols_at)
        return short.index_select(-1, cols_at).index_select(-2, rows_at)

    def frame(self, tile: tuple[int, int, int, int], inner: tuple[int, int, int, int]) -> list:
        """The strips of the full-size map around ``inner`` (top, bottom, left, right, in
        the tile) within ``tile`` (r0, r1, c0, c1): (rows, columns, values) in the tile."""
        key = (tile, inner)
        if key not in self.frames:
            (r0, r1, c0, c1), (top, bottom, left, right) = tile, inner
            strips = [
                (slice(0, top), slice(0, c1 - c0)),
                (slice(bottom, r1 - r0), slice(0, c1 - c0)),
                (slice(top, bottom), slice(0, left)),
                (slice(top, bottom), slice(right, c1 - c0)),
            ]
            self.frames[key] = [
                (r, c, self.read(_shift(r, r0), _shift(c, c0)))
                for r, c in strips
                if r.stop > r.start and c.stop > c.start
            ]
        return self.frames[key]


@dataclass
class _Size:
    """What is kept for one input size: the border each tiled layer reads."""

    borders: list[_Border | None]

    @property
    def nbytes(self) -> int:
        return sum(b.nbytes for b in self.borders if b)


class BorderReuse:
    """``model(x)`` for inference, computing only the image-dependent windows of the
    trunk, every convolution with its weights packed once (one layout serves every input
    size: measured equal speed and equal outputs). Call it under
    ``torch.inference_mode()``, in eval mode.
    """

    def __init__(self, model: FCN, max_bytes: int = MAX_CACHED_BYTES) -> None:
        self.model = model
        self.max_bytes = max_bytes
        self._ceil = model.config.semantics.pool_rounding == "ceil"
        self._sizes: OrderedDict[tuple, _Size] = OrderedDict()
        self._convs = PackedConvs()
        self._versions: tuple = ()
        self._lock = threading.Lock()

    def cache_info(self) -> CacheInfo:
        """What is kept: the sizes whose borders are kept, their bytes with the packed
        weights'."""
        packed = self._convs.nbytes
        kept = sum(s.nbytes for s in self._sizes.values()) + packed
        return CacheInfo(len(self._sizes), kept, packed)

    def _relu_conv(self, module: torch.nn.Conv2d, x: torch.Tensor, padding: int) -> torch.Tensor:
        return self._convs.relu_conv(module, x.to(_compute_dtype(x)), padding)

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
            return self.model.trunk(x, relu_conv=self._relu_conv)
        with self._lock:
            kept = self._sizes.get(key)
            if kept is not None:
                self._sizes.move_to_end(key)
        if kept is None:
            kept = self._zero_borders(x)
            with self._lock:
                self._sizes[key] = kept
            self._evict()
        return self._windowed(x, kept)

    def _evict(self) -> None:
        """Forget the least recently used sizes while over budget (keeping the newest)."""
        with self._lock:
            while (
                len(self._sizes) > 1
                and sum(s.nbytes for s in self._sizes.values()) + self._convs.nbytes
                > self.max_bytes
            ):
                self._sizes.popitem(last=False)

    def _zero_borders(self, x: torch.Tensor) -> _Size:
        """The border of every tiled layer: the trunk, up to the last of them, on an
        all-zero input shortened as far as its rims allow."""
        height, width = x.shape[-2:]
        tiled = [t for _, _, t in tile_plan(height, width, self._ceil)]
        layers = max(i for i, t in enumerate(tiled) if t) + 1
        short_h = zero_shortened(height, layers, self._ceil)
        short_w = zero_shortened(width, layers, self._ceil)
        rows = zero_index(height, short_h, self._ceil)
        cols = zero_index(width, short_w, self._ceil)
        z = x.new_zeros(1, x.shape[1], short_h, short_w)
        borders: list[_Border | None] = []
        for i, layer in enumerate(TRUNK[:layers]):
            if tiled[i]:
                index_h, index_w = rows[i].to(x.device), cols[i].to(x.device)
                borders.append(_Border(_padded(z, layer), index_h, index_w))
            else:
                borders.append(None)
            if isinstance(layer, Conv):
                z = self._relu_conv(getattr(self.model, layer.name), z, layer.pad)
            else:
                z = getattr(self.model, layer.name)(z)
        return _Size(borders)

    def _windowed(self, x: torch.Tensor, kept: _Size):
        pools = {}
        height, width = x.shape[-2:]
        rows_in, cols_in = Window(0, height, height), Window(0, width, width)
        for i, (layer, (rows, cols, tiled)) in enumerate(
            zip(TRUNK, tile_plan(height, width, self._ceil), strict=True)
        ):
            module = getattr(self.model, layer.name)
            is_conv = isinstance(layer, Conv)
            padding = layer.pad if is_conv else 0
            if tiled:
                pad = padding
                r0, r1 = tile_span(layer, rows, rows_in.size)
                c0, c1 = tile_span(layer, cols, cols_in.size)
                # The input window lies inside the tile (tested over sizes, both roundings).
                top, left = rows_in.lo + pad - r0, cols_in.lo + pad - c0
                x, padding = _tile(kept.borders[i], (r0, r1), (c0, c1), x, (top, left)), 0
            if is_conv:
                x = self._relu_conv(module, x, padding)
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


def _memory_format(x: torch.Tensor) -> torch.memory_format:
    if x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def _padded(x: torch.Tensor, layer) -> torch.Tensor:
    """A layer's input with the zero padding it applies (convolutions), in the input's
    memory format."""
    pad = layer.pad if isinstance(layer, Conv) else 0
    return F.pad(x, (pad,) * 4).contiguous(memory_format=_memory_format(x)) if pad else x


def _tile(
    border: _Border, rows: tuple[int, int], cols: tuple[int, int], x: torch.Tensor, at: tuple
) -> torch.Tensor:
    """Positions ``rows`` × ``cols`` of a layer's padded input: ``x`` (the window the
    previous layer computed) at ``at``, framed by the border."""
    (r0, r1), (c0, c1), (top, left) = rows, cols, at
    bottom, right = top + x.shape[-2], left + x.shape[-1]
    tile = torch.empty(
        (*x.shape[:2], r1 - r0, c1 - c0),
        dtype=x.dtype,
        device=x.device,
        memory_format=_memory_format(x),
    )
    tile[..., top:bottom, left:right] = x
    for r, c, strip in border.frame((r0, r1, c0, c1), (top, bottom, left, right)):
        tile[..., r, c] = strip
    return tile


def _shift(positions: slice, offset: int) -> slice:
    return slice(positions.start + offset, positions.stop + offset)


def _whole(
    window: torch.Tensor, rows: Window, cols: Window, border: _Border | None, consumer
) -> torch.Tensor:
    """A pool map in full, as the skips read it: the window over the border of the layer
    that consumes the map."""
    if rows.full and cols.full:
        return window
    pad = consumer.pad if isinstance(consumer, Conv) else 0
    whole = border.read(slice(pad, pad + rows.size), slice(pad, pad + cols.size))
    whole = whole.to(window.dtype).contiguous(memory_format=_memory_format(window))
    whole[..., rows.lo : rows.hi, cols.lo : cols.hi] = window
    return whole
