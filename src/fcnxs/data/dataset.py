"""A dataset as data: its samples (image and label files) and the classes their labels
use, and reading one sample's pair, checked (every reader of ground truth goes through
`Dataset.read_label`, docs/design.md §4). Where the samples of each layout are found is
`fcnxs.data.layouts`; batches for training are `fcnxs.data.loader`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fcnxs.core.errors import file_error
from fcnxs.core.palette import VOID_LABEL
from fcnxs.data.classes import ClassList
from fcnxs.data.images import read_image
from fcnxs.data.labels import read_label
from fcnxs.model.preprocessing import as_rgb_array

MASK_SUFFIXES = (".png", ".bmp", ".tif", ".tiff", ".mat")


@dataclass(frozen=True)
class Sample:
    id: str
    image: Path
    label: Path


@dataclass(frozen=True)
class Dataset:
    """A list of samples and the classes their labels use."""

    name: str
    samples: tuple[Sample, ...]
    classes: ClassList
    index_files: tuple[Path, ...] = ()
    """The files read to find the samples and classes (split or list file, classes file)."""
    label_map: tuple[int, ...] | None = None
    """256 entries: the class (or 255, void) of each value stored in the label files, for
    layouts that store other values than class indices (ADE20K, Cityscapes)."""

    def __len__(self) -> int:
        return len(self.samples)

    def read_label(self, sample: Sample) -> np.ndarray:
        """A sample's H×W uint8 map of class indices (255 = void)."""
        label = read_label(sample.label, self.classes)
        if self.label_map is None:
            return label
        return np.asarray(self.label_map, dtype=np.uint8)[label]

    def files(self) -> list[Path]:
        """Every file the dataset consists of: its samples and its index files."""
        return [p for s in self.samples for p in (s.image, s.label)] + list(self.index_files)


def load_pair(dataset: Dataset, index: int) -> tuple[np.ndarray, np.ndarray]:
    """A sample's RGB image and label map, checked against each other and the classes."""
    image = as_rgb_array(read_image(dataset.samples[index].image))
    return image, read_truth(dataset, index, image.shape[:2])


def read_truth(dataset: Dataset, index: int, shape: tuple[int, int]) -> np.ndarray:
    """A sample's label map, checked against its image's (height, width) and the classes."""
    sample = dataset.samples[index]
    label = dataset.read_label(sample)
    if tuple(shape) != label.shape:
        raise file_error(
            sample.label,
            f"is {label.shape[1]}×{label.shape[0]}, its image {sample.image.name} is "
            f"{shape[1]}×{shape[0]}",
        )
    values = np.unique(label)
    bad = values[(values >= len(dataset.classes)) & (values != VOID_LABEL)]
    if bad.size:
        raise file_error(
            sample.label,
            f"holds label {int(bad[0])}, outside 0..{len(dataset.classes) - 1} and 255",
        )
    return label
