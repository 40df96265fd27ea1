"""Segment one image: preprocessing, forward pass, argmax."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch
from PIL import Image

from fcnxs.model import FCN


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


def predict_scores(model: FCN, image: Image.Image | np.ndarray) -> torch.Tensor:
    """The (C, H, W) float32 class scores (before softmax) of one image, on the CPU."""
    with evaluating(model):
        x = model.preprocess(image).to(model.device)
        return model(x)[0].float().cpu()


def labels_from_scores(scores: torch.Tensor) -> np.ndarray:
    """Argmax over classes: uint8 for up to 256 classes, else int32."""
    dtype = torch.uint8 if scores.shape[0] <= 256 else torch.int32
    return scores.argmax(0).to(dtype).numpy()


def segment(
    model: FCN, image: Image.Image | np.ndarray, *, return_scores: bool = False
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """The H×W label map of an image, and with ``return_scores`` also its (C, H, W) scores.

    ``image`` is a PIL image (any mode) or an H×W×3 uint8 RGB array.
    """
    scores = predict_scores(model, image)
    labels = labels_from_scores(scores)
    return (labels, scores.numpy()) if return_scores else labels
