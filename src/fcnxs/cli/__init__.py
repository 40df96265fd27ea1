"""The ``fcnxs`` command: a thin layer over the library, one module per subcommand.

Exit status: 0 success, 1 some inputs failed (the rest were processed), 2 usage or input
errors (one line on stderr naming the file and the problem, never a traceback).
"""

from __future__ import annotations

import argparse

from fcnxs import __version__
from fcnxs.cli import (
    convert,
    create,
    data,
    demo,
    evaluate,
    export,
    info,
    segment,
    serve,
    train,
)
from fcnxs.cli.common import report_error
from fcnxs.errors import FcnxsError

COMMANDS = (demo, segment, train, evaluate, export, serve, convert, create, info, data)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fcnxs",
        description="Semantic segmentation with FCN-32s/16s/8s on a VGG16 trunk.",
    )
    parser.add_argument("--version", action="version", version=f"fcnxs {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args) or 0
    except FcnxsError as exc:
        report_error(str(exc))
        return exc.exit_status
    except KeyboardInterrupt:
        report_error("interrupted")
        return 130
