"""``fcnxs info MODEL``: what a model file holds."""

from __future__ import annotations

import argparse
import json

from fcnxs.geometry import crop_offsets
from fcnxs.modelfile import read_model_config


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("info", help="print a model file's configuration")
    p.add_argument("model", metavar="MODEL")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    config = read_model_config(args.model)
    print(f"{args.model}: {config.arch}, {config.num_classes} classes")
    print(f"crop offsets: {crop_offsets(config)}")
    print(json.dumps(json.loads(config.to_json()), indent=2))
    return 0
