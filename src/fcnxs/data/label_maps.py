"""The classes of public benchmarks whose label files store other values than class indices,
and the map from those values to classes (255: void).

- ADE20K SceneParsing (``ADEChallengeData2016``): values 1..150 are the classes, 0 ("other")
  is void, so class c is stored as c + 1.
- Cityscapes (``gtFine/*_labelIds.png``): the 34 label ids of its annotation tool; 19 of them
  are the benchmark's classes (its "train ids"), every other id is void.
"""

from __future__ import annotations

from importlib import resources

from fcnxs.core.palette import VOID_LABEL
from fcnxs.data.classes import ClassList, read_classes_file


def _packaged(name: str) -> ClassList:
    with resources.as_file(resources.files("fcnxs.data") / name) as path:
        return read_classes_file(path)


ADE20K = _packaged("ade20k_classes.txt")
ADE20K_LABEL_MAP = (VOID_LABEL, *range(len(ADE20K)), *[VOID_LABEL] * (255 - len(ADE20K)))

CITYSCAPES = _packaged("cityscapes_classes.txt")
CITYSCAPES_TRAIN_IDS = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11,
    25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}  # fmt: skip
"""Cityscapes' label id → train id, for the ids that are classes (from its labels.py)."""
CITYSCAPES_LABEL_MAP = tuple(CITYSCAPES_TRAIN_IDS.get(i, VOID_LABEL) for i in range(256))
