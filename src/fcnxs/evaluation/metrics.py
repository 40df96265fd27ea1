"""The FCN reference metrics (docs/design.md §5), from one confusion matrix over the whole set.

``hist[true, pred]`` counts pixels whose true label is a class (void 255 is left out).
Pixel accuracy = trace / total; mean accuracy = nanmean(diag / row sums); IoU per class =
diag / (row + column − diag); mean IoU = nanmean(IoU); frequency-weighted IoU = Σ over
classes present in the truth of (row / total) · IoU. A class absent from both truth and
prediction has NaN IoU and is left out of the means, as the reference does. Per-image
scores are never averaged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


class ConfusionMatrix:
    """Accumulates ``hist[true, pred]`` over any number of label maps."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.hist = np.zeros((num_classes, num_classes), dtype=np.int64)

    def update(self, truth: np.ndarray | torch.Tensor, pred: np.ndarray | torch.Tensor) -> None:
        """Add one (or a batch of) truth/prediction maps of the same shape."""
        truth = _flat_long(truth)
        pred = _flat_long(pred).to(truth.device)
        if truth.shape != pred.shape:
            raise ValueError(f"truth has {truth.numel()} pixels, prediction {pred.numel()}")
        n = self.num_classes
        keep = (truth >= 0) & (truth < n)
        if bool(((pred[keep] < 0) | (pred[keep] >= n)).any()):
            raise ValueError(f"predictions must be classes 0..{n - 1}")
        counts = torch.bincount(truth[keep] * n + pred[keep], minlength=n * n)
        self.hist += counts.cpu().numpy().reshape(n, n)

    def __iadd__(self, other: ConfusionMatrix) -> ConfusionMatrix:
        self.hist += other.hist
        return self


def _flat_long(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        return torch.from_numpy(x.astype(np.int64).reshape(-1))
    return x.reshape(-1).long()


@dataclass(frozen=True)
class Scores:
    pixel_accuracy: float
    mean_accuracy: float
    mean_iou: float
    frequency_weighted_iou: float
    per_class_iou: np.ndarray
    per_class_accuracy: np.ndarray


def compute_scores(hist: np.ndarray) -> Scores:
    """All the reference metrics of one confusion matrix (fractions in [0, 1], NaN where a
    class is undefined)."""
    hist = hist.astype(np.float64)
    diag, truth, pred = np.diag(hist), hist.sum(1), hist.sum(0)
    total = hist.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        accuracy = diag / truth
        iou = diag / (truth + pred - diag)
        pixel = diag.sum() / total if total else float("nan")
    present = truth > 0
    freq = truth / total if total else truth
    return Scores(
        pixel_accuracy=float(pixel),
        mean_accuracy=_nanmean(accuracy),
        mean_iou=_nanmean(iou),
        frequency_weighted_iou=float((freq[present] * iou[present]).sum())
        if total
        else float("nan"),
        per_class_iou=iou,
        per_class_accuracy=accuracy,
    )


def _nanmean(values: np.ndarray) -> float:
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else float("nan")
