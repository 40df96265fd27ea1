"""Evaluate a model, or label maps written by any tool, on a dataset: one confusion matrix
over the whole set (summed over processes under torchrun)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fcnxs.core.distributed import Context, sum_over_processes
from fcnxs.core.errors import FcnxsError, Problems, file_error
from fcnxs.core.progress import progress
from fcnxs.data.dataset import MASK_SUFFIXES, Dataset, Sample, load_pair, read_truth
from fcnxs.data.images import write_label_png
from fcnxs.data.labels import read_label
from fcnxs.evaluation.metrics import ConfusionMatrix
from fcnxs.inference.file_pipeline import segment_files
from fcnxs.inference.segmenter import Segmenter
from fcnxs.model.fcn import FCN


@dataclass
class Evaluation:
    hist: np.ndarray
    num_images: int


def check_classes(model: FCN, dataset: Dataset) -> None:
    if model.config.num_classes != len(dataset.classes):
        raise FcnxsError(
            f"the model has {model.config.num_classes} classes, the dataset "
            f"{len(dataset.classes)} (name its classes with `classes_file`)"
        )


def _reduce(matrix: ConfusionMatrix, count: int, context: Context) -> Evaluation:
    hist = sum_over_processes(torch.from_numpy(matrix.hist), context).numpy()
    total = int(sum_over_processes(torch.tensor([count]), context)[0])
    return Evaluation(hist, total)


class _Scoring:
    """The pipeline's sink for evaluation: an item is a sample's index; its labels are
    counted against the truth, and saved as a palette PNG where asked for."""

    def __init__(self, dataset: Dataset, num_classes: int, save: Path | None, colors) -> None:
        self.dataset, self.save, self.colors = dataset, save, colors
        self.matrix = ConfusionMatrix(num_classes)
        self._lock = threading.Lock()  # a GPU's run has several writer threads

    def scores(self, index: int, shape: tuple[int, int, int]) -> None:
        return None

    def write(self, index: int, rgb: np.ndarray, labels: np.ndarray) -> None:
        truth = read_truth(self.dataset, index, labels.shape)
        with self._lock:
            self.matrix.update(truth, labels)
        if self.save is not None:
            path = prediction_path(self.save, self.dataset.samples[index])
            write_label_png(labels, self.colors, path)

    def discard(self, index: int) -> None:
        if self.save is not None:
            prediction_path(self.save, self.dataset.samples[index]).unlink(missing_ok=True)


def evaluate_model(
    model: FCN | Segmenter,
    dataset: Dataset,
    *,
    context: Context | None = None,
    batch_size: int | None = None,
    workers: int | None = None,
    save_predictions: Path | None = None,
) -> Evaluation:
    """The confusion matrix of a model over ``dataset`` (this process's share of it), run by
    the one engine: a `Segmenter` (its precision, tiles and test-time augmentation; a bare
    model runs in fp32) through the file pipeline, each image decoded as ``segment``
    decodes it, so the matrix is that of ``segment`` followed by `evaluate_predictions`.
    Any sample that cannot be read or scored is an error: a metric over part of a set
    would mislead."""
    context = context or Context()
    segmenter = model if isinstance(model, Segmenter) else Segmenter(model, tile="auto")
    config = segmenter.model.config
    check_classes(segmenter.model, dataset)
    sink = _Scoring(dataset, config.num_classes, save_predictions, config.colors)
    summary = segment_files(
        segmenter,
        range(len(dataset))[context.rank :: context.world],
        sink,
        read=lambda index: dataset.samples[index].image,
        batch_size=batch_size,
        decoders=workers,
        desc="evaluate",
        show_progress=context.is_main,
    )
    if summary.failures:
        raise Problems([str(exc) for _, exc in summary.failures])
    return _reduce(sink.matrix, summary.written, context)


def prediction_path(folder: Path, sample: Sample) -> Path:
    """Where ``evaluate_model`` saves a sample's predicted labels."""
    return folder / f"{sample.image.stem}.png"


def prediction_file(folder: Path, sample: Sample) -> Path:
    """A sample's label map in a folder of predictions written by any tool."""
    for suffix in (".png", *MASK_SUFFIXES):
        candidate = folder / f"{sample.image.stem}{suffix}"
        if candidate.is_file():
            return candidate
    raise file_error(folder / f"{sample.image.stem}.png", "no such prediction file")


def evaluate_predictions(
    folder: Path, dataset: Dataset, context: Context | None = None
) -> Evaluation:
    """Label maps of any tool, matched to the samples by image stem."""
    context = context or Context()
    if not folder.is_dir():
        raise file_error(folder, "no such predictions folder")
    matrix = ConfusionMatrix(len(dataset.classes))
    indices = list(range(len(dataset)))[context.rank :: context.world]
    for index in progress(indices, len(indices), "evaluate", unit="img"):
        path = prediction_file(folder, dataset.samples[index])
        _, truth = load_pair(dataset, index)
        pred = read_label(path, dataset.classes)
        if pred.shape != truth.shape:
            raise file_error(
                path,
                f"is {pred.shape[1]}×{pred.shape[0]}, the truth {truth.shape[1]}×{truth.shape[0]}",
            )
        try:
            matrix.update(truth, pred)
        except ValueError as exc:
            raise file_error(path, f"holds labels outside the classes ({exc})") from None
    return _reduce(matrix, len(indices), context)
