"""Where the samples of a dataset are, for each layout users arrive with (docs/design.md §4).

- VOC 2012: ``JPEGImages/<id>.jpg``, ``SegmentationClass/<id>.png``,
  ``ImageSets/Segmentation/<split>.txt``.
- SBD: ``img/<id>.jpg``, ``cls/<id>.mat``, ``<split>.txt``.
- A tutorial list file: ``index<TAB>image<TAB>label``, paths relative to the root.
- A folder pair: images and masks matched by file stem.
A ``classes.txt`` at the root (or given explicitly) names the classes; VOC's by default.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fcnxs.core.errors import FcnxsError, file_error
from fcnxs.data.classes import CLASSES_FILE, VOC, ClassList, read_classes_file
from fcnxs.data.images import IMAGE_SUFFIXES

MASK_SUFFIXES = (".png", ".bmp", ".tif", ".tiff", ".mat")


@dataclass(frozen=True)
class Sample:
    id: str
    image: Path
    label: Path


@dataclass(frozen=True)
class Dataset:
    """A list of samples and the classes their labels use."""

    name: str
    samples: tuple[Sample, ...]
    classes: ClassList
    index_files: tuple[Path, ...] = ()
    """The files read to find the samples and classes (split or list file, classes file)."""

    def __len__(self) -> int:
        return len(self.samples)

    def files(self) -> list[Path]:
        """Every file the dataset consists of: its samples and its index files."""
        return [p for s in self.samples for p in (s.image, s.label)] + list(self.index_files)


def detect_layout(root: Path) -> str:
    if (root / "JPEGImages").is_dir() and (root / "SegmentationClass").is_dir():
        return "voc"
    if (root / "img").is_dir() and (root / "cls").is_dir():
        return "sbd"
    raise file_error(
        root, "neither a VOC root (JPEGImages/, SegmentationClass/) nor an SBD root (img/, cls/)"
    )


def _read_ids(path: Path) -> list[str]:
    if not path.is_file():
        raise file_error(path, "no such split file")
    ids = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not ids:
        raise file_error(path, "lists no samples")
    return ids


def split_file(root: Path, layout: str, split: str) -> Path:
    """Where a VOC or SBD root lists the ids of a split."""
    if layout == "voc":
        return root / "ImageSets" / "Segmentation" / f"{split}.txt"
    return root / f"{split}.txt"


def voc_samples(root: Path, split: str) -> list[Sample]:
    ids = _read_ids(split_file(root, "voc", split))
    return [
        Sample(i, root / "JPEGImages" / f"{i}.jpg", root / "SegmentationClass" / f"{i}.png")
        for i in ids
    ]


def sbd_samples(root: Path, split: str) -> list[Sample]:
    ids = _read_ids(split_file(root, "sbd", split))
    return [Sample(i, root / "img" / f"{i}.jpg", root / "cls" / f"{i}.mat") for i in ids]


def list_samples(root: Path, list_file: Path) -> list[Sample]:
    """The tutorial's ``index<TAB>image<TAB>label`` lines; paths are relative to ``root``."""
    if not list_file.is_file():
        raise file_error(list_file, "no such list file")
    samples = []
    for number, line in enumerate(list_file.read_text().splitlines(), start=1):
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
            reader = {"voc": voc_samples, "sbd": sbd_samples}.get(kind)
            if reader is None:
                raise FcnxsError(f"`layout` {kind} takes `images` and `masks`, not `root`")
            samples, name = reader(base, split), f"{base} ({kind} {split})"
            index_files.append(split_file(base, kind, split))
        else:
            raise FcnxsError("`root` needs `split` NAME or `list_file` FILE")
    if classes_file is None and (base / CLASSES_FILE).is_file():
        classes_file = base / CLASSES_FILE
    if classes_file is not None:
        classes = read_classes_file(classes_file)
        index_files.append(Path(classes_file))
    else:
        classes = VOC
    return Dataset(name, tuple(samples), classes, tuple(index_files))
