"""``fcnxs convert SOURCE... -o OUT.safetensors``: any FCN weight file to a native model file."""

from __future__ import annotations

import argparse

from fcnxs.cli.common import add_agreement_arguments, describe
from fcnxs.cli.options import output_file
from fcnxs.core.collisions import refuse_replacing
from fcnxs.core.errors import FcnxsError
from fcnxs.model.loading import model_from_weights, read_weights
from fcnxs.model.modelfile import save_model


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "convert",
        help="convert an MXNet, Caffe or fcnxs FCN to a native model file",
        description="Convert an FCN exactly: the architecture, classes, crop offsets, pool "
        "rounding, upsampler padding and preprocessing of the framework that wrote it are kept. "
        "SOURCE is a .caffemodel, a .safetensors, an MXNet .params, -symbol.json or PREFIX "
        "(with --epoch), or an MXNet -symbol.json and .params given together.",
    )
    p.add_argument("sources", nargs="+", metavar="SOURCE")
    p.add_argument("-o", "--out", required=True, type=output_file, metavar="OUT.safetensors")
    add_agreement_arguments(p)
    p.set_defaults(run=run)


def _one_source(sources: list[str]) -> tuple[str, str | None]:
    if len(sources) == 1:
        return sources[0], None
    symbols = [s for s in sources if s.endswith("-symbol.json")]
    params = [s for s in sources if s.endswith(".params")]
    if len(sources) == 2 and len(symbols) == 1 and len(params) == 1:
        return params[0], symbols[0]
    raise FcnxsError("give one model, or an MXNet -symbol.json and its .params")


def run(args: argparse.Namespace) -> int:
    source, symbol = _one_source(args.sources)
    refuse_replacing([args.out], args.sources)
    weights = read_weights(source, epoch=args.epoch, symbol=symbol)
    model = model_from_weights(weights, arch=args.arch, num_classes=args.num_classes)
    describe(weights)
    save_model(model, args.out)
    c = model.config
    print(
        f"wrote {args.out}: {c.arch}, {c.num_classes} classes, {c.semantics.pool_rounding} "
        f"pooling, preprocessing {c.preprocessing.channel_order}"
    )
    return 0
