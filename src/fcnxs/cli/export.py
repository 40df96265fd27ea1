"""``fcnxs export MODEL -o model.onnx``: ONNX with dynamic size, checked with ONNX Runtime."""

from __future__ import annotations

import argparse

from fcnxs.apps.export import OPSET, OPSETS, check_onnx, export_onnx, external_data_path, min_side
from fcnxs.cli.common import MODEL_HELP, open_model
from fcnxs.cli.options import NON_NEGATIVE, integer, output_file
from fcnxs.core.collisions import refuse_replacing
from fcnxs.core.errors import FcnxsError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export",
        help="export a model to ONNX (dynamic batch, height and width)",
        description="Input 'image' (N, 3, H, W), preprocessed as the metadata 'fcnxs_config' "
        "says; output 'scores' (N, C, H, W). Checked against PyTorch with ONNX Runtime on "
        "several sizes unless --no-check. Needs the onnx extra: pip install 'fcnxs[onnx]'.",
    )
    p.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    p.add_argument("-o", "--out", required=True, type=output_file, metavar="OUT.onnx")
    p.add_argument(
        "--opset",
        type=integer(*OPSETS),
        default=OPSET,
        help=f"ONNX opset, {OPSETS[0]} to {OPSETS[1]} (default {OPSET})",
    )
    p.add_argument("--no-check", action="store_true", help="skip the ONNX Runtime comparison")
    p.add_argument(
        "--epoch", type=NON_NEGATIVE, help="MXNet checkpoint epoch (default: the latest)"
    )
    p.set_defaults(run=run, arch=None, num_classes=None)


def run(args: argparse.Namespace) -> int:
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise FcnxsError("export needs the onnx package: pip install 'fcnxs[onnx]'") from None
    refuse_replacing([args.out, external_data_path(args.out)], [args.model])
    model = open_model(args)
    export_onnx(model, args.out, args.opset)
    print(f"wrote {args.out} (opset {args.opset}; sides of at least {min_side(model)} px)")
    if not args.no_check:
        side = max(min_side(model), 32)
        worst = check_onnx(model, args.out, [(side, side + 7), (97, 131), (240, 320)])
        if worst is None:
            print(
                "ONNX Runtime vs PyTorch: not compared: the model's scores are all zero "
                "(untrained score layers start at zero), so equal outputs would prove nothing"
            )
            return 0
        print(f"ONNX Runtime vs PyTorch: max |difference| = {worst:.2e} of the largest logit")
        if worst > 1e-4:
            raise FcnxsError(f"{args.out}: ONNX Runtime differs from PyTorch by {worst:.2e}")
    return 0
