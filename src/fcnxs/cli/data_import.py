"""``fcnxs data import labelme|coco``: other tools' annotations as a VOC-layout dataset."""

from __future__ import annotations

import argparse

from fcnxs.cli.common import add_split_arguments, require_new_folder
from fcnxs.cli.options import POSITIVE, output_dir
from fcnxs.data.coco import coco_sources, read_coco
from fcnxs.data.labelme import labelme_sources, read_labels_file
from fcnxs.data.voc_writer import write_voc_dataset

LAYOUT = (
    "OUT, a new or empty folder, receives JPEGImages/, SegmentationClass/ (palette PNGs), "
    "ImageSets/Segmentation/{train,val,trainval}.txt and classes.txt, which every command "
    "reads (--data OUT --split train). It appears whole or not at all."
)


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-o", "--out", required=True, type=output_dir, metavar="OUT", help="a new or empty folder"
    )
    add_split_arguments(p)
    p.add_argument(
        "--skip-bad",
        action="store_true",
        help="leave out the files with problems, listing them (default: exit 1, write nothing)",
    )


def add_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("import", help="turn labelme or COCO annotations into a dataset")
    tools = p.add_subparsers(dest="import_tool", metavar="TOOL", required=True)

    labelme = tools.add_parser(
        "labelme",
        help="a folder of labelme JSON files",
        description="Paints every labelme JSON file under SRC (its image beside it or embedded "
        "as imageData): shapes in file order, later over earlier, as labelme2voc paints them. "
        + LAYOUT,
    )
    labelme.add_argument("src", metavar="SRC", help="a folder of labelme .json files")
    labelme.add_argument(
        "--labels",
        required=True,
        metavar="FILE",
        help="one label a line: __ignore__ (void, 255), _background_ (class 0), then the classes",
    )
    labelme.add_argument(
        "--line-width", type=POSITIVE, default=10, help="pixels of line shapes (default 10)"
    )
    labelme.add_argument(
        "--point-size", type=POSITIVE, default=5, help="radius of point shapes (default 5)"
    )
    _add_common(labelme)
    labelme.set_defaults(run=run_labelme)

    coco = tools.add_parser(
        "coco",
        help="a COCO instance annotations file",
        description="Paints each image's annotations (polygons and RLE, decoded by pycocotools) "
        "in file order, crowd regions as void; the classes are background and the categories "
        "in the order of their ids. " + LAYOUT,
    )
    coco.add_argument("annotations", metavar="ANNOTATIONS.json", help="instances_*.json")
    coco.add_argument("--images", required=True, metavar="DIR", help="where file_name points")
    _add_common(coco)
    coco.set_defaults(run=run_coco)


def _write(args: argparse.Namespace, sources, classes, what: str) -> int:
    problems = write_voc_dataset(
        args.out,
        sources,
        classes,
        val_fraction=args.val_fraction,
        seed=args.seed,
        skip_bad=args.skip_bad,
        desc=f"import {what}",
    )
    written = len(sources) - len(problems)
    samples = f"{written} sample{'s' if written != 1 else ''}"
    print(f"wrote {samples} of {len(classes)} classes to {args.out} (VOC layout)")
    return 0


def run_labelme(args: argparse.Namespace) -> int:
    require_new_folder(args.out, "data import")
    labels = read_labels_file(args.labels)
    sources = labelme_sources(
        args.src, labels, line_width=args.line_width, point_size=args.point_size
    )
    return _write(args, sources, labels.classes, "labelme")


def run_coco(args: argparse.Namespace) -> int:
    require_new_folder(args.out, "data import")
    coco = read_coco(args.annotations)
    return _write(args, coco_sources(coco, args.images), coco.classes, "coco")
