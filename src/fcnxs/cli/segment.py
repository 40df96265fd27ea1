"""``fcnxs segment INPUT... --model MODEL -o OUTDIR``: any files, any size, one or thousands.

The library's pipeline does the work (`fcnxs.inference.file_pipeline`); this command checks,
before the model is loaded, that every input exists and no output would replace an input,
then prints each bad input as one line while the others go on.
"""

from __future__ import annotations

import argparse

from fcnxs.cli.common import (
    add_engine_arguments,
    add_model_arguments,
    open_segmenter,
    report_error,
    tta_from,
)
from fcnxs.cli.options import POSITIVE, output_dir
from fcnxs.core.collisions import refuse_replacing
from fcnxs.core.errors import FcnxsError
from fcnxs.inference.file_pipeline import segment_files
from fcnxs.inference.inputs import expand_inputs
from fcnxs.inference.outputs import OUTPUTS, Job, LabelFiles, output_files


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
    p.add_argument(
        "--max-pixels",
        type=POSITIVE,
        metavar="N",
        help="decompression-bomb limit (default: Pillow's, about 89 M pixels)",
    )
    add_engine_arguments(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.logits and tta_from(args).active:
        raise FcnxsError(
            "--logits: with --tta or --scales there are no logits, only averaged "
            "probabilities (ask for --probabilities)"
        )
    items = expand_inputs(args.inputs, args.recursive)
    kinds = [kind for kind in OUTPUTS if getattr(args, kind)]
    jobs = [Job(path, output_files(args.out / relative, kinds)) for path, relative in items]
    refuse_replacing(
        (f for job in jobs for f in job.files.values()), [job.source for job in jobs] + [args.model]
    )
    segmenter = open_segmenter(args, max_pixels=args.max_pixels)
    summary = segment_files(
        segmenter,
        jobs,
        LabelFiles(segmenter.model.config, segmenter.scores_are_probabilities),
        read=Job.read,
        batch_size=args.batch_size,
        on_failure=lambda _, exc: report_error(exc),
    )
    if summary.out_of_space is not None:
        report_error(f"stopped: no space for outputs in {args.out}")
    print(f"segment: {summary.written} of {summary.total} images written to {args.out}", flush=True)
    if summary.written == summary.total:
        return 0
    return 2 if summary.written == 0 else 1
