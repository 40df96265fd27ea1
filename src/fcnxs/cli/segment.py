"""``fcnxs segment INPUT... --model MODEL -o OUTDIR``: any files, any size, one or thousands.

Decoding runs ahead in threads and writing behind in another, so the model (loaded once)
is kept busy; a bad input is one line on stderr and the others go on. Before the model is
loaded, every input is checked to exist and no output may replace an input. An input's
outputs are written together or not at all; a full disk stops the run at once rather than
segmenting images that cannot be written.
"""

from __future__ import annotations

import argparse
import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

from fcnxs.cli.common import (
    add_model_arguments,
    add_tile_argument,
    add_tta_arguments,
    open_segmenter,
    report_error,
    tta_from,
)
from fcnxs.cli.options import POSITIVE, output_dir
from fcnxs.core.collisions import refuse_replacing
from fcnxs.core.errors import FcnxsError, OutputError
from fcnxs.core.precision import PRECISIONS
from fcnxs.core.progress import progress
from fcnxs.data.images import write_label_png
from fcnxs.inference.inputs import expand_inputs
from fcnxs.inference.outputs import npy_stream, overlay_image, write_overlay
from fcnxs.inference.segmenter import Segmenter, labels_of

PREFETCH = 2
GPU_BATCH = 8
"""Images of one size run together on a GPU (on a CPU one at a time, with border reuse)."""


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
    p.add_argument("-o", "--out", required=True, metavar="OUTDIR", type=output_dir)
    p.add_argument("--recursive", action="store_true", help="descend into folders")
    p.add_argument("--overlay", action="store_true", help="also <name>_overlay.jpg with a legend")
    p.add_argument(
        "--logits",
        action="store_true",
        help="also <name>.npy: float32 C×H×W scores (not with --tta or --scales)",
    )
    p.add_argument(
        "--probabilities",
        action="store_true",
        help="also <name>_probabilities.npy: float16 C×H×W softmax (with --tta or --scales: "
        "the averaged probabilities)",
    )
    add_tile_argument(p)
    add_tta_arguments(p)
    p.add_argument(
        "--max-pixels",
        type=POSITIVE,
        metavar="N",
        help="decompression-bomb limit (default: Pillow's, about 89 M pixels)",
    )
    p.add_argument(
        "--batch-size",
        type=POSITIVE,
        metavar="N",
        help=f"images of one size segmented together (default {GPU_BATCH} on a GPU, 1 on a "
        "CPU; 1 with --logits or --probabilities)",
    )
    p.add_argument("--device", default="auto", help="cpu, cuda or auto")
    p.add_argument("--precision", choices=tuple(PRECISIONS), default="fp32")
    p.set_defaults(run=run)


OUTPUTS = {"overlay": "_overlay.jpg", "logits": ".npy", "probabilities": "_probabilities.npy"}
"""What an input is written as besides its mask (``<name>.png``), when its option is given."""


def output_files(out: Path, args: argparse.Namespace) -> dict[str, Path]:
    """The files one input is written as (``out`` is OUTDIR/<name>, without a suffix)."""
    ends = {"labels": ".png"} | {kind: end for kind, end in OUTPUTS.items() if getattr(args, kind)}
    return {kind: out.with_name(out.name + end) for kind, end in ends.items()}


def _segment_one(segmenter: Segmenter, rgb: np.ndarray, files: dict[str, Path]) -> np.ndarray:
    """Labels of one image, with its score files streamed band by band."""
    height, width = rgb.shape[:2]
    labels = np.zeros((height, width), np.uint8)
    shape = (segmenter.model.config.num_classes, height, width)
    with (
        (
            npy_stream(files["logits"], shape, np.float32) if "logits" in files else nullcontext()
        ) as logits,
        (
            npy_stream(files["probabilities"], shape, np.float16)
            if "probabilities" in files
            else nullcontext()
        ) as probabilities,
    ):
        for y0, y1, scores in segmenter.score_bands(rgb):
            labels[y0:y1] = labels_of(scores)
            if logits is not None:
                logits[:, y0:y1] = scores.numpy()
            if probabilities is not None:
                if not segmenter.scores_are_probabilities:
                    scores = torch.softmax(scores, 0)
                probabilities[:, y0:y1] = scores.numpy().astype(np.float16)
    return labels


def _write(rgb: np.ndarray, labels: np.ndarray, files: dict[str, Path], config) -> None:
    """The label PNG and the overlay; on failure none of the input's outputs is left."""
    try:
        write_label_png(labels, config.colors, files["labels"])
        if "overlay" in files:
            image = overlay_image(rgb, labels, config.colors, config.class_names)
            write_overlay(image, files["overlay"])
    except BaseException:
        _remove(files)
        raise


def _remove(files: dict[str, Path]) -> None:
    for path in files.values():
        path.unlink(missing_ok=True)


def run(args: argparse.Namespace) -> int:
    if args.logits and tta_from(args).active:
        raise FcnxsError(
            "--logits: with --tta or --scales there are no logits, only averaged "
            "probabilities (ask for --probabilities)"
        )
    items = expand_inputs(args.inputs, args.recursive)
    plans = [(path, output_files(args.out / relative, args)) for path, relative in items]
    refuse_replacing(
        (f for _, files in plans for f in files.values()), [p for p, _ in items] + [args.model]
    )
    segmenter = open_segmenter(args, max_pixels=args.max_pixels)
    config = segmenter.model.config
    written = 0
    full: OutputError | None = None
    pending: deque[Future] = deque()

    def failed(exc: FcnxsError) -> None:
        nonlocal full
        report_error(exc)
        if isinstance(exc, OutputError) and exc.out_of_space:
            full = exc

    def collect(wait: bool) -> None:
        """Count the writes that have finished (all of them when ``wait``)."""
        nonlocal written
        while pending and (wait or pending[0].done()):
            future = pending.popleft()
            try:
                future.result()
                written += 1
            except FcnxsError as exc:
                failed(exc)

    scores_wanted = args.logits or args.probabilities
    on_gpu = segmenter.device.type != "cpu"
    batch_size = 1 if scores_wanted else args.batch_size or (GPU_BATCH if on_gpu else 1)
    ahead = max(PREFETCH, 2 * batch_size)
    threads = min(os.cpu_count() or 2, 8) if on_gpu else 1  # a CPU's cores run the network
    batch: list[tuple[dict[str, Path], np.ndarray]] = []

    def flush() -> None:
        """Segment the images gathered (of one size) at once; hand them to the writers."""
        if batch:
            found = segmenter.labels_batch([rgb for _, rgb in batch])
            for (files, rgb), labels in zip(batch, found, strict=True):
                pending.append(writer.submit(_write, rgb, labels, files, config))
            batch.clear()

    with (
        ThreadPoolExecutor(max(PREFETCH, threads)) as decoder,
        ThreadPoolExecutor(threads) as writer,
    ):
        loads = deque(decoder.submit(segmenter.load, path) for path, _ in plans[:ahead])
        for i, (_, files) in enumerate(progress(plans, len(plans), "segment", unit="img")):
            if i + ahead < len(plans):
                loads.append(decoder.submit(segmenter.load, plans[i + ahead][0]))
            load = loads.popleft()
            collect(wait=False)
            if full is not None:
                break
            try:
                rgb = load.result()
            except FcnxsError as exc:
                failed(exc)
                continue
            if not scores_wanted:
                if batch and batch[0][1].shape != rgb.shape:
                    flush()
                batch.append((files, rgb))
                if len(batch) == batch_size:
                    flush()
                continue
            try:
                labels = _segment_one(segmenter, rgb, files)
            except FcnxsError as exc:
                _remove(files)
                failed(exc)
                continue
            pending.append(writer.submit(_write, rgb, labels, files, config))
        if full is None:
            flush()
        for load in loads:
            load.cancel()
        collect(wait=True)
    if full is not None:
        report_error(f"stopped: no space for outputs in {args.out}")
    print(f"segment: {written} of {len(plans)} images written to {args.out}", flush=True)
    if written == len(plans):
        return 0
    return 2 if written == 0 else 1
