"""``fcnxs create``: a new model file, fresh or started from another model (staged recipe)."""

from __future__ import annotations

import argparse

from fcnxs.cli.options import CLASS_COUNT, NON_NEGATIVE, output_file
from fcnxs.core.collisions import refuse_replacing
from fcnxs.model.config import ARCHS
from fcnxs.model.initialisation import build_model
from fcnxs.model.loading import start_model
from fcnxs.model.modelfile import save_model


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "create",
        help="create a model file with fresh weights or from a coarser model",
        description="Create a model: with --from, every layer the source has is copied, new "
        "score layers start at zero and upsamplers as bilinear interpolation (the staged "
        "FCN-32s → 16s → 8s recipe); without it the trunk is random (He-normal).",
    )
    p.add_argument("--arch", choices=ARCHS, required=True)
    p.add_argument(
        "--num-classes", type=CLASS_COUNT, default=None, help="default: the source's, or 21"
    )
    p.add_argument(
        "--from",
        dest="source",
        metavar="SOURCE",
        help="a VGG16 (MXNet, Caffe or torchvision) or a coarser FCN (any format) to start from",
    )
    p.add_argument("--epoch", type=NON_NEGATIVE, help="MXNet checkpoint epoch of --from")
    p.add_argument("--seed", type=int, default=None, help="seed of the random trunk")
    p.add_argument("-o", "--out", required=True, type=output_file, metavar="OUT.safetensors")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    refuse_replacing([args.out], [args.source] if args.source else [])
    if args.source is None:
        model = build_model(args.arch, args.num_classes or 21, seed=args.seed)
        print(f"{args.arch}: fresh weights (random trunk, seed {args.seed})")
    else:
        model, report = start_model(
            args.arch, args.source, num_classes=args.num_classes, seed=args.seed, epoch=args.epoch
        )
        print(report)
    save_model(model, args.out)
    print(f"wrote {args.out}")
    return 0
