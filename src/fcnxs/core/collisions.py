"""Outputs that would replace inputs are refused before anything is written.

Every command that writes checks its planned outputs against what it reads (images,
ground truth, list and classes files, models) first: a mask written over its own photo,
or predictions over the ground truth they are scored against, is a loss no message after
the fact can undo. Paths are compared as the file system sees them: through symbolic
links, ``..`` and hard links.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from fcnxs.core.errors import FcnxsError


def _keys(path: Path) -> set:
    keys: set = {os.path.realpath(path)}
    try:
        stat = path.stat()
        keys.add((stat.st_dev, stat.st_ino))
    except OSError:
        pass
    return keys


def refuse_replacing(
    outputs: Iterable[str | os.PathLike], inputs: Iterable[str | os.PathLike]
) -> None:
    """Raise `FcnxsError` if any output is one of the inputs (exit 2, nothing written)."""
    known: dict = {}
    for source in inputs:
        for key in _keys(Path(source)):
            known.setdefault(key, Path(source))
    for output in outputs:
        for key in _keys(Path(output)):
            if key in known:
                raise FcnxsError(
                    f"{output}: would replace the input {known[key]}; write the outputs "
                    "somewhere else"
                )
