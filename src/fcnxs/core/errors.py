"""The exception types users see.

Every problem caused by the user's input (a bad file, a wrong option) is raised as
`FcnxsError` with a one-line message that names the file and the problem. The CLI prints
that line and exits with its ``exit_status``; anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Callable
from pathlib import Path

NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS})
"""Write errors that every later write to the same place would repeat."""


PARAMETER = re.compile(r"`([a-z_][a-z0-9_]*)`")
"""How a message names a parameter: `epochs`. Shown plainly by the library, as the
matching option (--epochs) by the command line."""


class FcnxsError(Exception):
    """A problem with the user's input, described in one line."""

    exit_status = 2

    def __str__(self) -> str:
        return self.render(lambda name: name)

    def render(self, name_of: Callable[[str], str]) -> str:
        """The message with every `parameter` named as ``name_of`` says."""
        return PARAMETER.sub(lambda m: name_of(m.group(1)), super().__str__())


class Problems(FcnxsError):
    """Several problems with the inputs, one line each, reported together."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))


class TrainingFailed(FcnxsError):
    """A run that cannot go on (a non-finite loss, a full disk); its last good checkpoint
    is kept."""

    exit_status = 1


class OutputError(FcnxsError):
    """An output that could not be written (nothing of it is left behind)."""

    def __init__(self, message: str, errno_: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno_

    @classmethod
    def of(cls, path: str | os.PathLike, exc: OSError) -> OutputError:
        reason = exc.strerror or str(exc) or type(exc).__name__
        return cls(f"{os.fspath(path)}: could not write ({reason})", exc.errno)

    @property
    def out_of_space(self) -> bool:
        """A full disk, a quota, a file-size limit or a read-only file system."""
        return self.errno in NO_SPACE


def file_error(path: str | os.PathLike, problem: str) -> FcnxsError:
    """An error of the form ``PATH: problem``, the shape every file error takes."""
    return FcnxsError(f"{os.fspath(path)}: {problem}")


def require_file(path: str | os.PathLike, kind: str) -> None:
    """Raise the one-line error for a path that cannot be a ``kind`` ("an image", "a model
    file") before any reader tries it: missing, a directory, or empty."""
    path = Path(path)
    if not path.exists():
        raise file_error(path, "no such file")
    if path.is_dir():
        raise file_error(path, f"is a directory, not {kind}")
    if path.stat().st_size == 0:
        raise file_error(path, "empty file")


def read_text(path: str | os.PathLike, kind: str) -> str:
    """A text file a user hands us (a split, list, classes or labels file, JSON) as UTF-8:
    missing, a directory, binary or unreadable is the one-line error, never a traceback."""
    path = Path(path)
    if not path.exists():
        raise file_error(path, f"no such {kind}")
    if path.is_dir():
        raise file_error(path, f"is a directory, not a {kind}")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise file_error(path, f"not a {kind}: not UTF-8 text") from None
    except OSError as exc:
        raise file_error(path, f"unreadable ({exc.strerror or exc})") from None
