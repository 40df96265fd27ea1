"""``fcnxs evaluate``: the reference FCN metrics of a model, or of saved predictions."""

from __future__ import annotations

import argparse
from pathlib import Path

from fcnxs import distributed
from fcnxs.cli.common import MODEL_HELP, add_dataset_arguments, open_dataset_from, open_model
from fcnxs.config import ARCHS
from fcnxs.evaluation import evaluate_model, evaluate_predictions
from fcnxs.report import format_table, report_dict, write_report


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
        type=Path,
        metavar="DIR",
        help="label maps of any tool, named by the images' stems",
    )
    p.add_argument("--epoch", type=int, help="MXNet checkpoint epoch (default: the latest)")
    p.add_argument("--arch", choices=ARCHS, help="must agree with the model")
    p.add_argument("--num-classes", type=int, help="must agree with the model")
    add_dataset_arguments(p)
    p.add_argument(
        "--out",
        type=Path,
        default=Path("evaluation.json"),
        metavar="REPORT.json",
        help="the JSON report; the picture goes beside it (default: evaluation.json)",
    )
    p.add_argument(
        "--save-predictions",
        type=Path,
        metavar="DIR",
        help="also write the model's label maps, as palette PNGs, to DIR",
    )
    p.add_argument("--workers", type=int, default=2, help="image loading workers")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    context = distributed.init(args.device)
    try:
        dataset = open_dataset_from(args)
        if args.model is not None:
            model = open_model(args).to(context.device)
            result = evaluate_model(
                model,
                dataset,
                context=context,
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
            )
            print(format_table(report))
            picture = write_report(report, dataset.classes.names, args.out)
            print(f"wrote {args.out} and {picture}")
    finally:
        distributed.shutdown()
    return 0
