"""Archives unpacked safely and whole: no member lands outside the target (an absolute
path, ``..``, or a link is refused before anything is written), and the target folder
appears only when every member is out (a temporary folder beside it, renamed at the end),
so a half-extracted folder is never taken for a dataset."""

from __future__ import annotations

import shutil
import tarfile
from pathlib import Path, PurePosixPath

from fcnxs.core.atomic import atomic_dir
from fcnxs.core.errors import FcnxsError, file_error


def extract(
    archive: Path, target: Path, root: str | None = None, extra: tuple[Path, ...] = ()
) -> Path:
    """Unpack ``archive`` (a tar, any compression) so that its folder ``root`` (all of it
    when None) becomes ``target``, with the ``extra`` files beside what it holds."""
    try:
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            inner = PurePosixPath(root) if root else None
            chosen = [m for m in members if _checked(m, archive, inner)]
            if not chosen:
                raise file_error(archive, f"holds no {root or 'files'}")
            with atomic_dir(target) as tmp:
                for member in chosen:
                    if inner is not None:
                        member.name = str(PurePosixPath(member.name).relative_to(inner))
                    tar.extract(member, tmp, set_attrs=False)
                for path in extra:
                    shutil.copyfile(path, tmp / path.name)
    except (tarfile.TarError, EOFError, OSError) as exc:
        if isinstance(exc, FcnxsError):
            raise
        raise file_error(archive, f"not a readable archive ({exc})") from None
    return target


def _checked(member: tarfile.TarInfo, archive: Path, inner: PurePosixPath | None) -> bool:
    """Whether ``member`` is to be extracted; an unsafe one is an error naming it."""
    path = PurePosixPath(member.name)
    if path.is_absolute() or ".." in path.parts:
        raise file_error(archive, f"member {member.name!r} would land outside the folder")
    if member.issym() or member.islnk() or not (member.isfile() or member.isdir()):
        raise file_error(archive, f"member {member.name!r} is a link or a device, refused")
    return inner is None or (path != inner and inner in path.parents)
