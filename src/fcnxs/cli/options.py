"""Option values checked as the command line is parsed, before any file or folder exists.

Every range the commands accept is an argparse ``type`` made from a `Range`
(`fcnxs.core.ranges`, where the library's own checks read them too): a bad
value stops the command with one line naming the option (exit 2) before a model is
loaded or an output folder created. "0 means off" is used nowhere: an option that can be
off is simply left out.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path

from fcnxs.core import ranges
from fcnxs.core.palette import MAX_CLASSES
from fcnxs.core.ranges import Range


class Parser(argparse.ArgumentParser):
    """argparse with its usage errors on one line: ``fcnxs: error: COMMAND: problem``."""

    def error(self, message: str):
        command = self.prog.removeprefix("fcnxs").strip()
        where = f"{command}: " if command else ""
        self.exit(2, f"fcnxs: error: {where}{message} (see {self.prog} --help)\n")


def option(allowed: Range) -> Callable[[str], float]:
    """The argparse type of a number in ``allowed``."""

    def parse(text: str) -> float:
        try:
            value = int(text) if allowed.integer else float(text)
        except ValueError:
            kind = "an integer" if allowed.integer else "a number"
            raise argparse.ArgumentTypeError(f"expected {kind}, not {text!r}") from None
        problem = allowed.problem(value)
        if problem is not None:
            raise argparse.ArgumentTypeError(problem.rsplit(", not ", 1)[0] + f", not {text}")
        return value

    parse.__name__ = "integer" if allowed.integer else "number"
    return parse


def integer(low: int | None = None, high: int | None = None) -> Callable[[str], int]:
    """An int in [low, high]."""
    return option(Range(low, high, integer=True))


def real(
    low: float | None = None, high: float | None = None, *, open_low=False, open_high=False
) -> Callable[[str], float]:
    """A finite float in [low, high] (or with open ends)."""
    return option(Range(low, high, open_low, open_high))


POSITIVE = option(ranges.POSITIVE)
NON_NEGATIVE = option(ranges.NON_NEGATIVE)
PORT = integer(1, 65535)
CLASS_COUNT = integer(1, MAX_CLASSES)
PROBABILITY = option(ranges.FRACTION)
"""A probability that must leave something: dropout, a held-out fraction."""


def _writable_place(path: Path) -> None:
    """The nearest existing folder above ``path`` must be a folder we may write in."""
    parent = path.parent
    while not parent.exists():
        if parent == parent.parent:
            break
        parent = parent.parent
    if parent.exists() and not parent.is_dir():
        raise argparse.ArgumentTypeError(f"{path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"{path}: cannot write in {parent}")


def output_dir(text: str) -> Path:
    """A folder to write into: absent (it will be made) or a folder, in a writable place."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path is not a folder")
    path = Path(text)
    if path.exists():
        if not path.is_dir():
            raise argparse.ArgumentTypeError(f"{path} is a file, not a folder")
        if not os.access(path, os.W_OK | os.X_OK):
            raise argparse.ArgumentTypeError(f"cannot write in {path}")
        return path
    _writable_place(path)
    return path


def output_file(text: str) -> Path:
    """A file to write: absent or a file (replaced), in a writable place."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path is not a file name")
    path = Path(text)
    if path.is_dir() or text.endswith(("/", os.sep)):
        raise argparse.ArgumentTypeError(f"{path} is a folder, not a file")
    _writable_place(path)
    return path
