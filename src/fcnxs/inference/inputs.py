"""What ``fcnxs segment INPUT...`` means: files, folders (``--recursive``) and glob patterns,
each with the output path it maps to (the input's layout kept, relative to the folder or
to the pattern's fixed part; a plain file maps to its stem).

Every problem with the inputs is found before the model is loaded, and all of them are
reported at once: a missing file, a folder without images, a pattern that matches
nothing, two inputs that would be written to the same name. Hidden files are left out of
folders and patterns, as the shell's globbing leaves them out. Neither ``--recursive`` nor
``**`` descends into symbolic links to folders, so a link loop cannot multiply the inputs.
"""

from __future__ import annotations

from pathlib import Path

from fcnxs.core.errors import Problems
from fcnxs.data.images import IMAGE_SUFFIXES

MAGIC = set("*?[")


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def _hidden(path: Path, base: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(base).parts)


def _images_in(folder: Path, recursive: bool) -> list[Path]:
    """Images in a folder, hidden ones (macOS's ``._photo.jpg``) left out."""
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in found if _is_image(p) and not _hidden(p, folder))


def _split_pattern(pattern: str) -> tuple[Path, str]:
    """(the fixed folder before the first wildcard, the rest of the pattern)."""
    parts = Path(pattern).parts
    first = next(i for i, p in enumerate(parts) if MAGIC & set(p))
    return Path(*parts[:first]) if first else Path("."), "/".join(parts[first:])


def _matches(base: Path, rest: str) -> list[Path]:
    """Files matching ``rest`` under ``base``; hidden names only where the pattern names
    them, as the shell's globbing does."""
    shows_hidden = any(part.startswith(".") for part in rest.split("/"))
    return sorted(
        p for p in base.glob(rest) if p.is_file() and (shows_hidden or not _hidden(p, base))
    )


def expand_inputs(inputs: list[str], recursive: bool = False) -> list[tuple[Path, Path]]:
    """(image path, output path without suffix) for every input; raises `Problems`
    listing every input that names nothing and every output claimed twice."""
    items: list[tuple[Path, Path]] = []
    problems: list[str] = []
    for text in inputs:
        path = Path(text)
        if path.is_dir():
            found = _images_in(path, recursive)
            if not found:
                where = (
                    "in it or its subfolders" if recursive else "in it (`recursive` looks deeper)"
                )
                problems.append(f"{text}: a folder with no images {where}")
            items += [(p, p.relative_to(path).with_suffix("")) for p in found]
        elif MAGIC & set(text) and not path.exists():
            base, rest = _split_pattern(text)
            found = _matches(base, rest) if base.is_dir() else []
            if not found:
                problems.append(f"{text}: the pattern matches no files")
            items += [(p, p.relative_to(base).with_suffix("")) for p in found]
        elif not path.exists():
            problems.append(f"{text}: no such file or folder")
        else:
            items.append((path, Path(path.stem)))
    claimed: dict[Path, Path] = {}
    for source, output in items:
        if output in claimed and claimed[output] != source:
            problems.append(f"{claimed[output]} and {source} would both be written as {output}.png")
        claimed.setdefault(output, source)
    if problems:
        raise Problems(problems)
    return list(dict.fromkeys(items))
