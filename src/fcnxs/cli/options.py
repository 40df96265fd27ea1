"""Option values checked as the command line is parsed, before any file or folder exists.

Every range the commands accept is written here once, as an argparse ``type``: a bad
value stops the command with one line naming the option (exit 2) before a model is
loaded or an output folder created. "0 means off" is used nowhere: an option that can be
off is simply left out.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path

from fcnxs.core.palette import MAX_CLASSES


class Parser(argparse.ArgumentParser):
    """argparse with its usage errors on one line: ``fcnxs: error: COMMAND: problem``."""

    def error(self, message: str):
        command = self.prog.removeprefix("fcnxs").strip()
        where = f"{command}: " if command else ""
        self.exit(2, f"fcnxs: error: {where}{message} (see {self.prog} --help)\n")


def integer(low: int | None = None, high: int | None = None) -> Callable[[str], int]:
    """An int in [low, high]."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, not {text!r}") from None
        _check_range(value, text, low, high, closed_high=True)
        return value

    parse.__name__ = "integer"
    return parse


def real(
    low: float | None = None, high: float | None = None, *, open_low=False, open_high=False
) -> Callable[[str], float]:
    """A finite float in [low, high] (or with open ends)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, not {text!r}") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise argparse.ArgumentTypeError(f"expected a finite number, not {text!r}")
        if open_low and low is not None and value <= low:
            raise argparse.ArgumentTypeError(f"must be greater than {low:g}, not {text}")
        _check_range(value, text, None if open_low else low, high, closed_high=not open_high)
        return value

    parse.__name__ = "number"
    return parse


def _check_range(value, text: str, low, high, closed_high: bool) -> None:
    if low is not None and value < low:
        raise argparse.ArgumentTypeError(f"must be at least {low:g}, not {text}")
    if high is not None and (value > high or (not closed_high and value >= high)):
        bound = "at most" if closed_high else "less than"
        raise argparse.ArgumentTypeError(f"must be {bound} {high:g}, not {text}")


POSITIVE = integer(1)
NON_NEGATIVE = integer(0)
PORT = integer(1, 65535)
CLASS_COUNT = integer(1, MAX_CLASSES)
PROBABILITY = real(0.0, 1.0, open_high=True)
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
