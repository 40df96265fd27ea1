"""``fcnxs demo``: train, evaluate and segment on built-in data; write a report."""

from __future__ import annotations

import argparse
from pathlib import Path

from fcnxs.demo import DemoRecipe, run_demo


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo",
        help="the whole system on built-in synthetic data, with an HTML report",
        description="Writes a synthetic dataset, trains FCN-32s → 16s → 8s through the "
        "pipeline, evaluates each stage on held-out images, segments some, and writes "
        "DIR/index.html. Under five minutes on a 2-core CPU with bf16.",
    )
    defaults = DemoRecipe()
    p.add_argument("--out", type=Path, default=Path("demo-out"), metavar="DIR")
    p.add_argument("--train-images", type=int, default=defaults.train_images)
    p.add_argument("--heldout-images", type=int, default=defaults.heldout_images)
    p.add_argument(
        "--epochs", type=int, nargs=3, default=defaults.epochs, metavar=("E32", "E16", "E8")
    )
    p.add_argument("--size", type=int, default=defaults.height, help="image side in pixels")
    p.add_argument("--batch-size", type=int, default=defaults.batch_size)
    p.add_argument("--lr", type=float, default=defaults.lr, help="Adam's learning rate")
    p.add_argument("--precision", choices=("fp32", "bf16"), default=defaults.precision)
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
        precision=args.precision,
        seed=args.seed,
    )
    summary = run_demo(args.out, recipe)
    ious = ", ".join(f"{arch} {iou:.3f}" for arch, iou in summary["mean_iou"].items())
    print(f"demo: held-out mean IoU: {ious}; {summary['seconds']:.0f} s")
    print(f"demo: report: {(args.out / 'index.html').resolve()}")
    return 0
