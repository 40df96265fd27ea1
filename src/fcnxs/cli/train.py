"""``fcnxs train`` (one stage) and ``fcnxs pipeline`` (FCN-32s → 16s → 8s)."""

from __future__ import annotations

import argparse
from pathlib import Path

from fcnxs import distributed
from fcnxs.checkpoints import BEST, read_settings
from fcnxs.cli.common import add_dataset_arguments
from fcnxs.config import ARCHS
from fcnxs.errors import FcnxsError
from fcnxs.pipeline import STAGES
from fcnxs.pipeline import run_pipeline as run_pipeline_stages
from fcnxs.training import TrainSettings, train


def _add_validation_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("validation data (under the same root)")
    g.add_argument("--val-split", metavar="NAME")
    g.add_argument("--val-list", metavar="FILE")
    g.add_argument("--val-images", metavar="DIR")
    g.add_argument("--val-masks", metavar="DIR")


def _add_recipe_arguments(p: argparse.ArgumentParser, per_stage: bool) -> None:
    g = p.add_argument_group("recipe (defaults: the fcn-xs tutorial)")
    n = "+" if per_stage else None
    g.add_argument(
        "--epochs", type=int, nargs=n, help="per stage: 1 value or 3" if per_stage else None
    )
    g.add_argument(
        "--lr",
        type=float,
        nargs=n,
        help="default 1e-4 / 1e-5 / 1e-6 for fcn32s / 16s / 8s (mean loss)",
    )
    g.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd")
    g.add_argument("--momentum", type=float, default=0.99)
    g.add_argument("--weight-decay", type=float, default=5e-4)
    g.add_argument(
        "--loss-reduction",
        choices=("sum", "mean"),
        default="mean",
        help="mean: per non-void pixel; sum: as the original (use lr 1e-10/1e-12/1e-14)",
    )
    g.add_argument("--batch-size", type=int, default=1)
    g.add_argument("--cut-off-size", type=int, help="the tutorial's random crop of large images")
    g.add_argument(
        "--scale",
        type=float,
        nargs=2,
        metavar=("LOW", "HIGH"),
        help="random rescaling, e.g. 0.5 2.0",
    )
    g.add_argument("--flip", action="store_true", help="random horizontal flips")
    g.add_argument("--crop-size", type=int, help="random crops of this size, padded with void")
    g.add_argument("--dropout", type=float, help="fc6/fc7 dropout (default 0.5)")
    g.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    g.add_argument("--workers", type=int, default=2)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--save-every", type=int, metavar="N", help="also checkpoint every N steps")
    g.add_argument("--log-every", type=int, default=50, metavar="N", help="log every N batches")
    g.add_argument("--skip-bad", action="store_true", help="skip unreadable samples, counting them")
    g.add_argument("--device", default="auto", help="cpu, cuda or auto")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train one stage (FCN-32s, 16s or 8s)",
        description="Train one stage into RUN_DIR; `--resume RUN_DIR` continues after any "
        "interruption. Under torchrun, DistributedDataParallel over the processes.",
    )
    p.add_argument("--arch", choices=ARCHS)
    p.add_argument("--init", metavar="SOURCE", help="a VGG16 or a coarser FCN, any format")
    p.add_argument("--out", type=Path, metavar="RUN_DIR")
    p.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue this run")
    add_dataset_arguments(p)
    _add_validation_arguments(p)
    _add_recipe_arguments(p, per_stage=False)
    p.set_defaults(run=run_train)

    q = subparsers.add_parser(
        "pipeline",
        help="train FCN-32s, then FCN-16s, then FCN-8s, each from the previous stage's best",
        description="Runs the three stages into DIR/fcn32s, DIR/fcn16s, DIR/fcn8s; a stage "
        "already finished is skipped and an interrupted one resumed, so rerunning the same "
        "command continues the pipeline.",
    )
    q.add_argument("--vgg16", metavar="SOURCE", help="ImageNet VGG16 (without: random trunk)")
    q.add_argument("--out", type=Path, required=True, metavar="DIR")
    add_dataset_arguments(q)
    _add_validation_arguments(q)
    _add_recipe_arguments(q, per_stage=True)
    q.set_defaults(run=run_pipeline)


def _dataset_kwargs(args: argparse.Namespace) -> tuple[dict, dict | None]:
    root = args.data
    train = {
        "root": root,
        "split": args.split,
        "list_file": args.list_file,
        "images": args.images,
        "masks": args.masks,
        "layout": args.format,
        "classes_file": args.classes,
    }
    if args.val_images or args.val_masks:
        val = dict(train, images=args.val_images, masks=args.val_masks)
    elif args.val_split or args.val_list:
        val = dict(train, split=args.val_split, list_file=args.val_list)
    else:
        val = None
    return train, val


def _settings(args, arch: str, init: str | None, epochs: int, lr: float | None) -> TrainSettings:
    train_data, val_data = _dataset_kwargs(args)
    return TrainSettings(
        arch=arch,
        train_data=train_data,
        val_data=val_data,
        init=init,
        epochs=epochs,
        lr=lr,
        optimizer=args.optimizer,
        momentum=args.momentum,
        weight_decay=args.weight_decay,
        loss_reduction=args.loss_reduction,
        batch_size=args.batch_size,
        cut_off_size=args.cut_off_size,
        scale=args.scale,
        flip=args.flip,
        crop_size=args.crop_size,
        dropout=args.dropout,
        precision=args.precision,
        workers=args.workers,
        seed=args.seed,
        save_every=args.save_every,
        log_every=args.log_every,
        skip_bad=args.skip_bad,
    )


def run_train(args: argparse.Namespace) -> int:
    context = distributed.init(args.device)
    try:
        if args.resume is not None:
            settings = TrainSettings.from_dict(read_settings(args.resume))
            if args.epochs is not None:
                settings.epochs = args.epochs
            result = train(settings, args.resume, resume=True, context=context)
        else:
            if args.arch is None or args.out is None:
                raise FcnxsError("train needs --arch and --out (or --resume RUN_DIR)")
            settings = _settings(args, args.arch, args.init, args.epochs or 1, args.lr)
            result = train(settings, args.out, context=context)
        if context.is_main:
            print(f"done: {result.run_dir}/{BEST} (best validation mIoU {result.best_miou})")
    finally:
        distributed.shutdown()
    return 0


def _per_stage(values: list | None, name: str) -> list:
    if values is None:
        return [None] * 3
    if len(values) == 1:
        return values * 3
    if len(values) != 3:
        raise FcnxsError(f"--{name} takes one value or three (fcn32s fcn16s fcn8s)")
    return values


def run_pipeline(args: argparse.Namespace) -> int:
    context = distributed.init(args.device)
    epochs = [e or 1 for e in _per_stage(args.epochs, "epochs")]
    lrs = _per_stage(args.lr, "lr")
    base = _settings(args, STAGES[0], args.vgg16, epochs[0], lrs[0])
    try:
        run_pipeline_stages(
            base, args.out, vgg16=args.vgg16, epochs=epochs, lrs=lrs, context=context
        )
    finally:
        distributed.shutdown()
    return 0
