"""Receptive-field arithmetic: crop offsets and feature-map sizes, derived from the layers.

Each sliding-window layer maps a position in its output to the centre of the window it
reads in its input by an affine map ``x_in = a * x_out + b``. Composing these maps from the
image up gives, for every feature map, where its positions sit in image coordinates. Two
maps with the same scale ``a`` line up after cropping the larger one at
``offset = (b_ref - b_map) / a``; that is how the original computed its crop offsets and how
we do. Sizes are computed the same way, one axis at a time, without running the network.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from fractions import Fraction

from fcnxs.model.architecture import (
    FINAL_CROP,
    FINAL_UPSAMPLER,
    HEADS,
    SKIP_STRIDE,
    TRUNK,
    Conv,
    Pool,
)
from fcnxs.model.config import ModelConfig, Semantics


@dataclass(frozen=True)
class Axis:
    """One axis of a convolution, pooling or transposed convolution."""

    kernel: int
    stride: int = 1
    pad: int = 0
    transposed: bool = False
    output_padding: int = 0
    ceil: bool = False

    def out_size(self, n: int) -> int:
        """Output length for input length ``n`` (0 when the input is too small)."""
        if n <= 0:
            return 0
        if self.transposed:
            return (n - 1) * self.stride - 2 * self.pad + self.kernel + self.output_padding
        span = n + 2 * self.pad - self.kernel
        if span < 0:
            return 0
        steps = -(-span // self.stride) if self.ceil else span // self.stride
        # PyTorch and Caffe drop a last window that would start beyond the input.
        if self.ceil and steps * self.stride >= n + self.pad:
            steps -= 1
        return steps + 1

    def to_input(self) -> tuple[Fraction, Fraction]:
        """(a, b) with ``x_in = a * x_out + b`` for the window centre."""
        centre = Fraction(self.kernel - 1, 2) - self.pad
        if self.transposed:
            return Fraction(1, self.stride), -centre / self.stride
        return Fraction(self.stride), centre


def compose(path: list[Axis]) -> tuple[Fraction, Fraction]:
    """(a, b) mapping positions of the last layer of ``path`` to image coordinates."""
    a, b = Fraction(1), Fraction(0)
    for window in path:
        wa, wb = window.to_input()
        a, b = a * wa, a * wb + b
    return a, b


def crop_offset(path: list[Axis], reference: list[Axis]) -> int:
    """Offset at which the map at the end of ``path`` lines up with ``reference``'s."""
    a, b = compose(path)
    ref_a, ref_b = compose(reference)
    if a != ref_a:
        raise ValueError(f"maps of different scales ({a} vs {ref_a}) cannot be aligned by a crop")
    offset = (ref_b - b) / a
    if offset.denominator != 1 or offset < 0:
        raise ValueError(f"alignment needs a non-integral or negative crop offset ({offset})")
    return int(offset)


def trunk_path(until: str, semantics: Semantics) -> list[Axis]:
    """Axes from the image up to and including layer ``until``."""
    path: list[Axis] = []
    for layer in TRUNK:
        if isinstance(layer, Conv):
            path.append(Axis(layer.kernel, 1, layer.pad))
        elif isinstance(layer, Pool):
            path.append(Axis(2, 2, 0, ceil=semantics.pool_rounding == "ceil"))
        if layer.name == until:
            return path
    raise KeyError(until)


def upsampler(stride: int, semantics: Semantics) -> Axis:
    """A transposed convolution of kernel ``2 * stride``, with MXNet's ``adj`` if asked."""
    adj = stride - 1 if semantics.upsample_output_padding else 0
    return Axis(2 * stride, stride, 0, transposed=True, output_padding=adj)


def _head_paths(arch: str, semantics: Semantics):
    """Yield (crop, cropped map, its path, reference map, its path) for every crop.

    The reference of the last crop is the input image, whose path is empty.
    """
    head = HEADS[arch]
    scores = trunk_path("fc7", semantics)  # the 1×1 score layer does not move positions
    for skip in head.skips:
        upsampled = [*scores, upsampler(SKIP_STRIDE, semantics)]
        yield skip.crop, skip.pool, trunk_path(skip.pool, semantics), skip.upsampler, upsampled
        scores = upsampled
    final = [*scores, upsampler(head.final_stride, semantics)]
    yield FINAL_CROP, FINAL_UPSAMPLER, final, "data", []


def derive_crop_offsets(arch: str, semantics: Semantics | None = None) -> dict[str, int]:
    """The crop offsets that align every fused map, e.g. {'score_pool4c': 5, 'upscore': 27}.

    They do not depend on pool rounding or output padding: both only add rows at the end.
    """
    semantics = semantics or Semantics()
    return {crop: crop_offset(path, ref) for crop, _, path, _, ref in _head_paths(arch, semantics)}


def crop_offsets(config: ModelConfig) -> dict[str, int]:
    """The offsets a model uses: those stored in its semantics, else the derived ones."""
    return dict(config.semantics.crop_offsets or derive_crop_offsets(config.arch))


def _length(path: list[Axis], n: int) -> int:
    for window in path:
        n = window.out_size(n)
    return n


def feature_sizes(config: ModelConfig, n: int) -> dict[str, int]:
    """Length along one axis of every named map for an input of length ``n``."""
    sem = config.semantics
    sizes = {"data": n}
    for name in ("conv1_1", "pool1", "pool2", "pool3", "pool4", "pool5", "fc6", "fc7"):
        sizes[name] = _length(trunk_path(name, sem), n)
    for _, cropped, path, reference, ref_path in _head_paths(config.arch, sem):
        sizes[cropped] = _length(path, n)
        sizes[reference] = _length(ref_path, n)
    return sizes


def fits(config: ModelConfig, n: int) -> bool:
    """Whether an input of length ``n`` passes the network with every crop in range."""
    sizes = feature_sizes(config, n)
    if sizes["fc7"] < 1:
        return False
    offsets = crop_offsets(config)
    return all(
        sizes[cropped] >= offsets[crop] + sizes[reference]
        for crop, cropped, _, reference, _ in _head_paths(config.arch, config.semantics)
    )


@functools.lru_cache(maxsize=4096)
def _padded_length(config_json: str, n: int) -> int:
    config = ModelConfig.from_json(config_json)
    for m in range(max(n, 1), max(n, 1) + 256):
        if fits(config, m):
            return m
    raise ValueError(f"no input length from {n} passes the network")


def padded_length(config: ModelConfig, n: int) -> int:
    """The smallest input length ≥ ``n`` that the network can take (``n`` itself usually).

    Tiny inputs (fc6 needs a 7×7 pool5, so about 26 px under floor rounding) are padded
    to this length at the bottom and right, run, and cropped back.
    """
    semantic_key = ModelConfig(
        arch=config.arch, num_classes=1, semantics=config.semantics
    ).to_json()
    return _padded_length(semantic_key, n)
