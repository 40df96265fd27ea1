"""The ``fcnxs`` command: a thin layer over the library, one module per subcommand.

Exit status: 0 success, 1 some inputs failed (the rest were processed) or a training run
stopped (its last checkpoint kept), 2 usage or input errors (one line on stderr naming the
file and the problem, never a traceback), 130 interrupted, 141 the reader of the output went
away (``| head``), as other command-line tools.
"""

from __future__ import annotations

import argparse
import difflib
import logging
import os
import sys

from tqdm import tqdm

from fcnxs import __version__
from fcnxs.cli import (
    convert,
    create,
    data,
    demo,
    evaluate,
    export,
    info,
    models,
    segment,
    serve,
    train,
)
from fcnxs.cli.allocator import keep_freed_memory
from fcnxs.cli.common import report_error, report_warning
from fcnxs.cli.options import Parser
from fcnxs.core import progress
from fcnxs.core.errors import FcnxsError

COMMANDS = (demo, segment, train, evaluate, export, serve, convert, create, info, models, data)


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


class _Console(logging.Handler):
    """The library's log records on the terminal: warnings on stderr as one line each,
    progress lines on stderr, everything else (the tutorial's training lines, the stages
    of a pipeline, the demo's steps) as plain lines on stdout. tqdm.write keeps a progress
    bar intact on a terminal."""

    def emit(self, record: logging.LogRecord) -> None:
        message = self.format(record)
        if record.levelno >= logging.WARNING:
            report_warning(message)
        else:
            stream = sys.stderr if record.name == progress.__name__ else sys.stdout
            tqdm.write(message, file=stream)
            stream.flush()


def _show_library_logs() -> None:
    logger = logging.getLogger("fcnxs")
    if not any(isinstance(h, _Console) for h in logger.handlers):
        logger.addHandler(_Console())
    logger.setLevel(logging.INFO)


def run_command() -> None:
    """The ``fcnxs`` program: `main`, then the process ends at once. Every output was
    written, checked and renamed before (files are never left half-written), and the
    standard streams are flushed here; what is skipped is Python tearing down gigabytes of
    tensors one by one, 0.4 s of a one-photo ``segment`` (measured)."""
    status = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def _misspelt_options(parser: argparse.ArgumentParser, argv: list[str]) -> None:
    """An option the command does not have, close to one it has, is named with it before
    argparse would answer only that a required option is missing (``--modle``)."""
    command, rest = parser, list(argv)
    while rest:  # down to the (sub)command the words name
        subparsers = [a for a in command._actions if isinstance(a, argparse._SubParsersAction)]
        if not subparsers or rest[0] not in subparsers[0].choices:
            break
        command = subparsers[0].choices[rest.pop(0)]
    if command is parser:
        return
    known = [option for action in command._actions for option in action.option_strings]
    for token in rest:
        option = token.split("=", 1)[0]
        if token == "--":
            return
        if option.startswith("--") and option not in known:
            close = difflib.get_close_matches(option, known, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            command.error(f"unrecognized option {option}{hint}")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    _misspelt_options(parser, sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    _show_library_logs()
    keep_freed_memory()
    try:
        return args.run(args) or 0
    except FcnxsError as exc:
        report_error(exc)
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
