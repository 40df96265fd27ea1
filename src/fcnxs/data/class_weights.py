"""Class weights for imbalanced classes, from the pixel counts of one pass over the
training labels (void left out): the pass `fcnxs data check` makes.

- ``median-frequency`` (Eigen & Fergus, 2015): w_c = median(f) / f_c, where f_c is the
  pixels of class c over the pixels of the images in which c appears.
- ``inverse-frequency``: w_c = 1 / f_c with f_c = pixels of c over all pixels, scaled so
  that the classes present average 1.
- a file: one weight per class, in class order (blank lines and ``#`` comments skipped).

A class that never appears gets weight 0: no pixel ever asks for it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fcnxs.core.errors import FcnxsError, file_error, read_text

WEIGHTINGS = ("median-frequency", "inverse-frequency")


def median_frequency(counts: np.ndarray, present_pixels: np.ndarray) -> list[float]:
    seen = counts > 0
    frequency = np.zeros(len(counts))
    frequency[seen] = counts[seen] / present_pixels[seen]
    weights = np.zeros(len(counts))
    weights[seen] = np.median(frequency[seen]) / frequency[seen]
    return weights.tolist()


def inverse_frequency(counts: np.ndarray) -> list[float]:
    seen = counts > 0
    weights = np.zeros(len(counts))
    weights[seen] = counts.sum() / counts[seen]
    weights[seen] /= weights[seen].mean()
    return weights.tolist()


def read_weights_file(path: str | Path, num_classes: int) -> list[float]:
    text = read_text(path, "class-weights file")
    values = [ln.split("#", 1)[0].strip() for ln in text.splitlines()]
    try:
        weights = [float(v) for v in values if v]
    except ValueError:
        raise file_error(path, "expected one number per line, one line per class") from None
    if len(weights) != num_classes:
        raise file_error(path, f"holds {len(weights)} weights for {num_classes} classes")
    if any(not np.isfinite(w) or w < 0 for w in weights):
        raise file_error(path, "weights must be finite and at least 0")
    return weights


def weights_from_counts(spec: str, counts: np.ndarray, present_pixels: np.ndarray) -> list[float]:
    """The weights of a weighting of `WEIGHTINGS`, from `fcnxs.data.check`'s counts."""
    if spec == "median-frequency":
        return median_frequency(counts, present_pixels)
    if spec == "inverse-frequency":
        return inverse_frequency(counts)
    raise FcnxsError(
        f"unknown class weighting {spec!r} (expected {', '.join(WEIGHTINGS)} or a file)"
    )
