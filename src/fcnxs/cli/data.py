"""``fcnxs data check|make-lst|synth``: look after datasets."""

from __future__ import annotations

import argparse
from pathlib import Path

from fcnxs.atomic import atomic_path
from fcnxs.cli.common import add_dataset_arguments, open_dataset_from
from fcnxs.data.check import check_dataset, format_report
from fcnxs.data.layouts import open_dataset
from fcnxs.data.synth import write_synthetic_voc
from fcnxs.errors import FcnxsError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("data", help="check, list or synthesise datasets")
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

    make_lst = commands.add_parser("make-lst", help="write a tutorial-style list file of a split")
    make_lst.add_argument("root", metavar="ROOT")
    make_lst.add_argument("--split", required=True, metavar="NAME")
    make_lst.add_argument("--format", choices=("voc", "sbd"), help="default: detected")
    make_lst.add_argument("-o", "--out", required=True, type=Path, metavar="FILE.lst")
    make_lst.set_defaults(run=run_make_lst)

    synth = commands.add_parser("synth", help="write a synthetic VOC-layout dataset")
    synth.add_argument("out", type=Path, metavar="OUT")
    synth.add_argument("--num-images", type=int, default=100)
    synth.add_argument("--height", type=int, default=120)
    synth.add_argument("--width", type=int, default=160)
    synth.add_argument("--val-fraction", type=float, default=0.25)
    synth.add_argument("--seed", type=int, default=0)
    synth.set_defaults(run=run_synth)


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
    lines = [
        f"{i}\t{s.image.relative_to(root).as_posix()}\t{s.label.relative_to(root).as_posix()}\n"
        for i, s in enumerate(dataset.samples)
    ]
    with atomic_path(args.out) as tmp:
        tmp.write_text("".join(lines))
    print(f"wrote {args.out}: {len(lines)} samples of {dataset.name}")
    return 0


def run_synth(args: argparse.Namespace) -> int:
    if args.num_images < 1 or args.height < 8 or args.width < 8:
        raise FcnxsError("--num-images must be ≥ 1 and --height/--width ≥ 8")
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
