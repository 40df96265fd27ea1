"""Write files so that a reader never sees half of one, and a failed write is never silent.

Outputs and checkpoints go to a temporary name in the destination's folder and are
renamed into place only once complete: a crash or ``kill -9`` leaves either the old file
or the new one, never a truncated one. Any OS error while writing (a full disk, a file-size
limit, a read-only folder) becomes one `OutputError` naming the final path.

Two writers need help to report such errors at all:

- Pillow's C encoders ignore a short write: on a full disk a JPEG that fits in one buffer
  is left truncated with no error. `save_image` encodes in memory and writes in Python,
  whose buffered writer raises on a short write.
- ``torch.save`` turns the OS error into an opaque ``RuntimeError`` ("unexpected pos").
  `atomic_file` hands it a file that remembers the OS error and re-raises that instead.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from PIL import Image

from fcnxs.core.errors import OutputError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` if the block succeeds."""
    final = Path(path)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    except OSError as exc:
        raise OutputError.of(final, exc) from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would make outputs private
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError.of(final, exc) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside ``path`` (absent or empty); rename it to ``path`` if
    the block succeeds, else remove it: a folder of outputs appears whole or not at all."""
    final = Path(path)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    except OSError as exc:
        raise OutputError.of(final, exc) from None
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp's 0700 would make the folder private
        os.replace(tmp, final)  # replaces an empty folder, fails on one that is not
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise OutputError.of(final, exc) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


class _RecordingFile(io.RawIOBase):
    """A writable file that keeps the first OS error of its writes."""

    def __init__(self, file: BinaryIO) -> None:
        super().__init__()
        self.file = file
        self.error: OSError | None = None

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        try:
            return self.file.write(data)
        except OSError as exc:
            self.error = self.error or exc
            raise

    def flush(self) -> None:
        self.file.flush()


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """`atomic_path` as an open binary file, for writers that hide the OS error (torch.save):
    if the block fails after a write failed, the write's OS error is what is reported."""
    with atomic_path(path) as tmp, open(tmp, "wb") as raw:
        recording = _RecordingFile(raw)
        try:
            yield recording
        except Exception:
            if recording.error is not None:
                raise recording.error from None
            raise


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    write_bytes(path, text.encode("utf-8"))


def save_image(image: Image.Image, path: str | os.PathLike, format: str, **params) -> None:
    """Save a Pillow image atomically, encoded in memory so that a full disk is an error."""
    buffer = io.BytesIO()
    image.save(buffer, format=format, **params)
    write_bytes(path, buffer.getvalue())


def save_figure(figure, path: str | os.PathLike, **params) -> None:
    """Save a matplotlib figure as PNG atomically (its PNG writer is Pillow's)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", **params)
    write_bytes(path, buffer.getvalue())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def exchange(new: Path, old: Path) -> None:
    """Put the folder ``new`` at ``old``'s path in one step, ``old``'s content (if any) then
    at ``new``'s: Linux's renameat2(RENAME_EXCHANGE), so that no moment leaves ``old``'s path
    without a whole folder. Elsewhere, two renames (``old`` set aside first, then removed by
    the caller from ``new``'s path)."""
    if not old.exists():
        os.replace(new, old)
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        at_cwd, rename_exchange = -100, 2
        if libc.renameat2(at_cwd, bytes(new), at_cwd, bytes(old), rename_exchange) == 0:
            return
    except (AttributeError, OSError):
        pass
    aside = new.with_name(new.name + ".old")
    os.replace(old, aside)
    os.replace(new, old)
    os.replace(aside, new)
