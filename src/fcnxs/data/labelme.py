"""labelme's JSON annotations as label maps.

A labels file lists the classes one a line, whole (names may hold spaces): ``__ignore__``
(optional) is void, 255; ``_background_``, class 0, comes first of the classes and fills
every pixel no shape covers. Shapes are painted in file order, later over earlier, each
drawn as labelme's own ``shape_to_mask`` draws it for labelme2voc, with Pillow, outline and
fill alike, so that a folder imported here and converted by labelme2voc agree on every
pixel:

- polygon (also a shape without ``shape_type``): ``ImageDraw.polygon``;
- rectangle: two corners (in any order), ``ImageDraw.rectangle``;
- circle: the centre and a point on the rim, ``ImageDraw.ellipse`` of that radius;
- line (two points) and linestrip (two or more): ``ImageDraw.line`` ``line_width`` pixels
  wide (labelme: 10);
- point: ``ImageDraw.ellipse`` of radius ``point_size`` (labelme: 5);
- mask: a base64 PNG of the box between its two corners (both included), as labelme has it.

A problem (an unknown label, a point off the image, a wrong number of points, an image whose
size disagrees with ``imageHeight``/``imageWidth``, broken JSON or base64) is one
`FcnxsError` naming the file and the shape.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image, ImageDraw

from fcnxs.core.errors import FcnxsError, file_error, read_text
from fcnxs.core.palette import VOID_LABEL
from fcnxs.data.classes import ClassList, named_classes
from fcnxs.data.images import decode_image
from fcnxs.data.voc_writer import Converted

IGNORE = "__ignore__"
BACKGROUND = "_background_"
POINTS = {"polygon": (3, None), "rectangle": (2, 2), "circle": (2, 2), "line": (2, 2),
          "linestrip": (2, None), "point": (1, 1), "mask": (2, 2)}  # fmt: skip
"""The shape kinds, with the least and most points each takes (None: no limit)."""
OFF_IMAGE = 1.0
"""How far (pixels) beyond the image's edges a point may lie: labelme keeps points on the
image, other tools that write its format round them outwards."""


@dataclass(frozen=True)
class Labels:
    """The classes of a labels file, and the value each label paints."""

    classes: ClassList
    values: dict[str, int]


def read_labels_file(path: str | Path) -> Labels:
    path = Path(path)
    lines = [line.strip() for line in read_text(path, "labels file").splitlines() if line.strip()]
    names = tuple(line for line in lines if line != IGNORE)
    if not names or names[0] != BACKGROUND:
        raise file_error(path, f"the first class must be {BACKGROUND} (labelme's convention)")
    if len(set(lines)) != len(lines):
        raise file_error(path, "lists a label twice")
    classes = named_classes(names, path)
    values = {name: i for i, name in enumerate(names)}
    if IGNORE in lines:
        values[IGNORE] = VOID_LABEL
    return Labels(classes, values)


def _b64(text: object, where: str) -> bytes:
    """Base64 text decoded; ``where`` (file, and shape) starts the error's line."""
    try:
        return base64.b64decode(str(text), validate=True)
    except (binascii.Error, ValueError):
        raise FcnxsError(f"{where} is not valid base64") from None


def _image(doc: dict, path: Path) -> tuple[Image.Image, bytes]:
    """The file's image: embedded as ``imageData``, else ``imagePath`` beside the JSON."""
    if doc.get("imageData"):
        data = _b64(doc["imageData"], f"{path}: imageData")
        return decode_image(io.BytesIO(data), f"{path}: imageData"), data
    named = doc.get("imagePath")
    if not isinstance(named, str) or not named:
        raise file_error(path, "has neither imageData nor imagePath")
    # imagePath is relative to the JSON file; one written elsewhere (another machine's
    # absolute path, Windows separators) is looked for by its name beside the JSON file
    relative = named.replace("\\", "/")
    candidates = [path.parent / relative, path.parent / PurePosixPath(relative).name]
    image_path = next((c for c in candidates if c.is_file()), None)
    if image_path is None:
        raise file_error(path, f"its image {named} is not beside it (and it has no imageData)")
    data = image_path.read_bytes()
    return decode_image(io.BytesIO(data), str(image_path)), data


def _points(shape: dict, kind: str, where: str, size: tuple[int, int]) -> list[tuple[float, ...]]:
    points = shape.get("points")
    try:
        xy = [(float(x), float(y)) for x, y in points]
    except (TypeError, ValueError):
        raise FcnxsError(f"{where}: points must be a list of [x, y] numbers") from None
    least, most = POINTS[kind]
    if len(xy) < least or (most is not None and len(xy) > most):
        count = f"{least}" if least == most else f"at least {least}"
        raise FcnxsError(f"{where}: a {kind} takes {count} points, not {len(xy)}")
    width, height = size
    for x, y in xy:
        if not (math.isfinite(x) and math.isfinite(y)):
            raise FcnxsError(f"{where}: point ({x}, {y}) is not finite")
        if not (-OFF_IMAGE <= x <= width + OFF_IMAGE and -OFF_IMAGE <= y <= height + OFF_IMAGE):
            raise FcnxsError(f"{where}: point ({x:g}, {y:g}) is outside the {width}×{height} image")
    return xy


def _mask_shape(shape: dict, xy: list, size: tuple[int, int], where: str):
    """A mask shape's boolean image: its PNG placed in the box between its corners."""
    (x1, y1), (x2, y2) = (tuple(int(v) for v in p) for p in xy)
    try:
        with Image.open(io.BytesIO(_b64(shape.get("mask"), f"{where}: mask"))) as png:
            box = np.asarray(png.convert("L")) > 0
    except (OSError, Image.DecompressionBombError):
        raise FcnxsError(f"{where}: mask is not a PNG image") from None
    if box.shape != (y2 - y1 + 1, x2 - x1 + 1):
        raise FcnxsError(
            f"{where}: mask is {box.shape[1]}×{box.shape[0]}, its box {x2 - x1 + 1}×{y2 - y1 + 1}"
        )
    mask = np.zeros(size[::-1], bool)
    ys, xs = np.nonzero(box)
    ys, xs = ys + y1, xs + x1
    on_image = (ys >= 0) & (ys < size[1]) & (xs >= 0) & (xs < size[0])
    mask[ys[on_image], xs[on_image]] = True
    return mask


def _paint(kind: str, xy: list, size: tuple[int, int], line_width: int, point_size: int):
    """A shape's mask, drawn by Pillow's calls as labelme's ``shape_to_mask`` makes them."""
    canvas = Image.new("L", size)
    draw = ImageDraw.Draw(canvas)
    if kind in ("circle", "point"):
        (cx, cy), *rim = xy
        r = math.sqrt((cx - rim[0][0]) ** 2 + (cy - rim[0][1]) ** 2) if rim else point_size
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=1, fill=1)
    elif kind == "rectangle":  # Pillow wants the corners ordered; labelme's may not be
        (x1, y1), (x2, y2) = xy
        box = [min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)]
        draw.rectangle(box, outline=1, fill=1)
    elif kind in ("line", "linestrip"):
        draw.line(xy, fill=1, width=line_width)
    else:
        draw.polygon(xy, outline=1, fill=1)
    return np.asarray(canvas, bool)


def read_annotation(
    path: str | Path, labels: Labels, *, line_width: int = 10, point_size: int = 5
) -> Converted:
    """A labelme JSON file as its image and label map (H×W uint8, 255 void)."""
    path = Path(path)
    try:
        doc = json.loads(read_text(path, "labelme JSON file"))
    except json.JSONDecodeError as exc:
        raise file_error(path, f"not a labelme JSON file ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("shapes"), list):
        raise file_error(path, "not a labelme JSON file (no list of shapes)")
    image, data = _image(doc, path)
    size = image.size
    claimed = (doc.get("imageWidth"), doc.get("imageHeight"))
    if None not in claimed and tuple(claimed) != size:
        claims = f"imageWidth×imageHeight is {claimed[0]}×{claimed[1]}"
        raise file_error(path, f"{claims}, its image is {size[0]}×{size[1]}")
    label = np.zeros(size[::-1], np.uint8)
    for number, shape in enumerate(doc["shapes"], start=1):
        if not isinstance(shape, dict):
            raise file_error(path, f"shape {number} is not an object")
        name, kind = shape.get("label"), shape.get("shape_type") or "polygon"
        where = f"{path}: shape {number} ({name!r}, {kind})"
        if kind not in POINTS:
            raise FcnxsError(f"{where}: unknown shape type (expected {', '.join(POINTS)})")
        if name not in labels.values:
            raise FcnxsError(f"{where}: label {name!r} is not in the labels file")
        xy = _points(shape, kind, where, size)
        if kind == "mask":
            mask = _mask_shape(shape, xy, size, where)
        else:
            mask = _paint(kind, xy, size, line_width, point_size)
        label[mask] = labels.values[name]
    return Converted(image, data, label)


def labelme_sources(
    folder: str | Path, labels: Labels, *, line_width: int = 10, point_size: int = 5
) -> list[tuple[str, Callable[[], Converted]]]:
    """(sample id, conversion) of every labelme file under ``folder`` (subfolders included,
    hidden ones and links to folders left out); the id is the file's path in the folder
    without suffix, ``/`` written as ``_``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise file_error(folder, "no such folder")
    files = sorted(
        p
        for p in folder.rglob("*.json")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )
    if not files:
        raise file_error(folder, "holds no labelme .json files")
    ids: dict[str, Path] = {}
    for path in files:
        sample_id = path.relative_to(folder).with_suffix("").as_posix().replace("/", "_")
        if sample_id in ids:
            raise file_error(path, f"gives the same sample id as {ids[sample_id]}")
        ids[sample_id] = path
    return [
        (i, partial(read_annotation, p, labels, line_width=line_width, point_size=point_size))
        for i, p in ids.items()
    ]
