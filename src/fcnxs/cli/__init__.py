"""The ``fcnxs`` command: a thin layer over the library, one module per subcommand.

Exit status: 0 success, 1 some inputs failed (the rest were processed) or a training run
stopped (its last checkpoint kept), 2 usage or input errors (one line on stderr naming the
file and the problem, never a traceback), 130 interrupted, 141 the reader of the output went
away (``| head``), as other command-line tools.
"""

from __future__ import annotations

import argparse
import os
import sys

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
from fcnxs.cli.options import Parser
from fcnxs.core.errors import FcnxsError

COMMANDS = (demo, segment, train, evaluate, export, serve, convert, create, info, data)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
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
    except BrokenPipeError:
        # Whoever read our output stopped reading; stdout is pointed at /dev/null so that
        # Python's own flush at exit does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as exc:  # an OS error no command foresaw: still one line
        where = f"{exc.filename}: " if exc.filename else ""
        report_error(f"{where}{exc.strerror or exc}")
        return 2
