"""``fcnxs segment IMAGE... --model MODEL -o OUTDIR [--logits]``."""

from __future__ import annotations

import argparse
from pathlib import Path

from fcnxs.cli.common import add_model_arguments, open_model
from fcnxs.errors import FcnxsError
from fcnxs.images import read_image, write_label_png, write_npy
from fcnxs.inference import labels_from_scores, predict_scores
from fcnxs.progress import progress


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "segment",
        help="segment images into palette PNGs of class indices",
        description="Write OUTDIR/<stem>.png, a palette PNG of class indices in the model's "
        "colours, for every IMAGE; with --logits also OUTDIR/<stem>.npy, the float32 C×H×W "
        "class scores before softmax.",
    )
    p.add_argument("images", nargs="+", metavar="IMAGE")
    add_model_arguments(p)
    p.add_argument("-o", "--out", required=True, metavar="OUTDIR", type=Path)
    p.add_argument("--logits", action="store_true", help="also write the class scores (.npy)")
    p.set_defaults(run=run)


def _output_stems(images: list[str]) -> dict[str, str]:
    stems: dict[str, str] = {}
    for image in images:
        stem = Path(image).stem
        if stem in stems:
            raise FcnxsError(f"{stems[stem]} and {image} would both be written as {stem}.png")
        stems[stem] = image
    return stems


def run(args: argparse.Namespace) -> int:
    from fcnxs.cli import report_error

    stems = _output_stems(args.images)
    model = open_model(args)
    failed = 0
    for stem, image_path in progress(stems.items(), len(stems), "segment", unit="img"):
        try:
            scores = predict_scores(model, read_image(image_path))
            write_label_png(
                labels_from_scores(scores), model.config.colors, args.out / f"{stem}.png"
            )
            if args.logits:
                write_npy(scores.numpy(), args.out / f"{stem}.npy")
        except FcnxsError as exc:
            report_error(str(exc))
            failed += 1
    if failed == len(stems):
        return 2
    return 1 if failed else 0
