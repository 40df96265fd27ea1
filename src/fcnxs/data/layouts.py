"""Where the samples of a dataset are, for each layout users arrive with (docs/design.md §4).

- VOC 2012: ``JPEGImages/<id>.jpg``, ``SegmentationClass/<id>.png``,
  ``ImageSets/Segmentation/<split>.txt``. labelme's ``labelme2voc`` output is read as VOC:
  its masks may be in ``SegmentationClassPNG/`` (older versions), its classes in
  ``class_names.txt``, and without split files its one split, ``all``, is every image.
- SBD: ``img/<id>.jpg``, ``cls/<id>.mat``, ``<split>.txt``.
- ADE20K: ``images/{training,validation}/<id>.jpg``, ``annotations/<split>/<id>.png``
  (``train`` and ``val`` name them too); label files as `fcnxs.data.label_maps` says.
- Cityscapes: ``leftImg8bit/<split>/<city>/<id>_leftImg8bit.png``,
  ``gtFine/<split>/<city>/<id>_gtFine_labelIds.png``; label ids as the same module says.
- A tutorial list file: ``index<TAB>image<TAB>label``, paths relative to the root.
- A folder pair: images and masks matched by file stem.
A ``classes.txt`` at the root (or given explicitly) names the classes; else the layout's
own, else VOC's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fcnxs.core.errors import FcnxsError, file_error, read_text
from fcnxs.data.classes import CLASSES_FILE, VOC, ClassList, read_classes_file, read_name_list
from fcnxs.data.dataset import MASK_SUFFIXES, Dataset, Sample
from fcnxs.data.images import IMAGE_SUFFIXES
from fcnxs.data.label_maps import ADE20K, ADE20K_LABEL_MAP, CITYSCAPES, CITYSCAPES_LABEL_MAP

LABELME_CLASSES_FILE = "class_names.txt"
"""Where labelme2voc writes its class names, one a line, ``_background_`` first."""
ALL = "all"
"""The split of a VOC-layout root without split files: every image that has a mask."""


@dataclass(frozen=True)
class Layout:
    """One kind of dataset root: what marks it, how a split's samples are found, and what
    its label files mean when that is not simply class indices."""

    marks: tuple[str, ...]
    """Folders every root of this layout has."""
    samples: Callable[[Path, str], list[Sample]]
    split_file: Callable[[Path, str], Path | None] = lambda root, split: None
    classes: ClassList | None = None
    label_map: tuple[int, ...] | None = None


def _voc_masks(root: Path) -> Path:
    """VOC's mask folder, or older labelme2voc's (``.npy`` arrays beside palette PNGs)."""
    masks = root / "SegmentationClass"
    if (root / "SegmentationClassPNG").is_dir() and not any(masks.glob("*.png")):
        return root / "SegmentationClassPNG"
    return masks


def _voc_split_file(root: Path, split: str) -> Path | None:
    path = root / "ImageSets" / "Segmentation" / f"{split}.txt"
    return None if split == ALL and not path.exists() else path


def _voc_samples(root: Path, split: str) -> list[Sample]:
    masks = _voc_masks(root)
    index = _voc_split_file(root, split)
    if index is None:
        return folder_samples(root / "JPEGImages", masks)
    return [
        Sample(i, root / "JPEGImages" / f"{i}.jpg", masks / f"{i}.png") for i in _read_ids(index)
    ]


def _sbd_samples(root: Path, split: str) -> list[Sample]:
    ids = _read_ids(root / f"{split}.txt")
    return [Sample(i, root / "img" / f"{i}.jpg", root / "cls" / f"{i}.mat") for i in ids]


ADE20K_SPLITS = {"train": "training", "val": "validation"}


def _ade20k_samples(root: Path, split: str) -> list[Sample]:
    folder = ADE20K_SPLITS.get(split, split)
    return folder_samples(root / "images" / folder, root / "annotations" / folder)


def _cityscapes_samples(root: Path, split: str) -> list[Sample]:
    images = root / "leftImg8bit" / split
    if not images.is_dir():
        raise file_error(images, "no such split folder")
    samples = []
    cities = sorted(p for p in images.iterdir() if p.is_dir() and not p.is_symlink())
    for city in cities:
        for image in sorted(city.glob("*_leftImg8bit.png")):
            sample_id = image.name.removesuffix("_leftImg8bit.png")
            label = root / "gtFine" / split / city.name / f"{sample_id}_gtFine_labelIds.png"
            if not label.is_file():
                raise file_error(image, f"has no label file {label}")
            samples.append(Sample(sample_id, image, label))
    if not samples:
        raise file_error(images, "holds no <city>/*_leftImg8bit.png images")
    return samples


LAYOUTS: dict[str, Layout] = {
    "voc": Layout(("JPEGImages", "SegmentationClass"), _voc_samples, _voc_split_file),
    "sbd": Layout(("img", "cls"), _sbd_samples, lambda root, split: root / f"{split}.txt"),
    "ade20k": Layout(
        ("images", "annotations"), _ade20k_samples, classes=ADE20K, label_map=ADE20K_LABEL_MAP
    ),
    "cityscapes": Layout(
        ("leftImg8bit", "gtFine"), _cityscapes_samples, classes=CITYSCAPES,
        label_map=CITYSCAPES_LABEL_MAP,
    ),
}  # fmt: skip
"""The layouts of a dataset root, by the name ``--format`` takes; detected in this order."""


def detect_layout(root: Path) -> str:
    for name, layout in LAYOUTS.items():
        if all((root / mark).is_dir() for mark in layout.marks):
            return name
    known = "; ".join(
        f"{name}: {', '.join(m + '/' for m in lay.marks)}" for name, lay in LAYOUTS.items()
    )
    raise file_error(root, f"not a dataset root of a known layout ({known})")


def _read_ids(path: Path) -> list[str]:
    text = read_text(path, "split file")
    ids = [line.strip() for line in text.splitlines() if line.strip()]
    if not ids:
        raise file_error(path, "lists no samples")
    return ids


def list_samples(root: Path, list_file: Path) -> list[Sample]:
    """The tutorial's ``index<TAB>image<TAB>label`` lines; paths are relative to ``root``."""
    samples = []
    for number, line in enumerate(read_text(list_file, "list file").splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.rstrip("\n").split("\t")
        if len(parts) != 3:
            raise file_error(list_file, f"line {number}: expected index<TAB>image<TAB>label")
        samples.append(Sample(parts[0], root / parts[1], root / parts[2]))
    if not samples:
        raise file_error(list_file, "lists no samples")
    return samples


def _by_stem(folder: Path, suffixes: tuple[str, ...]) -> dict[str, Path]:
    if not folder.is_dir():
        raise file_error(folder, "no such folder")
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() in suffixes:
            if path.stem in found:
                raise file_error(path, f"has the same stem as {found[path.stem].name}")
            found[path.stem] = path
    return found


def folder_samples(images: Path, masks: Path) -> list[Sample]:
    """Images and masks matched by file stem; an image without a mask is an error."""
    image_files, mask_files = _by_stem(images, IMAGE_SUFFIXES), _by_stem(masks, MASK_SUFFIXES)
    if not image_files:
        raise file_error(images, "holds no images")
    missing = [stem for stem in image_files if stem not in mask_files]
    if missing:
        raise file_error(
            image_files[missing[0]], f"has no mask in {masks} ({len(missing)} images lack one)"
        )
    return [Sample(stem, path, mask_files[stem]) for stem, path in image_files.items()]


def open_dataset(
    *,
    root: str | Path | None = None,
    split: str | None = None,
    list_file: str | Path | None = None,
    images: str | Path | None = None,
    masks: str | Path | None = None,
    layout: str | None = None,
    classes_file: str | Path | None = None,
) -> Dataset:
    """The samples that the DATASET-OPTIONS of every command name."""
    index_files: list[Path] = []
    chosen: Layout | None = None  # a root's layout (lists and folder pairs have none)
    if images is not None or masks is not None or layout == "folder":
        if images is None or masks is None:
            raise FcnxsError("a folder dataset needs both `images` and `masks`")
        samples = folder_samples(Path(images), Path(masks))
        base, name = Path(masks).parent, f"{images} + {masks}"
    else:
        if root is None:
            raise FcnxsError(
                "name a dataset: `root` ROOT with `split` or `list_file`, or `images`/`masks`"
            )
        base = Path(root)
        if base.is_file():
            raise file_error(base, "is a file; `root` takes a dataset's folder")
        if not base.is_dir():
            raise file_error(base, "no such dataset folder")
        if list_file is not None:
            list_path = Path(list_file)
            if not list_path.is_absolute() and not list_path.exists():
                list_path = base / list_path
            samples, name = list_samples(base, list_path), str(list_path)
            index_files.append(list_path)
        elif split is not None:
            kind = layout or detect_layout(base)
            if kind not in LAYOUTS:
                raise FcnxsError(f"`layout` {kind} takes `images` and `masks`, not `root`")
            chosen = LAYOUTS[kind]
            split_file = chosen.split_file(base, split)
            if split_file is not None and not split_file.exists():
                known = sorted(p.stem for p in split_file.parent.glob("*.txt"))
                raise file_error(
                    split_file,
                    f"no split {split!r} in this {kind} root; it has {', '.join(known) or 'none'}",
                )
            samples, name = chosen.samples(base, split), f"{base} ({kind} {split})"
            index_files += [p for p in [chosen.split_file(base, split)] if p is not None]
        else:
            raise FcnxsError("`root` needs `split` NAME or `list_file` FILE")
    classes, classes_file = _classes(base, classes_file, chosen)
    index_files += [classes_file] if classes_file is not None else []
    label_map = chosen.label_map if chosen is not None else None
    return Dataset(name, tuple(samples), classes, tuple(index_files), label_map)


def _classes(
    base: Path, given: str | Path | None, layout: Layout | None
) -> tuple[ClassList, Path | None]:
    """The classes and the file they come from: the one given, ROOT/classes.txt,
    labelme2voc's class_names.txt, the layout's own, VOC's."""
    if given is not None:
        return read_classes_file(given), Path(given)
    if (base / CLASSES_FILE).is_file():
        return read_classes_file(base / CLASSES_FILE), base / CLASSES_FILE
    if (base / LABELME_CLASSES_FILE).is_file():
        return read_name_list(base / LABELME_CLASSES_FILE), base / LABELME_CLASSES_FILE
    return (layout.classes if layout is not None else None) or VOC, None
