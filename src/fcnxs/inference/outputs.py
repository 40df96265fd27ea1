"""What ``fcnxs segment`` writes: label PNGs, overlays with a legend, scores as .npy
(`LabelFiles`, the pipeline's sink for them).

Every file is written under a temporary name and renamed when complete; the .npy score
files are filled band by band through a memory map, so a 6000×4000 image never holds its
2 GB of scores in memory. Their disk space is reserved before the first band: writing into
a memory map on a full disk would kill the process (SIGBUS), not raise an error.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from fcnxs.core.atomic import atomic_path, save_image
from fcnxs.core.palette import VOID_LABEL
from fcnxs.data.images import write_label_png
from fcnxs.model.config import ModelConfig

OUTPUTS = {"overlay": "_overlay.jpg", "logits": ".npy", "probabilities": "_probabilities.npy"}
"""What an input is written as besides its mask (``<name>.png``), when asked for."""


def output_files(out: Path, kinds: Iterable[str] = ()) -> dict[str, Path]:
    """The files one input is written as (``out`` is OUTDIR/<name>, without a suffix): its
    labels, and each of ``kinds`` (keys of `OUTPUTS`)."""
    ends = {"labels": ".png"} | {kind: OUTPUTS[kind] for kind in kinds}
    return {kind: out.with_name(out.name + end) for kind, end in ends.items()}


class Job(NamedTuple):
    """One input of ``segment`` and the files it is written as (`output_files`)."""

    source: Path
    files: dict[str, Path]

    def read(self) -> Path:
        return self.source


class LabelFiles:
    """The pipeline's sink for ``segment`` (its items are `Job`s): an input's label PNG, and
    its overlay and score files where asked for, are written together or not at all."""

    def __init__(self, config: ModelConfig, scores_are_probabilities: bool) -> None:
        self.config = config
        self.scores_are_probabilities = scores_are_probabilities

    def scores(self, job: Job, shape: tuple[int, int, int]):
        if "logits" not in job.files and "probabilities" not in job.files:
            return None
        return self._score_files(job.files, shape)

    @contextlib.contextmanager
    def _score_files(self, files: dict[str, Path], shape: tuple[int, int, int]):
        with contextlib.ExitStack() as stack:
            logits = probabilities = None
            if "logits" in files:
                logits = stack.enter_context(npy_stream(files["logits"], shape, np.float32))
            if "probabilities" in files:
                probabilities = stack.enter_context(
                    npy_stream(files["probabilities"], shape, np.float16)
                )

            def take(y0: int, y1: int, scores: torch.Tensor) -> None:
                if logits is not None:
                    logits[:, y0:y1] = scores.numpy()
                if probabilities is not None:
                    if not self.scores_are_probabilities:
                        scores = torch.softmax(scores, 0)
                    probabilities[:, y0:y1] = scores.numpy().astype(np.float16)

            yield take

    def write(self, job: Job, rgb: np.ndarray, labels: np.ndarray) -> None:
        config, files = self.config, job.files
        write_label_png(labels, config.colors, files["labels"])
        if "overlay" in files:
            write_overlay(
                overlay_image(rgb, labels, config.colors, config.class_names), files["overlay"]
            )

    def discard(self, job: Job) -> None:
        for path in job.files.values():
            path.unlink(missing_ok=True)


def overlay_image(
    rgb: np.ndarray, labels: np.ndarray, colors, names, alpha: float = 0.5
) -> Image.Image:
    """The image with every non-background class tinted in its colour, and a legend of
    the classes present (colour swatch and name): in the top-left corner, or, where it
    would cover more than a quarter of a small image, in a margin to its right."""
    palette = np.zeros((256, 3), np.float32)
    palette[: len(colors)] = np.asarray(colors, np.float32)[:256]
    tint = (labels > 0) & (labels != VOID_LABEL)
    out = rgb.astype(np.float32)
    out[tint] = (1 - alpha) * out[tint] + alpha * palette[labels[tint]]
    image = Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))
    present = [int(c) for c in np.unique(labels) if c != VOID_LABEL and c < len(names)]
    size = max(9, min(image.size) // 40)
    font = ImageFont.load_default(size=size)
    measure = ImageDraw.Draw(image)
    width = max(measure.textlength(names[c], font=font) for c in present) if present else 0
    line = int(size * 1.4)
    box = (int(16 + size + width + 8), 8 + line * len(present))
    if box[0] * box[1] > image.width * image.height / 4:
        canvas = Image.new("RGB", (image.width + box[0] + 4, max(image.height, box[1] + 8)))
        canvas.paste(image)
        image, left = canvas, image.width
    else:
        left = 0
    draw = ImageDraw.Draw(image, "RGBA")
    draw.rectangle((left + 4, 4, left + box[0], box[1]), fill=(0, 0, 0, 150))
    for row, c in enumerate(present):
        y = 8 + row * line
        swatch = (left + 10, y + 2, left + 10 + size, y + 2 + size)
        draw.rectangle(swatch, fill=tuple(colors[c]), outline="white")
        draw.text((left + 16 + size, y), names[c], fill="white", font=font)
    return image


def write_overlay(image: Image.Image, path: Path) -> None:
    save_image(image, path, "JPEG", quality=90)


@contextlib.contextmanager
def npy_stream(path: Path, shape: tuple[int, ...], dtype) -> Iterator[np.ndarray]:
    """A memory-mapped .npy array to fill in pieces; renamed into place when the block ends."""
    with atomic_path(path) as tmp:
        header = io.BytesIO()
        descr = np.lib.format.dtype_to_descr(np.dtype(dtype))
        np.lib.format.write_array_header_1_0(
            header, {"descr": descr, "fortran_order": False, "shape": shape}
        )
        offset = len(header.getvalue())
        size = offset + math.prod(shape) * np.dtype(dtype).itemsize
        with open(tmp, "r+b") as f:
            f.write(header.getvalue())
            _reserve(f, size)
        array = np.memmap(tmp, dtype=dtype, mode="r+", offset=offset, shape=shape)
        yield array
        array.flush()
        del array


def _reserve(f, size: int) -> None:
    """Allocate ``size`` bytes of disk for ``f`` now, so that a full disk is an OSError."""
    f.flush()
    if hasattr(os, "posix_fallocate"):
        os.posix_fallocate(f.fileno(), 0, size)
        return
    chunk = bytes(1 << 20)
    f.seek(0, os.SEEK_END)
    while f.tell() < size:
        f.write(chunk[: size - f.tell()])
    f.flush()
