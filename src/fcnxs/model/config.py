"""What a model is, as data: architecture, classes, preprocessing and semantics.

The same FCN came out of three frameworks that differ in small ways (rounding of odd pool
sizes, output padding of the upsamplers, channel order and mean of the input). A model
carries these settings with its weights, so that every imported file keeps giving the
outputs of the framework that wrote it. The configuration travels as JSON in the native
model file's metadata.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from fcnxs.core.palette import MAX_CLASSES, default_class_names, voc_colormap
from fcnxs.model.architecture import ARCHS, CROPS


@dataclass(frozen=True)
class Preprocessing:
    """How 0..255 pixels become the network's input: ``(pixel * scale - mean) / std``.

    ``mean`` and ``std`` are given in ``channel_order``, the order the first convolution
    expects, and in the scaled units.
    """

    channel_order: str = "RGB"
    scale: float = 1.0
    mean: tuple[float, float, float] = (123.68, 116.779, 103.939)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)


MXNET_PREPROCESSING = Preprocessing()
CAFFE_PREPROCESSING = Preprocessing("BGR", 1.0, (104.00699, 116.66877, 122.67892))
TORCHVISION_PREPROCESSING = Preprocessing(
    "RGB", 1 / 255, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
)


@dataclass(frozen=True)
class Semantics:
    """The framework-specific details that change a model's outputs.

    ``crop_offsets`` None means "derived from the layers" (the Caffe reference values);
    an imported 2015 MXNet symbol may store other values, which then win.
    ``pool4_scale``/``pool3_scale`` are the "at-once" FCN-8s's fixed scalings of the pool
    features before scoring (0.01 and 0.0001 there, 1 everywhere else).
    """

    pool_rounding: str = "floor"
    upsample_output_padding: bool = True
    crop_offsets: dict[str, int] | None = None
    pool4_scale: float = 1.0
    pool3_scale: float = 1.0


MXNET_SEMANTICS = Semantics()
CAFFE_SEMANTICS = Semantics(pool_rounding="ceil", upsample_output_padding=False)


@dataclass(frozen=True)
class ModelConfig:
    """Everything besides the weights that is needed to use a model."""

    arch: str
    num_classes: int = 21
    class_names: tuple[str, ...] = ()
    colors: tuple[tuple[int, int, int], ...] = ()
    preprocessing: Preprocessing = MXNET_PREPROCESSING
    semantics: Semantics = MXNET_SEMANTICS
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.class_names:
            object.__setattr__(self, "class_names", tuple(default_class_names(self.num_classes)))
        if not self.colors:
            colors = voc_colormap(self.num_classes)
            object.__setattr__(self, "colors", tuple(colors))
        object.__setattr__(self, "class_names", tuple(self.class_names))
        object.__setattr__(self, "colors", tuple(tuple(c) for c in self.colors))
        validate(self)

    def replace(self, **changes: Any) -> ModelConfig:
        return dataclasses.replace(self, **changes)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelConfig:
        """Parse and validate; raises ValueError with a one-line reason."""
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"configuration is not valid JSON ({exc.msg})") from None
        if not isinstance(raw, dict):
            raise ValueError("configuration is not a JSON object")
        try:
            pre = Preprocessing(**_tuples(raw.pop("preprocessing", {})))
            sem = Semantics(**raw.pop("semantics", {}))
            return cls(preprocessing=pre, semantics=sem, **raw)
        except TypeError as exc:
            raise ValueError(f"configuration has unexpected fields ({exc})") from None


def _tuples(d: dict[str, Any]) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}


def validate(config: ModelConfig) -> None:
    """Raise ValueError naming the first inconsistent field."""
    if config.arch not in ARCHS:
        raise ValueError(f"unknown architecture {config.arch!r} (expected one of {ARCHS})")
    n = config.num_classes
    if not isinstance(n, int) or not 1 <= n <= MAX_CLASSES:
        raise ValueError(
            f"num_classes must be an integer from 1 to {MAX_CLASSES} (label maps are 8-bit, "
            f"255 is void), got {n!r}"
        )
    if len(config.class_names) != n:
        raise ValueError(f"{len(config.class_names)} class names for {n} classes")
    if len(config.colors) != n or any(
        len(c) != 3 or not all(isinstance(v, int) and 0 <= v <= 255 for v in c)
        for c in config.colors
    ):
        raise ValueError(f"colors must be {n} RGB triples of integers in 0..255")
    pre = config.preprocessing
    if pre.channel_order not in ("RGB", "BGR"):
        raise ValueError(f"channel_order must be RGB or BGR, got {pre.channel_order!r}")
    if len(pre.mean) != 3 or len(pre.std) != 3 or any(s <= 0 for s in pre.std):
        raise ValueError("preprocessing mean and std must have 3 values, std positive")
    sem = config.semantics
    if sem.pool_rounding not in ("floor", "ceil"):
        raise ValueError(f"pool_rounding must be floor or ceil, got {sem.pool_rounding!r}")
    if sem.crop_offsets is not None:
        expected = set(CROPS[config.arch])
        if set(sem.crop_offsets) != expected:
            raise ValueError(f"crop_offsets must name exactly {sorted(expected)}")
        if any(not isinstance(v, int) or v < 0 for v in sem.crop_offsets.values()):
            raise ValueError("crop offsets must be non-negative integers")
