"""Options shared by the commands that use a model, and how they open it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TextIO

import torch

from fcnxs.cli.options import CLASS_COUNT, NON_NEGATIVE, POSITIVE, PROBABILITY, real
from fcnxs.core.distributed import pick_device
from fcnxs.core.errors import FcnxsError
from fcnxs.core.precision import PRECISIONS, check_precision, emulation_warning
from fcnxs.data.dataset import Dataset
from fcnxs.data.layouts import LAYOUTS, open_dataset
from fcnxs.inference.file_pipeline import GPU_BATCH
from fcnxs.inference.segmenter import Segmenter
from fcnxs.inference.tta import MAX_SCALE, TTA
from fcnxs.model.config import ARCHS
from fcnxs.model.fcn import FCN
from fcnxs.model.foreign import Weights
from fcnxs.model.loading import load_model

MODEL_HELP = (
    "a model: an fcnxs .safetensors, an MXNet checkpoint (the .params, the -symbol.json, or "
    "PREFIX with --epoch), a Caffe .caffemodel"
)


FLAGS = {"root": "--data", "list_file": "--list", "layout": "--format", "classes_file": "--classes"}
"""Library parameters whose option is not simply --the-same-name."""


def flag(parameter: str) -> str:
    """The command-line option that sets a library parameter."""
    return FLAGS.get(parameter, "--" + parameter.replace("_", "-"))


def report_error(error: str | FcnxsError) -> None:
    """The one-line form every user-facing error takes on stderr (a line per problem),
    naming options where the library names parameters."""
    message = error.render(flag) if isinstance(error, FcnxsError) else error
    for line in message.splitlines() or [""]:
        print(f"fcnxs: error: {line}", file=sys.stderr, flush=True)


def add_split_arguments(p: argparse.ArgumentParser) -> None:
    """--val-fraction and --seed of the commands that write a new dataset (synth, import)."""
    p.add_argument(
        "--val-fraction",
        type=PROBABILITY,
        default=0.25,
        help="share of the images in the val split, in [0, 1) (default 0.25)",
    )
    p.add_argument("--seed", type=int, default=0, help="the same seed, the same dataset")


def require_new_folder(path: Path, command: str) -> None:
    """Commands that write a new dataset write into an absent or empty folder only."""
    if path.exists() and any(path.iterdir()):
        raise FcnxsError(f"{path}: not empty; {command} writes a new dataset")


def report_warning(message: str) -> None:
    """A warning on stderr: ``fcnxs: warning: message``."""
    print(f"fcnxs: warning: {message}", file=sys.stderr, flush=True)


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, metavar="MODEL", help=MODEL_HELP)
    add_agreement_arguments(parser)


def add_agreement_arguments(parser: argparse.ArgumentParser) -> None:
    """--epoch for MXNet checkpoints; --arch and --num-classes, checked against the model."""
    parser.add_argument(
        "--epoch", type=NON_NEGATIVE, help="MXNet checkpoint epoch (default: the latest)"
    )
    parser.add_argument(
        "--arch", choices=ARCHS, help="must agree with the model; decides where it cannot tell"
    )
    parser.add_argument("--num-classes", type=CLASS_COUNT, help="must agree with the model's")


def open_model(args: argparse.Namespace) -> FCN:
    """Load ``--model``; for a foreign format, say on stderr what was skipped or assumed."""
    return load_model(
        args.model,
        arch=args.arch,
        num_classes=args.num_classes,
        epoch=args.epoch,
        on_foreign=describe,
    )


def open_segmenter(
    args: argparse.Namespace, device: torch.device | None = None, **options
) -> Segmenter:
    """``--model`` ready for images on ``--device`` (or ``device``) in ``--precision``, saying
    on stderr when that precision will run emulated (slow) rather than quietly choosing
    another."""
    device = device or pick_device(args.device)
    check_precision(args.precision, device)  # before the model is read, not after
    # The command owns its model: it may move it. cuDNN runs channels-last weights without
    # converting them; on a CPU the packed weights make the layout moot, and converting
    # took 0.25 s of a one-photo run (measured).
    model = open_model(args).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    segmenter = Segmenter(
        model, precision=args.precision, tile=args.tile, tta=tta_from(args), **options
    )
    warning = emulation_warning(segmenter.precision, segmenter.device)
    if warning:
        report_warning(warning)
    return segmenter


def add_engine_arguments(p: argparse.ArgumentParser, *, batches: bool = True) -> None:
    """How a command runs its model (the same options wherever one runs): --device,
    --precision, --tile, --tta, --scales and, where images come in numbers, --batch-size."""
    g = p.add_argument_group("engine")
    g.add_argument("--device", default="auto", help="cpu, cuda or auto")
    g.add_argument("--precision", choices=tuple(PRECISIONS), default="fp32")
    g.add_argument(
        "--tile",
        default="auto",
        type=tile_option,
        metavar="auto|SIZE|none",
        help="overlapping tiles of SIZE (≥ 64) pixels for large images (auto: from free memory)",
    )
    g.add_argument(
        "--tta",
        choices=("none", "flip"),
        default="none",
        help="test-time augmentation: flip also runs the mirrored image (default none)",
    )
    g.add_argument(
        "--scales",
        nargs="+",
        type=real(0, MAX_SCALE, open_low=True),
        default=[1.0],
        metavar="S",
        help="also run the image rescaled by each S (e.g. 0.75 1 1.25) and average the "
        "class probabilities at its own size (default: 1, no rescaling)",
    )
    if batches:
        g.add_argument(
            "--batch-size",
            type=POSITIVE,
            metavar="N",
            help=f"images of one size segmented together (default {GPU_BATCH} on a GPU, 1 on "
            "a CPU, where border reuse works per image; 1 with score files)",
        )


def tta_from(args: argparse.Namespace) -> TTA:
    return TTA(flip=args.tta == "flip", scales=tuple(args.scales))


def tile_option(text: str) -> int | str | None:
    if text in ("auto", "none"):
        return None if text == "none" else "auto"
    if not text.isdigit() or int(text) < 64:
        raise argparse.ArgumentTypeError(
            f"takes auto, none or a size of at least 64 pixels, not {text!r}"
        )
    return int(text)


def describe(weights: Weights, file: TextIO | None = None) -> None:
    file = file or sys.stderr
    print(f"fcnxs: {weights.path}: {weights.origin}", file=file)
    if weights.skipped:
        print(f"fcnxs: not used: {', '.join(weights.skipped)}", file=file)
    for note in weights.notes:
        print(f"fcnxs: {note}", file=file)


def add_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    """DATASET-OPTIONS, the same for every command that reads a dataset."""
    g = parser.add_argument_group(
        "dataset",
        "--data ROOT with --split NAME (VOC, SBD, ADE20K, Cityscapes) or --list FILE (tutorial "
        "list), or --images DIR --masks DIR (matched by file stem)",
    )
    g.add_argument("--data", metavar="ROOT", help="a VOC 2012, SBD, ADE20K or Cityscapes root")
    g.add_argument(
        "--split",
        metavar="NAME",
        help="a split of ROOT: train, val, trainval, ...; all: every image of a VOC-layout "
        "root without split files (labelme2voc's output)",
    )
    g.add_argument("--list", dest="list_file", metavar="FILE", help="index<TAB>image<TAB>label")
    g.add_argument("--images", metavar="DIR", help="folder of images")
    g.add_argument("--masks", metavar="DIR", help="folder of masks with the images' stems")
    g.add_argument("--format", choices=(*LAYOUTS, "folder"), help="default: detected")
    g.add_argument(
        "--classes", metavar="FILE", help="names and colours (default: ROOT/classes.txt, else VOC)"
    )


def open_dataset_from(args: argparse.Namespace, *, root: str | None = None) -> Dataset:
    return open_dataset(
        root=root or args.data,
        split=args.split,
        list_file=args.list_file,
        images=args.images,
        masks=args.masks,
        layout=args.format,
        classes_file=args.classes,
    )
