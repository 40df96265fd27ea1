"""Class names and colours of a dataset.

A classes file has one class per line, its index being the line number: ``name`` alone
(the VOC colour of that index) or ``name R G B``; a name may hold spaces ("traffic light").
Blank lines and ``#`` comments are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fcnxs.core.atomic import write_text
from fcnxs.core.errors import file_error, read_text
from fcnxs.core.palette import MAX_CLASSES, VOC_CLASSES, voc_colormap

CLASSES_FILE = "classes.txt"


@dataclass(frozen=True)
class ClassList:
    names: tuple[str, ...]
    colors: tuple[tuple[int, int, int], ...]

    def __len__(self) -> int:
        return len(self.names)


VOC = ClassList(VOC_CLASSES, tuple(voc_colormap(len(VOC_CLASSES))))


def _too_many(path: Path) -> Exception:
    return file_error(path, f"more than {MAX_CLASSES} classes (label maps are 8-bit, 255 is void)")


def read_classes_file(path: str | Path) -> ClassList:
    path = Path(path)
    text = read_text(path, "classes file")
    names, colors = [], []
    defaults = voc_colormap(MAX_CLASSES)
    lines = [ln.split("#", 1)[0].strip() for ln in text.splitlines()]
    for number, line in enumerate((ln for ln in lines if ln), start=1):
        parts = line.split()
        if len(names) == MAX_CLASSES:
            raise _too_many(path)
        if len(parts) >= 4 and all(p.isdigit() and int(p) <= 255 for p in parts[-3:]):
            name, color = " ".join(parts[:-3]), tuple(int(p) for p in parts[-3:])
        elif not parts[-1].lstrip("-").isdigit():
            name, color = " ".join(parts), defaults[len(names)]
        else:
            raise file_error(path, f"class {number}: expected 'name' or 'name R G B', got {line!r}")
        names.append(name)
        colors.append(color)
    if not names:
        raise file_error(path, "lists no classes")
    if len(set(colors)) != len(colors):
        raise file_error(path, "two classes share a colour")
    return ClassList(tuple(names), tuple(colors))


def write_classes_file(classes: ClassList, path: str | Path) -> None:
    lines = (
        f"{n} {r} {g} {b}\n" for n, (r, g, b) in zip(classes.names, classes.colors, strict=True)
    )
    write_text(path, "".join(lines))


def named_classes(names: list[str] | tuple[str, ...], path: Path) -> ClassList:
    """Classes given by name only (labelme's lists), in VOC's colours, as labelme's own
    colour map is; ``path`` is the file they come from, for errors."""
    if not names:
        raise file_error(path, "lists no classes")
    if len(names) > MAX_CLASSES:
        raise _too_many(path)
    return ClassList(tuple(names), tuple(voc_colormap(len(names))))


def read_name_list(path: str | Path) -> ClassList:
    """labelme2voc's ``class_names.txt``: one name a line, whole, ``_background_`` first."""
    path = Path(path)
    text = read_text(path, "class list")
    return named_classes([line.strip() for line in text.splitlines() if line.strip()], path)
