"""The FCN layer lists, as data (docs/design.md §2).

The model (`fcnxs.model.fcn`) builds its modules from these lists and the geometry
(`fcnxs.model.geometry`) derives crop offsets and feature-map sizes from the very same lists,
so the two cannot disagree. Layer names are the original ones, which are also the
parameter names of the native model file (``conv1_1.weight``, ``score2.weight``, ...).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Conv:
    """A stride-1 convolution followed by ReLU (and dropout for the fc layers)."""

    name: str
    in_channels: int
    out_channels: int
    kernel: int
    pad: int
    dropout: float = 0.0


@dataclass(frozen=True)
class Pool:
    """A 2×2 stride-2 max-pool; odd sizes are rounded as the model's semantics say."""

    name: str


def _vgg_block(index: int, in_channels: int, out_channels: int, convs: int, first_pad: int = 1):
    layers: list[Conv | Pool] = []
    for j in range(1, convs + 1):
        pad = first_pad if (index, j) == (1, 1) else 1
        layers.append(Conv(f"conv{index}_{j}", in_channels, out_channels, 3, pad))
        in_channels = out_channels
    layers.append(Pool(f"pool{index}"))
    return layers


TRUNK: tuple[Conv | Pool, ...] = (
    # conv1_1's pad of 100 is what lets any input size through fc6's 7×7 window.
    *_vgg_block(1, 3, 64, 2, first_pad=100),
    *_vgg_block(2, 64, 128, 2),
    *_vgg_block(3, 128, 256, 3),
    *_vgg_block(4, 256, 512, 3),
    *_vgg_block(5, 512, 512, 3),
    Conv("fc6", 512, 4096, 7, 0, dropout=0.5),
    Conv("fc7", 4096, 4096, 1, 0, dropout=0.5),
)
TRUNK_CHANNELS = {layer.name: layer.out_channels for layer in TRUNK if isinstance(layer, Conv)}
TRUNK_CHANNELS |= {"pool3": 256, "pool4": 512, "pool5": 512}

SCORE = "score"
"""1×1 convolution fc7 → classes (Caffe's ``score_fr``)."""
FINAL_UPSAMPLER = "bigscore"
FINAL_CROP = "upscore"
SKIP_STRIDE = 2


@dataclass(frozen=True)
class Skip:
    """A skip connection: score a pool layer, crop it to the 2×-upsampled coarser scores, add."""

    pool: str
    score: str
    upsampler: str
    crop: str


POOL4_SKIP = Skip("pool4", "score_pool4", "score2", "score_pool4c")
POOL3_SKIP = Skip("pool3", "score_pool3", "score4", "score_pool3c")


@dataclass(frozen=True)
class Head:
    """How an architecture turns the trunk's scores into a full-resolution map."""

    skips: tuple[Skip, ...]
    final_stride: int
    """Stride of ``bigscore``; its kernel is twice that (64, 32 or 16)."""


SKIP_POOLS = frozenset({POOL4_SKIP.pool, POOL3_SKIP.pool})
"""The pool maps a head may read besides fc7."""

HEADS: dict[str, Head] = {
    "fcn32s": Head((), 32),
    "fcn16s": Head((POOL4_SKIP,), 16),
    "fcn8s": Head((POOL4_SKIP, POOL3_SKIP), 8),
}


CROP_OF: dict[str, str] = {
    **{skip.score: skip.crop for skip in (POOL4_SKIP, POOL3_SKIP)},
    FINAL_UPSAMPLER: FINAL_CROP,
}
"""The crop that cuts each layer's output (the crops' names in the MXNet symbols)."""
ARCHS: tuple[str, ...] = tuple(HEADS)
"""The architectures, coarse to fine: the order of the staged recipe."""
CROPS: dict[str, tuple[str, ...]] = {
    arch: (*(skip.crop for skip in head.skips), FINAL_CROP) for arch, head in HEADS.items()
}
"""The crop layers of each architecture, named as in the MXNet symbols."""


def upsampler_names(arch: str) -> list[str]:
    """The transposed convolutions of an architecture, coarse to fine."""
    return [s.upsampler for s in HEADS[arch].skips] + [FINAL_UPSAMPLER]


def score_names(arch: str) -> list[str]:
    """The 1×1 scoring convolutions that a staged initialisation starts at zero."""
    return [SCORE] + [s.score for s in HEADS[arch].skips]


LAYER_NAMES: frozenset[str] = frozenset(
    [layer.name for layer in TRUNK if isinstance(layer, Conv)]
    + [SCORE, FINAL_UPSAMPLER]
    + [name for skip in (POOL4_SKIP, POOL3_SKIP) for name in (skip.score, skip.upsampler)]
)
"""Every layer with parameters in any FCN; a weight file naming another one is not an FCN."""


def arch_of(layer_names: set[str] | frozenset[str]) -> str | None:
    """The architecture whose head these layers form, or None for a bare VGG16 trunk."""
    for arch in reversed(ARCHS):  # the finest head that is complete
        if all(name in layer_names for name in score_names(arch)):
            return arch
    return None
