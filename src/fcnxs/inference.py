"""The public way to segment: one image, or many paths."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator

import numpy as np
import torch
from PIL import Image

from fcnxs.errors import FcnxsError
from fcnxs.model import FCN

ImageLike = Image.Image | np.ndarray | str | os.PathLike


@contextlib.contextmanager
def evaluating(model: FCN) -> Iterator[FCN]:
    """Run ``model`` in eval mode under inference mode, restoring its mode afterwards."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield model
    finally:
        model.train(was_training)


def labels_of(scores: torch.Tensor) -> np.ndarray:
    """Argmax over classes, as uint8 (a model has at most 255 classes)."""
    return scores.argmax(0).to(torch.uint8).numpy()


def segment(
    model: FCN, image: ImageLike, *, return_scores: bool = False, tile: int | str | None = None
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """The H×W label map of an image, and with ``return_scores`` its (C, H, W) scores.

    ``image`` is a PIL image (any mode; transparency over the model's mean colour), an
    H×W×3 uint8 RGB array or a path (EXIF orientation applied). ``tile`` ("auto" or a
    size in pixels) runs large images in blended overlapping tiles.
    """
    from fcnxs.segmenter import Segmenter

    segmenter = Segmenter(model, device=model.device.type, tile=tile)
    scores = segmenter.scores(image)
    labels = labels_of(scores)
    return (labels, scores.numpy()) if return_scores else labels


def segment_paths(
    model: FCN, paths: Iterable[str | os.PathLike], *, tile: int | str | None = "auto"
) -> Iterator[tuple[str | os.PathLike, np.ndarray | FcnxsError]]:
    """(path, label map) for each path, or (path, the error) for one that cannot be read."""
    from fcnxs.segmenter import Segmenter

    segmenter = Segmenter(model, device=model.device.type, tile=tile)
    for path in paths:
        try:
            yield path, labels_of(segmenter.scores(path))
        except FcnxsError as exc:
            yield path, exc
