"""The one exception type users see.

Every problem caused by the user's input (a bad file, a wrong option) is raised as
`FcnxsError` with a one-line message that names the file and the problem. The CLI prints
that line and exits with status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import os


class FcnxsError(Exception):
    """A problem with the user's input, described in one line."""

    exit_status = 2


class TrainingFailed(FcnxsError):
    """A run that cannot go on (a non-finite loss); its last good checkpoint is kept."""

    exit_status = 1


def file_error(path: str | os.PathLike, problem: str) -> FcnxsError:
    """An error of the form ``PATH: problem``, the shape every file error takes."""
    return FcnxsError(f"{os.fspath(path)}: {problem}")
