"""What ``fcnxs segment INPUT...`` means: files, folders (``--recursive``) and glob patterns,
each with the output path it maps to (the input's layout kept, relative to the folder or
to the pattern's fixed part; a plain file maps to its stem)."""

from __future__ import annotations

import glob
from pathlib import Path

from fcnxs.errors import FcnxsError
from fcnxs.images import IMAGE_SUFFIXES

MAGIC = set("*?[")


def _images_in(folder: Path, recursive: bool) -> list[Path]:
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in found if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _fixed_part(pattern: str) -> Path:
    parts = Path(pattern).parts
    fixed = [p for p in parts[: next(i for i, p in enumerate(parts) if MAGIC & set(p))]]
    return Path(*fixed) if fixed else Path(".")


def expand_inputs(inputs: list[str], recursive: bool = False) -> list[tuple[Path, Path]]:
    """(image path, output path without suffix) for every input; an output claimed twice
    is an error naming both inputs."""
    items: list[tuple[Path, Path]] = []
    for text in inputs:
        path = Path(text)
        if path.is_dir():
            items += [(p, p.relative_to(path).with_suffix("")) for p in _images_in(path, recursive)]
        elif MAGIC & set(text) and not path.exists():
            base = _fixed_part(text)
            matches = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
            if not matches:
                raise FcnxsError(f"{text}: the pattern matches no files")
            items += [(p, p.relative_to(base).with_suffix("")) for p in matches]
        else:
            items.append((path, Path(path.stem)))
    claimed: dict[Path, Path] = {}
    for source, output in items:
        if output in claimed and claimed[output] != source:
            raise FcnxsError(
                f"{claimed[output]} and {source} would both be written as {output}.png"
            )
        claimed[output] = source
    return list(dict.fromkeys(items))
