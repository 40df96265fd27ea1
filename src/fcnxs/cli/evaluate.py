"""``fcnxs evaluate``: the reference FCN metrics of a model, or of saved predictions."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from fcnxs.cli.common import (
    MODEL_HELP,
    add_agreement_arguments,
    add_dataset_arguments,
    add_engine_arguments,
    open_dataset_from,
    open_segmenter,
    tta_from,
)
from fcnxs.cli.options import NON_NEGATIVE, output_dir, output_file
from fcnxs.core import distributed
from fcnxs.core.collisions import refuse_replacing
from fcnxs.core.errors import FcnxsError
from fcnxs.data.dataset import Dataset
from fcnxs.evaluation.evaluate import (
    evaluate_model,
    evaluate_predictions,
    prediction_file,
    prediction_path,
)
from fcnxs.evaluation.report import confusion_path, format_table, report_dict, write_report


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="pixel accuracy, mean accuracy, per-class and mean IoU, f.w. IoU",
        description="Accumulates one confusion matrix over the whole dataset (void 255 "
        "ignored), prints per-class IoU and the summary, writes a JSON report and a "
        "confusion-matrix picture. Under torchrun each process takes a share.",
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", metavar="MODEL", help=MODEL_HELP)
    source.add_argument(
        "--predictions",
        type=Path,  # read, not written
        metavar="DIR",
        help="label maps of any tool, named by the images' stems",
    )
    add_agreement_arguments(p)
    add_dataset_arguments(p)
    p.add_argument(
        "--out",
        type=output_file,
        default="evaluation.json",
        metavar="REPORT.json",
        help="the JSON report; the picture goes beside it (default: evaluation.json)",
    )
    p.add_argument(
        "--save-predictions",
        type=output_dir,
        metavar="DIR",
        help="also write the model's label maps, as palette PNGs, to DIR",
    )
    add_engine_arguments(p)
    p.add_argument(
        "--workers", type=NON_NEGATIVE, default=2, help="threads decoding images ahead (default 2)"
    )
    p.set_defaults(run=run)


def _refuse_replacing_inputs(args: argparse.Namespace, dataset: Dataset) -> None:
    outputs = [args.out, confusion_path(args.out)]
    if args.save_predictions is not None:
        outputs += [prediction_path(args.save_predictions, s) for s in dataset.samples]
    inputs = dataset.files()
    if args.model is not None:
        inputs.append(Path(args.model))
    elif args.predictions.is_dir():
        inputs += [prediction_file(args.predictions, s) for s in dataset.samples]
    refuse_replacing(outputs, inputs)


def run(args: argparse.Namespace) -> int:
    tta = tta_from(args)
    if args.predictions is not None and (tta.active or args.precision != "fp32"):
        raise FcnxsError("--tta, --scales and --precision apply to --model, not to --predictions")
    context = distributed.init(args.device)
    try:
        dataset = open_dataset_from(args)
        _refuse_replacing_inputs(args, dataset)
        if args.model is not None:
            result = evaluate_model(
                open_segmenter(args, context.device),
                dataset,
                context=context,
                batch_size=args.batch_size,
                workers=args.workers,
                save_predictions=args.save_predictions,
            )
            source = args.model
        else:
            result = evaluate_predictions(args.predictions, dataset, context)
            source = str(args.predictions)
        if context.is_main:
            report = report_dict(
                result.hist,
                dataset.classes.names,
                result.num_images,
                source=source,
                dataset=dataset.name,
                **({"tta": dataclasses.asdict(tta)} if tta.active else {}),
            )
            picture = write_report(report, dataset.classes.names, args.out)
            print(format_table(report))
            print(f"wrote {args.out} and {picture}")
    finally:
        distributed.shutdown()
    return 0
