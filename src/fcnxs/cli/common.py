"""Options shared by the commands that use a model, and how they open it."""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from fcnxs.config import ARCHS
from fcnxs.model import FCN
from fcnxs.sources import Weights, detect_format, load_model, model_from_weights, read_weights

MODEL_HELP = (
    "a model: an fcnxs .safetensors, an MXNet checkpoint (the .params, the -symbol.json, or "
    "PREFIX with --epoch), a Caffe .caffemodel"
)


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, metavar="MODEL", help=MODEL_HELP)
    parser.add_argument("--epoch", type=int, help="MXNet checkpoint epoch (default: the latest)")
    parser.add_argument(
        "--arch", choices=ARCHS, help="must agree with the model; decides where it cannot tell"
    )
    parser.add_argument("--num-classes", type=int, help="must agree with the model's")


def open_model(args: argparse.Namespace) -> FCN:
    """Load ``--model``; for a foreign format, say on stderr what was skipped or assumed."""
    if detect_format(args.model) == "native":
        return load_model(args.model, arch=args.arch, num_classes=args.num_classes)
    weights = read_weights(args.model, epoch=args.epoch)
    model = model_from_weights(weights, arch=args.arch, num_classes=args.num_classes)
    describe(weights)
    return model


def describe(weights: Weights, file: TextIO | None = None) -> None:
    file = file or sys.stderr
    print(f"fcnxs: {weights.path}: {weights.origin}", file=file)
    if weights.skipped:
        print(f"fcnxs: not used: {', '.join(weights.skipped)}", file=file)
    for note in weights.notes:
        print(f"fcnxs: {note}", file=file)
