"""Test-time augmentation: class probabilities averaged over views of an image.

Each view is the image rescaled (bilinear, antialiased when shrunk) and, with ``flip``, also
mirrored left-right; its softmax is mirrored back and resized to the input's size, and the
mean over the views decides each pixel. The identity (scale 1, no flip) is not a view
averaged with itself: without ``flip`` and with scales (1,), nothing changes at all and the
scores stay logits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from fcnxs.core.errors import FcnxsError
from fcnxs.inference.border_reuse import MAX_CACHED_BYTES

MAX_SCALE = 4.0
"""Beyond 4× an FCN's receptive field sees texture, not objects; and the memory grows as
the square of the scale."""


@dataclass(frozen=True)
class TTA:
    flip: bool = False
    scales: tuple[float, ...] = (1.0,)

    def __post_init__(self) -> None:
        if not self.scales or any(not 0 < s <= MAX_SCALE for s in self.scales):
            raise FcnxsError(f"`scales` must be in (0, {MAX_SCALE:g}], not {list(self.scales)}")

    @property
    def active(self) -> bool:
        """Whether any view differs from the image itself."""
        return self.flip or tuple(self.scales) != (1.0,)

    @property
    def largest(self) -> float:
        return max(self.scales)

    @property
    def cache_bytes(self) -> int:
        """Border reuse's budget for this TTA: its usual one for each size a view has. The
        views of an image come round in turn, the pattern in which a least-recently-used
        cache too small for all of them misses every time."""
        return MAX_CACHED_BYTES * len(set(self.scales))


NO_TTA = TTA()


def averaged_probabilities(
    forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, tta: TTA
) -> torch.Tensor:
    """The (N, C, H, W) mean softmax over the views of ``x`` (N, 3, H, W), float32."""
    height, width = x.shape[-2:]
    total, views = None, 0
    for scale in tta.scales:
        size = (max(1, round(height * scale)), max(1, round(width * scale)))
        scaled = x
        if size != (height, width):
            scaled = F.interpolate(
                x, size, mode="bilinear", align_corners=False, antialias=scale < 1
            )
        for mirrored in (False, True) if tta.flip else (False,):
            view = scaled.flip(-1) if mirrored else scaled
            probabilities = forward(view).float().softmax(1)
            if mirrored:
                probabilities = probabilities.flip(-1)
            if size != (height, width):
                probabilities = F.interpolate(
                    probabilities, (height, width), mode="bilinear", align_corners=False
                )
            total = probabilities if total is None else total + probabilities
            views += 1
    return total / views
