"""From samples to batches: decoding, validation, augmentation, normalisation, padding.

Order and augmentation are reproducible: the epoch's order comes from (seed, epoch) and
each sample's random generator from (seed, epoch, index), whichever worker loads it.
Under torchrun each process takes every world-th sample of the same order.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Sampler

from fcnxs.core.errors import FcnxsError
from fcnxs.core.palette import VOID_LABEL
from fcnxs.data.dataset import Dataset, load_pair
from fcnxs.data.transforms import Augmentation, crop_or_pad
from fcnxs.model.config import Preprocessing
from fcnxs.model.preprocessing import normalise

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BadSample:
    """A sample that could not be read, and why (one line naming the file).

    Returned rather than raised: an exception raised in a loader worker comes back to the
    main process wrapped with the worker's traceback, and users get one line, not that."""

    message: str


class SegmentationData(torch.utils.data.Dataset):
    """(normalised image (3, H, W) float32, label (H, W) int64) pairs of a `Dataset`, or a
    `BadSample`. `batches` raises on a bad sample, or with ``skip_bad`` reports, drops and
    counts it."""

    def __init__(
        self,
        dataset: Dataset,
        preprocessing: Preprocessing,
        augmentation: Augmentation | None = None,
        seed: int = 0,
        skip_bad: bool = False,
    ) -> None:
        self.dataset = dataset
        self.preprocessing = preprocessing
        self.augmentation = augmentation or Augmentation()
        self.transforms = self.augmentation.transforms()
        self.seed = seed
        self.epoch = 0
        self.skip_bad = skip_bad

    def __len__(self) -> int:
        return len(self.dataset)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor] | BadSample:
        try:
            image, label = load_pair(self.dataset, index)
        except FcnxsError as exc:
            return BadSample(str(exc))
        rng = np.random.default_rng([self.seed, self.epoch, index])
        for transform in self.transforms:
            image, label = transform(image, label, rng)
        pixels = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)
        x = normalise(pixels, self.preprocessing)
        y = torch.from_numpy(label.astype(np.int64))
        if self.augmentation.crop_size:
            x, y = crop_or_pad(x, y, self.augmentation.crop_size, rng)
        return x, y


def pad_collate(items: list) -> tuple[torch.Tensor | None, torch.Tensor | None, list[str]]:
    """Stack samples padded to the batch's largest size (image 0 = mean, label void);
    returns (images, labels, the messages of bad samples), images None if all were bad."""
    good = [item for item in items if not isinstance(item, BadSample)]
    bad = [item.message for item in items if isinstance(item, BadSample)]
    if not good:
        return None, None, bad
    h = max(x.shape[1] for x, _ in good)
    w = max(x.shape[2] for x, _ in good)
    images = torch.stack([F.pad(x, (0, w - x.shape[2], 0, h - x.shape[1])) for x, _ in good])
    labels = torch.stack(
        [F.pad(y, (0, w - y.shape[1], 0, h - y.shape[0]), value=VOID_LABEL) for _, y in good]
    )
    return images, labels, bad


def batches(loader: DataLoader) -> Iterator[tuple[torch.Tensor | None, torch.Tensor | None, int]]:
    """(images, labels, number of bad samples skipped) per batch of a `make_loader` loader;
    a bad sample raises `FcnxsError` naming its file unless the dataset's ``skip_bad``."""
    for images, labels, bad in loader:
        if bad and not loader.dataset.skip_bad:
            raise FcnxsError(bad[0])
        for message in bad:
            log.warning("skipping a bad sample: %s", message)
        yield images, labels, len(bad)


class EpochSampler(Sampler[int]):
    """A seeded order per epoch (or the natural order), sharded over ``world`` processes;
    ``skip`` leaves out this process's first samples (to resume within an epoch)."""

    def __init__(self, size: int, *, shuffle: bool, seed: int = 0, rank: int = 0, world: int = 1):
        self.size, self.shuffle, self.seed = size, shuffle, seed
        self.rank, self.world = rank, world
        self.epoch = 0
        self.skip = 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip

    def order(self) -> list[int]:
        if not self.shuffle:
            return list(range(self.size))
        return np.random.default_rng([self.seed, self.epoch]).permutation(self.size).tolist()

    def __iter__(self) -> Iterator[int]:
        return iter(self.order()[self.rank :: self.world][self.skip :])

    def __len__(self) -> int:
        return max(0, len(range(self.rank, self.size, self.world)) - self.skip)


def make_loader(
    data: SegmentationData,
    *,
    batch_size: int = 1,
    shuffle: bool = True,
    workers: int = 0,
    rank: int = 0,
    world: int = 1,
) -> DataLoader:
    """A loader whose order and augmentation follow ``data.seed``; call `set_epoch` on its
    sampler and dataset (see `start_epoch`) before each epoch."""
    sampler = EpochSampler(len(data), shuffle=shuffle, seed=data.seed, rank=rank, world=world)
    return DataLoader(
        data,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=pad_collate,
        persistent_workers=False,
        # A private generator: creating an iterator must not draw from the global RNG,
        # whose state (dropout) a resumed run restores exactly.
        generator=torch.Generator().manual_seed(data.seed),
    )


def start_epoch(loader: DataLoader, epoch: int, skip_batches: int = 0) -> None:
    """Set the epoch of a `make_loader` loader's order and augmentation, leaving out its
    first ``skip_batches`` batches (already trained on before an interruption)."""
    loader.sampler.set_epoch(epoch, skip_batches * loader.batch_size)
    loader.dataset.set_epoch(epoch)
