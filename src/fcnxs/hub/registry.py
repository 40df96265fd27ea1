"""Every name a user may ask for, as data: where the file is published, its size and hash
where known, its format and what it is (docs/design.md §11).

Built-in entries come from the original projects (the hashes are those they or well-kept
model lists publish; where none is published, the file's structure is checked by its
converter when it is first used). A user's own entries (`fcnxs models add`) live in the
cache folder's ``registry.json`` and work wherever a built-in name does.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from pathlib import Path

from fcnxs.core.atomic import write_text
from fcnxs.core.errors import FcnxsError, file_error, read_text

USER_REGISTRY = "registry.json"
NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
"""Registry names: lower case, digits, dots, dashes; no slash, so never a path."""


@dataclass(frozen=True)
class Entry:
    """One published file."""

    name: str
    url: str
    what: str
    kind: str
    """"fcn" (converted once to a native model file), "vgg16" (a trunk to start from, read
    as it is), "model" (a user's file: converted when it is an FCN), or "dataset"."""
    size: int | None = None
    hash: str | None = None
    """"ALGORITHM:HEX" (md5, sha1, sha256); torchvision's file names carry only the first 8
    hex digits of their sha256, "sha256-prefix:HEX"."""
    licence: str | None = None
    extra: tuple[tuple[str, str, str], ...] = ()
    """Further files of a dataset: (file name, URL, hash), put in its root."""
    root: str | None = None
    """A dataset archive's folder that is the dataset's root (the layout fcnxs reads)."""

    @property
    def file_name(self) -> str:
        return self.url.rsplit("/", 1)[-1]


CAFFE_FCN = "http://dl.caffe.berkeleyvision.org"
BUILT_IN: dict[str, Entry] = {
    e.name: e
    for e in (
        Entry("vgg16-imagenet", "https://download.pytorch.org/models/vgg16-397923af.pth",
              "VGG16 trained on ImageNet (torchvision); a trunk to start an FCN-32s from",
              "vgg16", None, "sha256-prefix:397923af", "BSD-3-Clause (torchvision)"),
        Entry("vgg16-caffe",
              "http://www.robots.ox.ac.uk/~vgg/software/very_deep/caffe/VGG_ILSVRC_16_layers.caffemodel",
              "VGG16 of the VGG group (Caffe), the fcn-xs tutorial's trunk", "vgg16",
              553432081, None, "CC BY-NC 4.0: non-commercial use only"),
        Entry("fcn32s-voc", f"{CAFFE_FCN}/fcn32s-heavy-pascal.caffemodel",
              "FCN-32s, PASCAL VOC (the FCN authors' Caffe reference model)", "fcn"),
        Entry("fcn16s-voc", f"{CAFFE_FCN}/fcn16s-heavy-pascal.caffemodel",
              "FCN-16s, PASCAL VOC (the FCN authors' Caffe reference model)", "fcn"),
        Entry("fcn8s-voc", f"{CAFFE_FCN}/fcn8s-heavy-pascal.caffemodel",
              "FCN-8s, PASCAL VOC (the FCN authors' Caffe reference model)", "fcn",
              hash="sha1:c449ea74dd7d83751d1357d6a8c323fcf4038962"),
        Entry("fcn8s-atonce-voc", f"{CAFFE_FCN}/fcn8s-atonce-pascal.caffemodel",
              "FCN-8s trained at once, PASCAL VOC (the FCN authors' Caffe model)", "fcn"),
        Entry("voc2012",
              "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar",
              "PASCAL VOC 2012 trainval (the tutorial's data), 2 GB", "dataset", None,
              "md5:6cd6e144f989b92b3379bac3b3de84fd", "the PASCAL VOC terms (Flickr images)",
              root="VOCdevkit/VOC2012"),
        Entry("sbd",
              "http://www.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/semantic_contours/benchmark.tgz",
              "SBD, the augmented VOC segmentations (the FCN authors' training set), 1.4 GB",
              "dataset", None, "md5:82b4d87ceb2ed10f6038a1cba92111cb", None,
              (("train_noval.txt", "http://home.bharathh.info/pubs/codes/SBD/train_noval.txt",
                "md5:79bff800c5f0b1ec6b21080a3c066722"),), "benchmark_RELEASE/dataset"),
    )
}  # fmt: skip


def user_entries(home: Path) -> dict[str, Entry]:
    """The entries a user added, from the cache folder's registry file."""
    path = home / USER_REGISTRY
    if not path.exists():
        return {}
    try:
        raw = json.loads(read_text(path, "registry file"))
        return {
            name: Entry(name=name, **{**fields, "extra": tuple(map(tuple, fields["extra"]))})
            for name, fields in raw.items()
        }
    except (json.JSONDecodeError, TypeError, AttributeError) as exc:
        raise file_error(path, f"not an fcnxs registry file ({exc})") from None


def entries(home: Path) -> dict[str, Entry]:
    return BUILT_IN | user_entries(home)


def add_entry(home: Path, name: str, url: str, sha256: str | None) -> Entry:
    """A user's entry, kept in the registry file (a built-in name cannot be taken)."""
    if not NAME.match(name):
        raise FcnxsError(f"{name!r}: a name is lower case letters, digits, '.', '-', '_'")
    if name in BUILT_IN:
        raise FcnxsError(f"{name}: a built-in name; choose another")
    if not re.match(r"https?://[^/]", url):
        raise FcnxsError(f"{url}: not an http or https address, which is what fcnxs fetches")
    if sha256 is not None and not re.fullmatch(r"[0-9a-f]{64}", sha256.lower()):
        raise FcnxsError(f"`sha256` takes 64 hex digits, not {sha256!r}")
    entry = Entry(name, url, f"added by you: {url}", "model",
                  hash=None if sha256 is None else f"sha256:{sha256.lower()}")  # fmt: skip
    _save(home, user_entries(home) | {name: entry})
    return entry


def remove_entry(home: Path, name: str) -> bool:
    """Forget a user's entry; whether there was one."""
    mine = user_entries(home)
    if name not in mine:
        return False
    del mine[name]
    _save(home, mine)
    return True


def _save(home: Path, mine: dict[str, Entry]) -> None:
    fields = {n: dataclasses.asdict(e) for n, e in mine.items()}
    for entry in fields.values():
        del entry["name"]
    home.mkdir(parents=True, exist_ok=True)
    write_text(home / USER_REGISTRY, json.dumps(fields, indent=2, sort_keys=True) + "\n")
