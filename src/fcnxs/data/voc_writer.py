"""Writing datasets in the VOC layout that every command reads: ``JPEGImages/<id>.jpg``,
``SegmentationClass/<id>.png`` (palette PNGs of class indices, 255 void),
``ImageSets/Segmentation/{train,val,trainval}.txt`` and ``classes.txt``.

An import (labelme, COCO) converts every file first into a temporary folder beside the
output and renames it into place at the end: a failed import leaves nothing, a finished
one a whole dataset (docs/design.md §8).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from fcnxs.core.atomic import atomic_dir, write_bytes, write_text
from fcnxs.core.errors import FcnxsError, Problems
from fcnxs.core.progress import progress
from fcnxs.data.classes import CLASSES_FILE, ClassList, write_classes_file
from fcnxs.data.images import write_label_png

log = logging.getLogger(__name__)

JPEG_QUALITY = 95
EXIF_ORIENTATION = 0x0112


class ImportProblems(Problems):
    """Files that could not be converted; nothing was written."""

    exit_status = 1


@dataclass(frozen=True)
class Converted:
    """One sample of another tool's dataset: its image as decoded (EXIF orientation
    applied), the image file's bytes as they were, and its H×W uint8 label map."""

    image: Image.Image
    encoded: bytes
    label: np.ndarray


def write_index(root: Path, train: Sequence[str], val: Sequence[str], classes: ClassList) -> None:
    """The split files and classes.txt of a VOC-layout root."""
    splits = {"train": sorted(train), "val": sorted(val), "trainval": sorted([*train, *val])}
    for split, members in splits.items():
        write_text(
            root / "ImageSets" / "Segmentation" / f"{split}.txt", "".join(f"{m}\n" for m in members)
        )
    write_classes_file(classes, root / CLASSES_FILE)


def _jpeg(sample: Converted) -> bytes:
    """The image as JPEGImages holds it: the original bytes when they are a JPEG that every
    reader shows as stored (no EXIF rotation, RGB or grey), else encoded afresh."""
    if sample.encoded[:3] == b"\xff\xd8\xff":
        with Image.open(io.BytesIO(sample.encoded)) as original:
            as_stored = original.getexif().get(EXIF_ORIENTATION, 1) == 1
            if as_stored and original.mode in ("RGB", "L"):
                return sample.encoded
    buffer = io.BytesIO()
    sample.image.convert("RGB").save(buffer, "JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def _split(ids: list[str], val_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """A seeded random share of the ids for validation, at least one left to train on."""
    order = np.random.default_rng(seed).permutation(len(ids))
    num_val = min(round(len(ids) * val_fraction), len(ids) - 1)
    val = {ids[i] for i in order[:num_val]}
    return [i for i in ids if i not in val], [i for i in ids if i in val]


def write_voc_dataset(
    out: Path,
    sources: Sequence[tuple[str, Callable[[], Converted]]],
    classes: ClassList,
    *,
    val_fraction: float = 0.25,
    seed: int = 0,
    skip_bad: bool = False,
    desc: str = "import",
) -> list[str]:
    """Convert every (id, convert) source into a new VOC-layout dataset at ``out``; the
    problems found, one line each (the files left out with ``skip_bad``).

    Without ``skip_bad`` any problem raises `ImportProblems` listing all of them, and
    nothing is written."""
    problems: list[str] = []
    written: list[str] = []
    with atomic_dir(out) as tmp:
        for sample_id, convert in progress(sources, len(sources), desc, unit="file"):
            try:
                sample = convert()
            except FcnxsError as exc:
                problems.append(str(exc))
                continue
            if problems and not skip_bad:
                continue  # nothing will be written: only look for further problems
            write_bytes(tmp / "JPEGImages" / f"{sample_id}.jpg", _jpeg(sample))
            write_label_png(
                sample.label, classes.colors, tmp / "SegmentationClass" / f"{sample_id}.png"
            )
            written.append(sample_id)
        if problems and not skip_bad:
            raise ImportProblems([*problems, f"nothing written: {len(problems)} files with "
                                  "problems (`skip_bad` leaves them out)"])  # fmt: skip
        if not written:
            raise ImportProblems([*problems, "nothing written: no file could be converted"])
        write_index(tmp, *_split(written, val_fraction, seed), classes)
    for problem in problems:
        log.warning("left out: %s", problem)
    return problems
