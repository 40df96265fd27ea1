"""One-call conveniences over `Segmenter`: one image, or many paths. For repeated calls on
images of the same size, keep a `Segmenter`: it keeps what it learnt of each size."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

import numpy as np
from PIL import Image

from fcnxs.core.errors import FcnxsError
from fcnxs.inference.file_pipeline import segment_stream
from fcnxs.inference.segmenter import Segmenter, labels_of
from fcnxs.model.fcn import FCN

ImageLike = Image.Image | np.ndarray | str | os.PathLike


def segment(
    model: FCN, image: ImageLike, *, return_scores: bool = False, tile: int | str | None = None
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """The H×W label map of an image, and with ``return_scores`` its (C, H, W) scores.

    ``image`` is a PIL image (any mode; transparency over the model's mean colour), an
    H×W×3 uint8 RGB array or a path (EXIF orientation applied). ``tile`` ("auto" or a
    size in pixels) runs large images in blended overlapping tiles.
    """
    segmenter = Segmenter(model, tile=tile)
    if not return_scores:
        return segmenter.labels(image)
    scores = segmenter.scores(image)
    return labels_of(scores), scores.numpy()


def segment_paths(
    model: FCN, paths: Iterable[str | os.PathLike], *, tile: int | str | None = "auto"
) -> Iterator[tuple[str | os.PathLike, np.ndarray | FcnxsError]]:
    """(path, label map) for each path in order, or (path, the error) for one that cannot be
    read; decoded ahead by the file pipeline while the model runs."""
    segmenter = Segmenter(model, tile=tile)
    for path, _, outcome in segment_stream(segmenter, list(paths), show_progress=False):
        yield path, outcome
