"""COCO instance annotations as semantic label maps.

The classes are ``background`` (class 0, every pixel no annotation covers) and then the
categories in the order of their ids. Each image's annotations are painted in file order,
later over earlier; a crowd region (``iscrowd``) paints void (255), since the objects in it
are not outlined one by one. Polygons and run-length encodings (compressed or not) are
decoded by pycocotools, COCO's own reference implementation.
"""

from __future__ import annotations

import io
import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from fcnxs.core.errors import FcnxsError, file_error, read_text, require_file
from fcnxs.core.palette import VOID_LABEL
from fcnxs.data.classes import ClassList, named_classes
from fcnxs.data.images import decode_image
from fcnxs.data.voc_writer import Converted

BACKGROUND = "background"


@dataclass(frozen=True)
class CocoFile:
    """An annotations file, checked: its classes, each category id's class, and each image
    entry with its annotations (in file order)."""

    path: Path
    classes: ClassList
    class_of: dict[int, int]
    images: list[dict]
    annotations: dict[int, list[dict]]


def _entries(doc: dict, key: str, fields: tuple[str, ...], path: Path) -> list[dict]:
    entries = doc.get(key, [])
    if not isinstance(entries, list):
        raise file_error(path, f"'{key}' is not a list")
    for number, entry in enumerate(entries, start=1):
        missing = [f for f in fields if not isinstance(entry, dict) or f not in entry]
        if missing:
            raise file_error(path, f"{key} entry {number} has no '{missing[0]}'")
    return entries


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_ids(entries: list[dict], key: str, field: str, path: Path) -> None:
    for number, entry in enumerate(entries, start=1):
        if not _is_int(entry[field]):
            raise file_error(path, f"{key} entry {number}: '{field}' must be a whole number")


def read_coco(path: str | Path) -> CocoFile:
    path = Path(path)
    try:
        doc = json.loads(read_text(path, "COCO annotations file"))
    except json.JSONDecodeError as exc:
        raise file_error(path, f"not a COCO JSON file ({exc})") from None
    if not isinstance(doc, dict) or "categories" not in doc or "images" not in doc:
        raise file_error(path, "not a COCO annotations file (no 'images' and 'categories')")
    categories = _entries(doc, "categories", ("id", "name"), path)
    _check_ids(categories, "categories", "id", path)
    categories = sorted(categories, key=lambda c: c["id"])
    if not categories:
        raise file_error(path, "lists no categories")
    if len({c["id"] for c in categories}) != len(categories):
        raise file_error(path, "two categories share an id")
    names = (BACKGROUND, *(str(c["name"]) for c in categories))
    classes = named_classes(names, path)
    images = _entries(doc, "images", ("id", "file_name", "height", "width"), path)
    _check_ids(images, "images", "id", path)
    for number, image in enumerate(images, start=1):
        if not all(_is_int(image[k]) and image[k] > 0 for k in ("height", "width")):
            raise file_error(path, f"images entry {number}: height and width must be positive "
                             "whole numbers")  # fmt: skip
    annotations: dict[int, list[dict]] = {image["id"]: [] for image in images}
    fields = ("image_id", "category_id", "segmentation")
    listed = _entries(doc, "annotations", fields, path)
    _check_ids(listed, "annotations", "image_id", path)
    _check_ids(listed, "annotations", "category_id", path)
    for number, annotation in enumerate(listed, start=1):
        if annotation["image_id"] not in annotations:
            raise file_error(path, f"annotation {number} is of image {annotation['image_id']}, "
                             "which 'images' does not list")  # fmt: skip
        annotations[annotation["image_id"]].append(annotation)
    class_of = {c["id"]: i for i, c in enumerate(categories, start=1)}
    return CocoFile(path, classes, class_of, images, annotations)


def _mask(segmentation, height: int, width: int, where: str) -> np.ndarray:
    """An annotation's pixels, decoded as pycocotools' ``annToMask`` decodes them."""
    from pycocotools import mask as coco_mask  # only COCO needs it

    try:
        if isinstance(segmentation, list):  # polygons, each [x1, y1, x2, y2, ...]
            if not segmentation or any(
                not isinstance(p, list) or len(p) < 4 or len(p) % 2 for p in segmentation
            ):
                raise ValueError("polygons must be lists of x, y pairs, at least two")
            rle = coco_mask.merge(coco_mask.frPyObjects(segmentation, height, width))
        elif isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), list):
            rle = coco_mask.frPyObjects(segmentation, height, width)  # uncompressed RLE
        elif isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), str):
            rle = segmentation
            if list(rle.get("size", [])) != [height, width]:
                raise ValueError(f"its RLE size {rle.get('size')} is not [{height}, {width}]")
        else:
            raise ValueError("segmentation is neither polygons nor a run-length encoding")
        with warnings.catch_warnings():  # its NumPy 2 deprecation notice is not the user's
            warnings.simplefilter("ignore", DeprecationWarning)
            return coco_mask.decode(rle).astype(bool)
    except (ValueError, TypeError, IndexError, OverflowError) as exc:
        raise FcnxsError(f"{where}: {exc}") from None


def coco_label(coco: CocoFile, image: dict) -> np.ndarray:
    """The H×W uint8 label map of an image entry."""
    height, width = int(image["height"]), int(image["width"])
    label = np.zeros((height, width), np.uint8)
    for annotation in coco.annotations[image["id"]]:
        where = f"{coco.path}: annotation {annotation.get('id', '?')} of {image['file_name']}"
        if annotation["category_id"] not in coco.class_of:
            raise FcnxsError(f"{where}: category {annotation['category_id']} is not listed")
        mask = _mask(annotation["segmentation"], height, width, where)
        crowd = bool(annotation.get("iscrowd", 0))
        label[mask] = VOID_LABEL if crowd else coco.class_of[annotation["category_id"]]
    return label


def _convert(coco: CocoFile, image: dict, images: Path) -> Converted:
    path = images / str(image["file_name"])
    require_file(path, "an image")
    data = path.read_bytes()
    decoded = decode_image(io.BytesIO(data), str(path))
    if decoded.size != (image["width"], image["height"]):
        raise file_error(path, f"is {decoded.width}×{decoded.height}, {coco.path.name} says "
                         f"{image['width']}×{image['height']}")  # fmt: skip
    return Converted(decoded, data, coco_label(coco, image))


def coco_sources(coco: CocoFile, images: str | Path) -> list[tuple[str, Callable[[], Converted]]]:
    """(sample id, conversion) of every image entry: the id is its file name without
    suffix, ``/`` written as ``_``."""
    images = Path(images)
    if not images.is_dir():
        raise file_error(images, "no such images folder")
    if not coco.images:
        raise file_error(coco.path, "lists no images")
    sources: dict[str, Callable[[], Converted]] = {}
    for image in coco.images:
        sample_id = Path(str(image["file_name"])).with_suffix("").as_posix().replace("/", "_")
        if sample_id in sources:
            raise file_error(coco.path, f"two images are named {sample_id}")
        sources[sample_id] = partial(_convert, coco, image, images)
    return list(sources.items())
