"""``fcnxs info MODEL``: what a model file holds."""

from __future__ import annotations

import argparse
import json
import re
import sys

from fcnxs.cli.common import MODEL_HELP, describe
from fcnxs.cli.options import NON_NEGATIVE
from fcnxs.model.geometry import crop_offsets
from fcnxs.model.loading import model_config


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("info", help="print what a model file holds")
    p.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    p.add_argument(
        "--epoch", type=NON_NEGATIVE, help="MXNet checkpoint epoch (default: the latest)"
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    config = model_config(
        args.model, epoch=args.epoch, on_foreign=lambda w: describe(w, file=sys.stdout)
    )
    print(f"{args.model}: {config.arch}, {config.num_classes} classes")
    stored = config.semantics.crop_offsets is not None
    where = "stored in the file" if stored else "derived from the layers; the file stores none"
    print(f"crop offsets: {crop_offsets(config)} ({where})")
    print(_numbers_on_one_line(json.dumps(json.loads(config.to_json()), indent=2)))
    return 0


def _numbers_on_one_line(text: str) -> str:
    """JSON with every list of numbers (a colour, a mean) on one line."""
    return re.sub(
        r"\[([-0-9.e+,\s]*)\]",
        lambda m: "[" + ", ".join(m.group(1).split()).replace(",,", ",") + "]",
        text,
    )
