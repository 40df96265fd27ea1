"""``fcnxs demo``: train, evaluate and segment on built-in data; write a report."""

from __future__ import annotations

import argparse

from fcnxs.apps.demo import DemoRecipe, run_demo
from fcnxs.cli.options import POSITIVE, integer, output_dir, real
from fcnxs.training.settings import TRAINING_PRECISIONS


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo",
        help="the whole system on built-in synthetic data, with an HTML report",
        description="Writes a synthetic dataset, trains FCN-32s → 16s → 8s through the "
        "pipeline, evaluates each stage on held-out images, segments some, and writes "
        "DIR/index.html. Under five minutes on a 2-core CPU with bf16.",
    )
    defaults = DemoRecipe  # its class defaults: an instance would probe the CPU now
    p.add_argument(
        "--out",
        type=output_dir,
        default="demo-out",
        metavar="DIR",
        help="new, empty, or an earlier demo's (replaced)",
    )
    p.add_argument("--train-images", type=POSITIVE, default=defaults.train_images)
    p.add_argument("--heldout-images", type=POSITIVE, default=defaults.heldout_images)
    p.add_argument(
        "--epochs", type=POSITIVE, nargs=3, default=defaults.epochs, metavar=("E32", "E16", "E8")
    )
    p.add_argument(
        "--size", type=integer(32), default=defaults.height, help="image side in pixels (≥ 32)"
    )
    p.add_argument("--batch-size", type=POSITIVE, default=defaults.batch_size)
    p.add_argument(
        "--lr", type=real(0, open_low=True), default=defaults.lr, help="Adam's learning rate"
    )
    p.add_argument(
        "--precision",
        choices=TRAINING_PRECISIONS,
        help="default: bf16 where the CPU computes it natively, else fp32",
    )
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    recipe = DemoRecipe(
        train_images=args.train_images,
        heldout_images=args.heldout_images,
        height=args.size,
        width=args.size,
        epochs=tuple(args.epochs),
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        **({"precision": args.precision} if args.precision else {}),
    )
    summary = run_demo(args.out, recipe)
    ious = ", ".join(f"{arch} {iou:.3f}" for arch, iou in summary["mean_iou"].items())
    print(f"demo: held-out mean IoU: {ious}; {summary['seconds']:.0f} s")
    print(f"demo: report: {(args.out / 'index.html').resolve()}")
    return 0
