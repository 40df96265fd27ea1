"""``fcnxs segment INPUT... --model MODEL -o OUTDIR``: any files, any size, one or thousands.

Decoding runs ahead in threads and writing behind in another, so the model (loaded once)
is kept busy; a bad input is one line on stderr and the others go on.
"""

from __future__ import annotations

import argparse
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

from fcnxs.cli.common import add_model_arguments, open_segmenter, report_error
from fcnxs.errors import FcnxsError
from fcnxs.images import write_label_png
from fcnxs.inference import labels_of
from fcnxs.inputs import expand_inputs
from fcnxs.outputs import npy_stream, overlay_image, write_overlay
from fcnxs.precision import PRECISIONS
from fcnxs.progress import progress
from fcnxs.segmenter import Segmenter

PREFETCH = 2


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "segment",
        help="segment images into palette PNGs of class indices",
        description="Writes OUTDIR/<name>.png, a palette PNG of class indices in the model's "
        "colours, for every image (files, folders, glob patterns; a folder's layout is kept). "
        "Transparent pixels are composited over the model's mean colour; EXIF orientation is "
        "applied. Exit status 1 if some inputs failed, 2 if all did.",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or globs")
    add_model_arguments(p)
    p.add_argument("-o", "--out", required=True, metavar="OUTDIR", type=Path)
    p.add_argument("--recursive", action="store_true", help="descend into folders")
    p.add_argument("--overlay", action="store_true", help="also <name>_overlay.jpg with a legend")
    p.add_argument("--logits", action="store_true", help="also <name>.npy: float32 C×H×W scores")
    p.add_argument(
        "--probabilities",
        action="store_true",
        help="also <name>_probabilities.npy: float16 C×H×W softmax",
    )
    p.add_argument(
        "--tile",
        default="auto",
        metavar="auto|SIZE|none",
        help="overlapping tiles of SIZE pixels for large images (auto: from free memory)",
    )
    p.add_argument(
        "--max-pixels",
        type=int,
        metavar="N",
        help="decompression-bomb limit (default: Pillow's, about 89 M pixels)",
    )
    p.add_argument("--device", default="auto", help="cpu, cuda or auto")
    p.add_argument("--precision", choices=tuple(PRECISIONS), default="fp32")
    p.set_defaults(run=run)


def _segment_one(segmenter: Segmenter, rgb: np.ndarray, out: Path, args) -> np.ndarray:
    """Labels of one image, with its score files streamed band by band."""
    height, width = rgb.shape[:2]
    classes = segmenter.model.config.num_classes
    labels = np.zeros((height, width), np.uint8 if classes <= 256 else np.int32)
    shape = (classes, height, width)
    logits_file = out.with_suffix(".npy")
    probabilities_file = out.with_name(out.name + "_probabilities.npy")
    with (
        npy_stream(logits_file, shape, np.float32) if args.logits else nullcontext() as logits,
        npy_stream(probabilities_file, shape, np.float16)
        if args.probabilities
        else nullcontext() as probabilities,
    ):
        for y0, y1, scores in segmenter.score_bands(rgb):
            labels[y0:y1] = labels_of(scores)
            if logits is not None:
                logits[:, y0:y1] = scores.numpy()
            if probabilities is not None:
                probabilities[:, y0:y1] = torch.softmax(scores, 0).numpy().astype(np.float16)
    return labels


def _write(rgb: np.ndarray, labels: np.ndarray, out: Path, config, overlay: bool) -> None:
    write_label_png(labels, config.colors, out.with_suffix(".png"))
    if overlay:
        image = overlay_image(rgb, labels, config.colors, config.class_names)
        write_overlay(image, out.with_name(out.name + "_overlay.jpg"))


def run(args: argparse.Namespace) -> int:
    items = expand_inputs(args.inputs, args.recursive)
    segmenter = open_segmenter(args, max_pixels=args.max_pixels)
    config = segmenter.model.config
    failed = 0
    writes: list[tuple[Path, Future]] = []
    with ThreadPoolExecutor(PREFETCH) as decoder, ThreadPoolExecutor(1) as writer:
        loads = [decoder.submit(segmenter.load, path) for path, _ in items[:PREFETCH]]
        for i, (path, relative) in enumerate(progress(items, len(items), "segment", unit="img")):
            if i + PREFETCH < len(items):
                loads.append(decoder.submit(segmenter.load, items[i + PREFETCH][0]))
            out = args.out / relative
            try:
                rgb = loads[i].result()
                loads[i] = None
                out.parent.mkdir(parents=True, exist_ok=True)
                labels = _segment_one(segmenter, rgb, out, args)
            except FcnxsError as exc:
                report_error(str(exc))
                failed += 1
                continue
            writes.append((path, writer.submit(_write, rgb, labels, out, config, args.overlay)))
    for path, future in writes:
        try:
            future.result()
        except (OSError, FcnxsError) as exc:
            report_error(f"{path}: could not write its outputs ({exc})")
            failed += 1
    if items and failed == len(items):
        return 2
    return 1 if failed else 0
