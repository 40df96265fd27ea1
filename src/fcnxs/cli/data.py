"""``fcnxs data check|make-lst|synth|import``: look after datasets."""

from __future__ import annotations

import argparse
from pathlib import Path

from fcnxs.cli import data_import
from fcnxs.cli.common import (
    add_dataset_arguments,
    add_split_arguments,
    open_dataset_from,
    require_new_folder,
)
from fcnxs.cli.options import POSITIVE, integer, output_dir, output_file
from fcnxs.core.atomic import write_text
from fcnxs.core.collisions import refuse_replacing
from fcnxs.core.errors import FcnxsError
from fcnxs.data.check import check_dataset, format_report
from fcnxs.data.dataset import Dataset
from fcnxs.data.layouts import LAYOUTS, open_dataset
from fcnxs.data.synth import write_synthetic_voc
from fcnxs.hub import fetch
from fcnxs.hub.archives import extract
from fcnxs.hub.registry import entries


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("data", help="check, list, synthesise or import datasets")
    commands = p.add_subparsers(dest="data_command", metavar="COMMAND", required=True)

    check = commands.add_parser(
        "check",
        help="read every sample and report what is wrong, per file",
        description="Reads every image/label pair as training would; reports missing, "
        "unreadable or truncated files, size mismatches, labels outside the classes and 255, "
        "colours not in the palette; prints sizes and class pixel frequencies. Exit 1 when "
        "anything is wrong.",
    )
    check.add_argument("root", nargs="?", metavar="ROOT", help="same as --data ROOT")
    add_dataset_arguments(check)
    check.set_defaults(run=run_check)

    make_lst = commands.add_parser(
        "make-lst",
        help="write a tutorial-style list file of a split",
        description="Writes FILE.lst with one line per sample of the split: "
        "index<TAB>image<TAB>label, the paths relative to ROOT (the fcn-xs tutorial's format).",
    )
    make_lst.add_argument("root", metavar="ROOT", help="a dataset root (VOC, SBD, ADE20K, ...)")
    make_lst.add_argument("--split", required=True, metavar="NAME", help="train, val, ...")
    make_lst.add_argument("--format", choices=tuple(LAYOUTS), help="default: detected")
    make_lst.add_argument(
        "-o", "--out", required=True, type=output_file, metavar="FILE.lst", help="the list file"
    )
    make_lst.set_defaults(run=run_make_lst)

    synth = commands.add_parser(
        "synth",
        help="write a synthetic VOC-layout dataset",
        description="Writes a new dataset of coloured shapes on textured backgrounds into OUT "
        "(absent or empty): JPEGImages/, SegmentationClass/, ImageSets/Segmentation/"
        "{train,val,trainval}.txt and classes.txt.",
    )
    synth.add_argument("out", type=output_dir, metavar="OUT", help="a new or empty folder")
    synth.add_argument("--num-images", type=POSITIVE, default=100, help="default: 100")
    synth.add_argument("--height", type=integer(8), default=120, help="pixels, ≥ 8 (default 120)")
    synth.add_argument("--width", type=integer(8), default=160, help="pixels, ≥ 8 (default 160)")
    add_split_arguments(synth)
    synth.set_defaults(run=run_synth)
    data_import.add_parser(commands)
    get = commands.add_parser(
        "fetch",
        help="download datasets by name (voc2012, sbd) and unpack them ready for --data",
        description="Each NAME is downloaded into the cache (checked against its published "
        "md5, resumed after a dropped connection; FCNXS_MIRROR and FCNXS_OFFLINE as for "
        "models) and unpacked into DIR/NAME, the root that `data check` and `train --data` "
        "read; a folder appears only once complete.",
    )
    get.add_argument("names", nargs="+", metavar="NAME", help="voc2012, sbd (`fcnxs models list`)")
    get.add_argument(
        "-o", "--out", required=True, type=output_dir, metavar="DIR", help="each into DIR/NAME"
    )
    get.set_defaults(run=run_fetch)


def run_check(args: argparse.Namespace) -> int:
    dataset = open_dataset_from(args, root=args.root)
    report = check_dataset(dataset)
    for problem in report.problems:
        print(f"problem: {problem}")
    print(format_report(dataset, report))
    return 0 if report.ok else 1


def run_make_lst(args: argparse.Namespace) -> int:
    root = Path(args.root)
    dataset = open_dataset(root=root, split=args.split, layout=args.format)
    refuse_replacing([args.out], dataset.files())
    _write_lst(dataset, root, args.out)
    return 0


def _write_lst(dataset: Dataset, root: Path, path: Path) -> None:
    """A tutorial-style list file of ``dataset``, its paths relative to ``root``."""
    lines = [
        f"{i}\t{s.image.relative_to(root).as_posix()}\t{s.label.relative_to(root).as_posix()}\n"
        for i, s in enumerate(dataset.samples)
    ]
    write_text(path, "".join(lines))
    print(f"wrote {path}: {len(lines)} sample{'s' if len(lines) != 1 else ''} of {dataset.name}")


def run_synth(args: argparse.Namespace) -> int:
    require_new_folder(args.out, "data synth")
    if round(args.num_images * args.val_fraction) >= args.num_images:
        raise FcnxsError(
            f"--val-fraction {args.val_fraction:g} of {args.num_images} images leaves none "
            "to train on"
        )
    write_synthetic_voc(
        args.out,
        args.num_images,
        height=args.height,
        width=args.width,
        val_fraction=args.val_fraction,
        seed=args.seed,
    )
    print(f"wrote {args.num_images} samples to {args.out} (VOC layout, classes in classes.txt)")
    return 0


def run_fetch(args: argparse.Namespace) -> int:
    known = entries(fetch.home())
    datasets = [name for name, e in known.items() if e.kind == "dataset"]
    for name in args.names:  # every name checked before anything is fetched
        if name not in datasets:
            raise FcnxsError(f"{name}: not a dataset of the registry ({', '.join(datasets)})")
    for name in args.names:
        entry, target = known[name], args.out / name
        if target.exists() and any(target.iterdir()):
            print(f"{name}: {target} is there already")
            continue
        archive = fetch.fetch(entry)
        extra = tuple(fetch.fetch(entry, file_name=f, url=u, hash=h) for f, u, h in entry.extra)
        extract(archive, target, entry.root, extra)
        print(f"{name}: {target} (see `fcnxs data check {target}`)")
    if (args.out / "voc2012").is_dir() and (args.out / "sbd").is_dir():
        _write_tutorial_lists(args.out)
    return 0


def _write_tutorial_lists(root: Path) -> None:
    """The FCN authors' split as the tutorial's list files: train on SBD's images that are
    not in VOC 2012's val (``train_noval``), validate on VOC 2012's val."""
    _write_lst(open_dataset(root=root / "sbd", split="train_noval"), root, root / "train.lst")
    _write_lst(open_dataset(root=root / "voc2012", split="val"), root, root / "val.lst")
    print(f"train with: fcnxs pipeline --data {root} --list train.lst --val-list val.lst ...")
