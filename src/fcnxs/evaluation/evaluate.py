"""Evaluate a model, or label maps written by any tool, on a dataset: one confusion matrix
over the whole set (summed over processes under torchrun)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fcnxs.core.distributed import Context, sum_over_processes
from fcnxs.core.errors import FcnxsError, file_error
from fcnxs.core.precision import gpu_arithmetic
from fcnxs.core.progress import progress
from fcnxs.data.dataset import SegmentationData, batches, load_pair, make_loader, start_epoch
from fcnxs.data.images import write_label_png
from fcnxs.data.labels import read_label
from fcnxs.data.layouts import MASK_SUFFIXES, Dataset, Sample
from fcnxs.evaluation.metrics import ConfusionMatrix
from fcnxs.inference.border_reuse import BorderReuse
from fcnxs.inference.tta import NO_TTA, TTA, averaged_probabilities
from fcnxs.model.fcn import FCN, evaluating


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


def evaluate_model(
    model: FCN,
    dataset: Dataset,
    *,
    context: Context | None = None,
    workers: int = 0,
    save_predictions: Path | None = None,
    tta: TTA = NO_TTA,
) -> Evaluation:
    """Whole-image inference over ``dataset`` (this process's share of it), with ``tta``
    averaging the class probabilities of its views."""
    context = context or Context()
    check_classes(model, dataset)
    loader = make_loader(
        SegmentationData(dataset, model.config.preprocessing),
        shuffle=False,
        workers=workers,
        rank=context.rank,
        world=context.world,
    )
    start_epoch(loader, 0)
    indices = loader.sampler.order()[context.rank :: context.world]
    matrix = ConfusionMatrix(model.config.num_classes)
    count = 0
    forward = BorderReuse(model, max_bytes=tta.cache_bytes)
    with evaluating(model), gpu_arithmetic("fp32", context.device):
        steps = zip(indices, batches(loader), strict=True)
        for index, (x, y, _) in progress(steps, len(indices), "evaluate", unit="img"):
            x = x.to(context.device)
            scores = averaged_probabilities(forward, x, tta) if tta.active else forward(x)
            pred = scores.argmax(1).cpu()
            matrix.update(y, pred)
            count += 1
            if save_predictions is not None:
                sample = dataset.samples[index]
                write_label_png(
                    pred[0].to(torch.uint8).numpy(),
                    dataset.classes.colors,
                    prediction_path(save_predictions, sample),
                )
    return _reduce(matrix, count, context)


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
