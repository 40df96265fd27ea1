"""``fcnxs train`` (one stage) and ``fcnxs pipeline`` (FCN-32s → 16s → 8s)."""

from __future__ import annotations

import argparse
from pathlib import Path

from fcnxs.cli.common import add_dataset_arguments
from fcnxs.cli.options import option, output_dir, real
from fcnxs.core import distributed
from fcnxs.core.errors import FcnxsError
from fcnxs.model.config import ARCHS
from fcnxs.training.checkpoints import BEST
from fcnxs.training.loop import train
from fcnxs.training.pipeline import STAGES
from fcnxs.training.pipeline import run_pipeline as run_pipeline_stages
from fcnxs.training.settings import (
    LOSS_REDUCTIONS,
    RANGES,
    TRAINING_PRECISIONS,
    TrainSettings,
)


def _add_validation_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("validation data (under the same root)")
    g.add_argument("--val-split", metavar="NAME")
    g.add_argument("--val-list", metavar="FILE")
    g.add_argument("--val-images", metavar="DIR")
    g.add_argument("--val-masks", metavar="DIR")


def _default(name: str) -> str:
    return f"default {getattr(TrainSettings, name)}"


def _add_recipe_arguments(p: argparse.ArgumentParser, per_stage: bool) -> None:
    """The recipe: left out, an option takes `TrainSettings`'s default (the tutorial's),
    so that ``--resume`` can tell what was given."""
    g = p.add_argument_group("recipe (defaults: the fcn-xs tutorial)")
    n = "+" if per_stage else None
    g.add_argument(
        "--epochs",
        type=option(RANGES["epochs"]),
        nargs=n,
        help="per stage: 1 value or 3 (default 1)" if per_stage else "default 1",
    )
    g.add_argument(
        "--lr",
        type=option(RANGES["lr"]),
        nargs=n,
        help="default 1e-4 / 1e-5 / 1e-6 for fcn32s / 16s / 8s (mean loss)",
    )
    g.add_argument("--optimizer", choices=("sgd", "adam"), help=_default("optimizer"))
    g.add_argument("--momentum", type=option(RANGES["momentum"]), help=_default("momentum"))
    g.add_argument(
        "--weight-decay", type=option(RANGES["weight_decay"]), help=_default("weight_decay")
    )
    g.add_argument(
        "--loss-reduction",
        choices=tuple(LOSS_REDUCTIONS),
        help="; ".join(f"{name}: {what}" for name, what in LOSS_REDUCTIONS.items())
        + " (default mean)",
    )
    g.add_argument("--batch-size", type=option(RANGES["batch_size"]), help=_default("batch_size"))
    g.add_argument(
        "--warmup",
        type=option(RANGES["warmup"]),
        metavar="STEPS",
        help="raise the learning rate linearly over the first STEPS steps (default 0); "
        "Adam from a random start needs it",
    )
    g.add_argument(
        "--cut-off-size",
        type=option(RANGES["cut_off_size"]),
        help="the tutorial's random crop of large images",
    )
    g.add_argument(
        "--scale",
        type=real(0, open_low=True),
        nargs=2,
        metavar=("LOW", "HIGH"),
        help="random rescaling, e.g. 0.5 2.0",
    )
    g.add_argument("--flip", action="store_true", default=None, help="random horizontal flips")
    g.add_argument(
        "--crop-size",
        type=option(RANGES["crop_size"]),
        help="random crops of this size, padded with void",
    )
    g.add_argument(
        "--dropout", type=option(RANGES["dropout"]), help="fc6/fc7 dropout in [0, 1) (default 0.5)"
    )
    g.add_argument("--precision", choices=TRAINING_PRECISIONS, help=_default("precision"))
    g.add_argument(
        "--workers",
        type=option(RANGES["workers"]),
        help=f"loader processes ({_default('workers')})",
    )
    g.add_argument("--seed", type=int, help=_default("seed"))
    g.add_argument(
        "--save-every",
        type=option(RANGES["save_every"]),
        metavar="N",
        help="also checkpoint every N steps",
    )
    g.add_argument(
        "--log-every",
        type=option(RANGES["log_every"]),
        metavar="N",
        help="log every N batches (50)",
    )
    g.add_argument(
        "--skip-bad",
        action="store_true",
        default=None,
        help="skip unreadable samples, counting them",
    )
    g.add_argument(
        "--class-weights",
        metavar="median-frequency|inverse-frequency|FILE",
        help="weight the loss per class, computed over the training set (or one number per "
        "class in FILE); recorded in run.json",
    )
    g.add_argument("--device", default="auto", help="cpu, cuda or auto")


RECIPE = (
    "optimizer", "momentum", "warmup", "weight_decay", "loss_reduction", "batch_size",
    "cut_off_size", "scale", "flip", "crop_size", "dropout", "precision", "workers", "seed",
    "save_every", "log_every", "skip_bad", "class_weights",
)  # fmt: skip
"""The recipe options that map one to one onto `TrainSettings` fields."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train one stage (FCN-32s, 16s or 8s)",
        description="Train one stage into RUN_DIR, a new or empty folder; `--resume RUN_DIR` "
        "continues after any interruption (with --epochs, for longer). Under torchrun, "
        "DistributedDataParallel over the processes.",
    )
    p.add_argument("--arch", choices=ARCHS)
    p.add_argument("--init", metavar="SOURCE", help="a VGG16 or a coarser FCN, any format")
    p.add_argument("--out", type=output_dir, metavar="RUN_DIR")
    p.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue this run")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="start again in a RUN_DIR that holds a run, replacing its files",
    )
    add_dataset_arguments(p)
    _add_validation_arguments(p)
    _add_recipe_arguments(p, per_stage=False)
    p.set_defaults(run=run_train)

    q = subparsers.add_parser(
        "pipeline",
        help="train FCN-32s, then FCN-16s, then FCN-8s, each from the previous stage's best",
        description="Runs the three stages into DIR/fcn32s, DIR/fcn16s, DIR/fcn8s; a stage "
        "already finished is skipped and an interrupted one resumed, so rerunning the same "
        "command continues the pipeline (with more --epochs, extends it).",
    )
    q.add_argument("--vgg16", metavar="SOURCE", help="ImageNet VGG16 (without: random trunk)")
    q.add_argument("--out", type=output_dir, required=True, metavar="DIR")
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
    given = {name: getattr(args, name) for name in RECIPE if getattr(args, name) is not None}
    return TrainSettings(
        arch=arch,
        train_data=train_data,
        val_data=val_data,
        init=init,
        epochs=epochs,
        lr=lr,
        **given,
    )


def _resumed_settings(args: argparse.Namespace) -> TrainSettings:
    """run.json's settings with the options given: the command line that started the run
    plus ``--resume`` continues it; only `ON_RESUME` options may differ from run.json."""
    if args.out is not None and args.out.resolve() != args.resume.resolve():
        raise FcnxsError(f"--out {args.out} and --resume {args.resume} name different runs")
    train_data, val_data = _dataset_kwargs(args)
    given = {
        name: getattr(args, name)
        for name in (*RECIPE, "arch", "init", "lr", "epochs")
        if getattr(args, name) is not None
    }
    if any(v is not None for v in train_data.values()):
        given["train_data"] = train_data
    if val_data is not None:
        given["val_data"] = val_data
    return TrainSettings.of_run(args.resume, given)


def run_train(args: argparse.Namespace) -> int:
    if args.resume is not None:
        settings = _resumed_settings(args)
        run_dir = args.resume
    else:
        if args.arch is None or args.out is None:
            raise FcnxsError("train needs --arch and --out (or --resume RUN_DIR)")
        settings = _settings(args, args.arch, args.init, args.epochs or 1, args.lr)
        settings.validate()  # before torchrun's processes start
        run_dir = args.out
    context = distributed.init(args.device)
    try:
        result = train(
            settings,
            run_dir,
            resume=args.resume is not None,
            overwrite=args.overwrite,
            context=context,
        )
        if context.is_main:
            print(f"done: {result.run_dir}/{BEST} ({result.best_line})")
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
    epochs = [e or 1 for e in _per_stage(args.epochs, "epochs")]
    lrs = _per_stage(args.lr, "lr")
    base = _settings(args, STAGES[0], args.vgg16, epochs[0], lrs[0])
    base.validate()
    context = distributed.init(args.device)
    try:
        run_pipeline_stages(
            base, args.out, vgg16=args.vgg16, epochs=epochs, lrs=lrs, context=context
        )
    finally:
        distributed.shutdown()
    return 0
