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
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from fcnxs.core import torch_internals
from fcnxs.inference.prepacked import PackedConvs
from fcnxs.inference.windows import (
    Window,
    frame_plan,
    patch_span,
    saved_share,
    zero_index,
    zero_shortened,
)
from fcnxs.model.architecture import SKIP_POOLS, TRUNK, Conv
from fcnxs.model.fcn import FCN

MAX_CACHED_BYTES = 3 << 29
"""What is kept: the packed weights (0.8 GB in fp32, shared by every size) and, per size
seen, the frames its patches read and the skip pools' borders (20 MB at 375×500 in fp32); the
newest size is always kept."""
MIN_SAVING = 0.15
"""Below this share of the trunk's work saved (inputs over about 1.2 megapixels), the
windows are not worth their copies and the network runs densely."""


def _worth_windows(x: torch.Tensor, ceil: bool) -> bool:
    """Whether computing ``x``'s trunk in windows pays: one image, on a CPU, saving at least
    `MIN_SAVING`. A batch runs densely (the windows are per image), and so does a GPU, whose
    time at this size goes to launching kernels rather than to the arithmetic the windows
    save (H100, one 375×500 image in bf16: 4.2 ms windowed, 2.9 ms for the dense forward)."""
    height, width = x.shape[-2:]
    return (
        x.shape[0] == 1
        and x.device.type == "cpu"
        and saved_share(height, width, ceil) >= MIN_SAVING
    )


@dataclass(frozen=True)
class CacheInfo:
    """What a `BorderReuse` keeps (bounded by ``max_bytes``)."""

    sizes_kept: int
    bytes_kept: int
    packed_bytes: int
    """Of ``bytes_kept``, the convolutions packed for the CPU, shared by every size (none
    where emulated)."""


@dataclass
class _ZeroMap:
    """A layer's padded input for an all-zero image: shortened, and where each full-size
    position reads it."""

    short: torch.Tensor
    rows: torch.Tensor
    cols: torch.Tensor

    def read(self, rows: slice, cols: slice) -> torch.Tensor:
        """The full-size map's ``[rows, cols]``."""
        rows_at, cols_at = self.rows[rows], self.cols[cols]
        short = self.short
        if len(rows_at) * short.shape[-1] <= len(cols_at) * short.shape[-2]:
            return short.index_select(-2, rows_at).index_select(-1, cols_at)
        return short.index_select(-1, cols_at).index_select(-2, rows_at)


@dataclass
class _Frame:
    """What a framed layer reads around the window the previous layer computed, for one
    input size: the patch's place in the layer's padded input, the window's place in the
    patch, and the strips of the all-zero image's map around it."""

    shape: tuple[int, int]
    window: tuple[slice, slice]
    strips: list[tuple[slice, slice, torch.Tensor]]

    @classmethod
    def of(cls, zero: _ZeroMap, rows: tuple[int, int], cols: tuple[int, int], window) -> _Frame:
        """The frame of ``window`` (rows, columns in the patch) in the patch ``rows`` ×
        ``cols`` of the padded input."""
        (r0, r1), (c0, c1) = rows, cols
        inner_rows, inner_cols = window
        around = [
            (slice(0, inner_rows.start), slice(0, c1 - c0)),
            (slice(inner_rows.stop, r1 - r0), slice(0, c1 - c0)),
            (inner_rows, slice(0, inner_cols.start)),
            (inner_rows, slice(inner_cols.stop, c1 - c0)),
        ]
        strips = [
            (r, c, zero.read(_shift(r, r0), _shift(c, c0)))
            for r, c in around
            if r.stop > r.start and c.stop > c.start
        ]
        return cls((r1 - r0, c1 - c0), window, strips)

    @property
    def nbytes(self) -> int:
        return sum(s.numel() * s.element_size() for *_, s in self.strips)

    def around(self, x: torch.Tensor) -> torch.Tensor:
        """The patch: ``x`` in its window, framed."""
        patch = torch.empty(
            (*x.shape[:2], *self.shape),
            dtype=x.dtype,
            device=x.device,
            memory_format=_memory_format(x),
        )
        patch[(..., *self.window)] = x
        for r, c, strip in self.strips:
            patch[..., r, c] = strip
        return patch


@dataclass
class _Size:
    """What is kept for one input size: the frame each framed layer reads, and the skip
    pools' maps for an all-zero image where their windows are not whole."""

    frames: list[_Frame | None]
    pools: dict[str, torch.Tensor]

    @property
    def nbytes(self) -> int:
        maps = sum(m.numel() * m.element_size() for m in self.pools.values())
        return maps + sum(f.nbytes for f in self.frames if f)


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
        if not torch_internals.version_counters():  # unseen weight changes: keep nothing
            return self.model(x)
        return self.model.run_padded(self._forward_valid, x)

    def _forward_valid(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        return self.model.head(*self._trunk(x), height, width)

    def _trunk(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        key = _key(self.model, x)
        with self._lock:
            if key[-1] != self._versions:  # the weights changed: what was kept is stale
                self._convs, self._versions = PackedConvs(), key[-1]
                self._sizes.clear()
        if not _worth_windows(x, self._ceil):
            return self.model.trunk(x, relu_conv=self._relu_conv)
        with self._lock:
            kept = self._sizes.get(key)
            if kept is not None:
                self._sizes.move_to_end(key)
        if kept is None:
            kept = self._kept(x)
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

    def _zero_maps(self, x: torch.Tensor) -> list[_ZeroMap | None]:
        """The padded input of every framed layer for an all-zero image: the trunk, up to
        the last of them, on an all-zero input shortened as far as its rims allow."""
        height, width = x.shape[-2:]
        framed = [t for _, _, t in frame_plan(height, width, self._ceil)]
        layers = max(i for i, t in enumerate(framed) if t) + 1
        short_h = zero_shortened(height, layers, self._ceil)
        short_w = zero_shortened(width, layers, self._ceil)
        rows = zero_index(height, short_h, self._ceil)
        cols = zero_index(width, short_w, self._ceil)
        z = x.new_zeros(1, x.shape[1], short_h, short_w)
        maps: list[_ZeroMap | None] = []
        for i, layer in enumerate(TRUNK[:layers]):
            index_h, index_w = rows[i].to(x.device), cols[i].to(x.device)
            maps.append(_ZeroMap(_padded(z, layer), index_h, index_w) if framed[i] else None)
            if isinstance(layer, Conv):
                z = self._relu_conv(getattr(self.model, layer.name), z, layer.pad)
            else:
                z = getattr(self.model, layer.name)(z)
        return maps

    def _kept(self, x: torch.Tensor) -> _Size:
        """What a size keeps: the frames its patches read, and the skip pools' borders, read
        once from the all-zero image's maps, which are then dropped."""
        height, width = x.shape[-2:]
        zero = self._zero_maps(x)
        frames: list[_Frame | None] = []
        pools = {}
        rows_in, cols_in = Window(0, height, height), Window(0, width, width)
        for i, (layer, (rows, cols, framed)) in enumerate(
            zip(TRUNK, frame_plan(height, width, self._ceil), strict=True)
        ):
            pad = layer.pad if isinstance(layer, Conv) else 0
            frame = None
            if framed:
                span_rows = patch_span(layer, rows, rows_in.size)
                span_cols = patch_span(layer, cols, cols_in.size)
                # The input window lies inside the patch (tested over sizes, both roundings).
                top, left = rows_in.lo + pad - span_rows[0], cols_in.lo + pad - span_cols[0]
                window = (
                    slice(top, top + rows_in.hi - rows_in.lo),
                    slice(left, left + cols_in.hi - cols_in.lo),
                )
                frame = _Frame.of(zero[i], span_rows, span_cols, window)
            frames.append(frame)
            if layer.name in SKIP_POOLS and not (rows.full and cols.full):
                consumer = TRUNK[i + 1]  # a convolution, framed: its input is not whole
                p = consumer.pad
                pools[layer.name] = zero[i + 1].read(
                    slice(p, p + rows.size), slice(p, p + cols.size)
                )
            rows_in, cols_in = rows, cols
        return _Size(frames, pools)

    def _windowed(self, x: torch.Tensor, kept: _Size):
        pools = {}
        height, width = x.shape[-2:]
        for i, (layer, (rows, cols, _)) in enumerate(
            zip(TRUNK, frame_plan(height, width, self._ceil), strict=True)
        ):
            module = getattr(self.model, layer.name)
            frame = kept.frames[i]
            padding = layer.pad if isinstance(layer, Conv) and frame is None else 0
            if frame is not None:
                x = frame.around(x)
            if isinstance(layer, Conv):
                x = self._relu_conv(module, x, padding)
            else:
                x = module(x)
                if layer.name in SKIP_POOLS:
                    pools[layer.name] = _whole(x, rows, cols, kept.pools.get(layer.name))
        return x, pools


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype convolutions compute in: autocast's when it is on, else the input's."""
    if torch.is_autocast_enabled(x.device.type):
        return torch.get_autocast_dtype(x.device.type)
    return x.dtype


def _key(model: FCN, x: torch.Tensor) -> tuple:
    # A parameter changed in place (an optimiser step, a load) bumps its version.
    versions = tuple(torch_internals.version(p) for p in model.parameters())
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


def _shift(positions: slice, offset: int) -> slice:
    return slice(positions.start + offset, positions.stop + offset)


def _whole(
    window: torch.Tensor, rows: Window, cols: Window, zero: torch.Tensor | None
) -> torch.Tensor:
    """A pool map in full, as the skips read it: the window over the all-zero image's."""
    if zero is None:
        return window
    whole = zero.clone(memory_format=_memory_format(window))  # concurrent calls share `zero`
    whole[..., rows.lo : rows.hi, cols.lo : cols.hi] = window
    return whole
