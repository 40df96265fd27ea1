"""Files written by ``torch.save``, read without ever unpickling code.

``torch.load(weights_only=True)`` refuses anything but tensors and plain containers. Its
refusal comes with advice to load the file with ``weights_only=False``, which would run
whatever code the file holds: that advice is never passed on. Its warnings are not either:
the one line of the error says what is wrong.
"""

from __future__ import annotations

import pickle
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from fcnxs.core.errors import file_error, require_file


def load_weights_only(path: str | Path, what: str) -> Any:
    """The contents of a ``torch.save`` file of tensors; ``what`` names the expected kind of
    file in errors ("a PyTorch state dict", "a training checkpoint")."""
    path = Path(path)
    require_file(path, what)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise file_error(
            path,
            f"not {what}: it holds Python objects other than tensors, and fcnxs never "
            "unpickles code from a file",
        ) from None
    except (RuntimeError, zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise file_error(path, f"not {what} ({reason[:200]})") from None
