"""``fcnxs data check``: read every pair of a dataset and report what is wrong, per file,
before hour three of training finds it."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fcnxs.core.errors import FcnxsError
from fcnxs.core.palette import VOID_LABEL
from fcnxs.core.progress import progress
from fcnxs.data.class_weights import median_frequency
from fcnxs.data.dataset import Dataset, load_pair


@dataclass
class DatasetReport:
    num_samples: int = 0
    problems: list[str] = field(default_factory=list)
    min_size: tuple[int, int] | None = None
    max_size: tuple[int, int] | None = None
    pixel_counts: np.ndarray | None = None
    """Pixels of each class over the dataset (void left out)."""
    present_pixels: np.ndarray | None = None
    """Per class, the non-void pixels of the images in which the class appears."""
    void_pixels: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def check_dataset(dataset: Dataset) -> DatasetReport:
    """Every sample is read exactly as training reads it; each failure is one problem."""
    report = DatasetReport(num_samples=len(dataset))
    counts = np.zeros(len(dataset.classes), dtype=np.int64)
    present = np.zeros(len(dataset.classes), dtype=np.int64)
    areas = []
    for index in progress(range(len(dataset)), len(dataset), "check", unit="img"):
        try:
            _, label = load_pair(dataset, index)
        except FcnxsError as exc:
            report.problems.append(str(exc))
            continue
        h, w = label.shape
        areas.append((h * w, h, w))
        here = np.bincount(label[label != VOID_LABEL].ravel(), minlength=len(counts))
        here = here[: len(counts)]
        counts += here
        present[here > 0] += int(here.sum())
        report.void_pixels += int((label == VOID_LABEL).sum())
    if areas:
        report.min_size = min(areas)[1:]
        report.max_size = max(areas)[1:]
    report.pixel_counts = counts
    report.present_pixels = present
    return report


def format_report(dataset: Dataset, report: DatasetReport) -> str:
    lines = [f"{dataset.name}: {report.num_samples} samples, {len(report.problems)} with problems"]
    if report.min_size:
        (h0, w0), (h1, w1) = report.min_size, report.max_size
        lines.append(f"sizes (W×H): smallest {w0}×{h0}, largest {w1}×{h1}")
    counts = report.pixel_counts
    total = int(counts.sum()) + report.void_pixels if counts is not None else 0
    if total:
        lines.append("class pixel frequencies:")
        for name, count in zip(dataset.classes.names, counts, strict=True):
            lines.append(f"  {name:<16} {count / total:8.2%}")
        lines.append(f"  {'(void 255)':<16} {report.void_pixels / total:8.2%}")
        weights = median_frequency(counts, report.present_pixels)
        lines.append("median-frequency class weights (train --class-weights median-frequency):")
        lines += [
            f"  {n:<16} {w:8.3f}" for n, w in zip(dataset.classes.names, weights, strict=True)
        ]
    return "\n".join(lines)
