"""The ADE20K, Cityscapes and labelme2voc layouts: detected, their label values mapped to
classes, and usable by every command (data check, train, evaluate)."""

import json

import numpy as np
import pytest
from PIL import Image

from fcnxs.cli import main
from fcnxs.core.palette import VOID_LABEL, voc_colormap
from fcnxs.data.classes import read_classes_file
from fcnxs.data.dataset import load_pair
from fcnxs.data.label_maps import ADE20K, CITYSCAPES
from fcnxs.data.layouts import detect_layout, open_dataset

CITYSCAPES_IDS = {0: VOID_LABEL, 1: VOID_LABEL, 7: 0, 8: 1, 9: VOID_LABEL, 24: 11, 26: 13,
                  33: 18}  # fmt: skip
"""Some label ids and their train ids, from Cityscapes' labels.py (parking, 9, is void)."""


def _save(array, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format="PNG")  # lossless, whatever the suffix


def _ade20k(root, rng, split, count, size=32):
    stored = {}
    for i in range(count):
        name = f"ADE_{split}_{i:08d}"
        _save(rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
              root / "images" / split / f"{name}.jpg")  # fmt: skip
        values = rng.integers(0, 151, (size, size), dtype=np.uint8)
        _save(values, root / "annotations" / split / f"{name}.png")
        stored[name] = values
    return stored


def _cityscapes(root, rng, split, count, size=32):
    stored = {}
    for i in range(count):
        city = ("aachen", "bonn")[i % 2]
        name = f"{city}_{i:06d}_000019"
        _save(rng.integers(0, 256, (size, 2 * size, 3), dtype=np.uint8),
              root / "leftImg8bit" / split / city / f"{name}_leftImg8bit.png")  # fmt: skip
        values = rng.choice(list(CITYSCAPES_IDS), (size, 2 * size)).astype(np.uint8)
        _save(values, root / "gtFine" / split / city / f"{name}_gtFine_labelIds.png")
        stored[name] = values
    return stored


def test_ade20k_layout_maps_value_0_to_void_and_the_rest_down_by_one(tmp_path, rng):
    root = tmp_path / "ADEChallengeData2016"
    stored = _ade20k(root, rng, "training", 2)
    assert detect_layout(root) == "ade20k"
    for split in ("training", "train"):
        dataset = open_dataset(root=root, split=split)
        assert dataset.classes == ADE20K and len(ADE20K) == 150
        assert ADE20K.names[:3] == ("wall", "building", "sky") and ADE20K.names[-1] == "flag"
        assert "chest of drawers" in ADE20K.names
        for index, sample in enumerate(dataset.samples):
            values = stored[sample.id]
            _, label = load_pair(dataset, index)
            assert np.array_equal(label, np.where(values == 0, VOID_LABEL, values - 1))


def test_cityscapes_layout_maps_label_ids_to_the_19_train_ids(tmp_path, rng):
    root = tmp_path / "cityscapes"
    stored = _cityscapes(root, rng, "val", 3)
    assert detect_layout(root) == "cityscapes"
    dataset = open_dataset(root=root, split="val")
    assert [s.id for s in dataset.samples] == sorted(stored)
    assert dataset.classes == CITYSCAPES and len(CITYSCAPES) == 19
    assert CITYSCAPES.names[13] == "car" and CITYSCAPES.colors[0] == (128, 64, 128)
    lut = np.full(256, VOID_LABEL, np.uint8)
    for label_id, train_id in CITYSCAPES_IDS.items():
        lut[label_id] = train_id
    for index, sample in enumerate(dataset.samples):
        assert np.array_equal(load_pair(dataset, index)[1], lut[stored[sample.id]])
    dataset.samples[-1].label.unlink()
    with pytest.raises(Exception, match="has no label file"):
        open_dataset(root=root, split="val")


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["ade20k", "cityscapes"])
def test_benchmark_layouts_pass_data_check_train_and_evaluate(tmp_path, rng, layout, capsys):
    root = tmp_path / layout
    train, val = ("training", "validation") if layout == "ade20k" else ("train", "val")
    write = _ade20k if layout == "ade20k" else _cityscapes
    write(root, rng, train, 2)
    write(root, rng, val, 1)
    assert main(["data", "check", str(root), "--split", train]) == 0
    assert "2 samples" in capsys.readouterr().out
    run = tmp_path / "run"
    assert main(["train", "--arch", "fcn32s", "--data", str(root), "--split", train,
                 "--val-split", val, "--out", str(run), "--workers", "0"]) == 0  # fmt: skip
    classes = 150 if layout == "ade20k" else 19
    assert json.loads((run / "run.json").read_text())["train_data"]["root"] == str(root)
    report = tmp_path / "report.json"
    assert main(["evaluate", "--model", str(run / "model.safetensors"), "--data", str(root),
                 "--split", val, "--out", str(report), "--workers", "0"]) == 0  # fmt: skip
    result = json.loads(report.read_text())
    assert result["num_images"] == 1 and len(result["per_class_iou"]) == classes


def _labelme2voc(root, rng, older):
    """labelme2voc's output: class_names.txt, JPEGImages/, palette PNGs where -1 (ignore)
    is stored as 255; no split files. Older versions put the PNGs in SegmentationClassPNG/
    and .npy arrays in SegmentationClass/."""
    names = ["_background_", "cat", "traffic light"]
    (root / "JPEGImages").mkdir(parents=True)
    (root / "class_names.txt").write_text("\n".join(names))
    masks = root / ("SegmentationClassPNG" if older else "SegmentationClass")
    masks.mkdir(parents=True)
    (root / "SegmentationClass").mkdir(exist_ok=True)
    stored = {}
    for name in ("a", "b"):
        _save(
            rng.integers(0, 256, (20, 24, 3), dtype=np.uint8), root / "JPEGImages" / f"{name}.jpg"
        )
        lbl = rng.integers(-1, 3, (20, 24)).astype(np.int32)
        image = Image.fromarray(lbl.astype(np.uint8), mode="P")
        image.putpalette([v for color in voc_colormap(256) for v in color])
        image.save(masks / f"{name}.png")
        if older:
            np.save(root / "SegmentationClass" / f"{name}.npy", lbl)
        stored[name] = np.where(lbl < 0, VOID_LABEL, lbl).astype(np.uint8)
    return stored


@pytest.mark.parametrize("older", [False, True], ids=["SegmentationClass", "SegmentationClassPNG"])
def test_labelme2voc_output_is_a_dataset_as_it_is(tmp_path, rng, older, capsys):
    root = tmp_path / "data_dataset_voc"
    stored = _labelme2voc(root, rng, older)
    dataset = open_dataset(root=root, split="all")
    assert dataset.classes.names == ("_background_", "cat", "traffic light")
    assert {s.id for s in dataset.samples} == set(stored)
    for index, sample in enumerate(dataset.samples):
        assert np.array_equal(load_pair(dataset, index)[1], stored[sample.id])
    assert main(["data", "check", str(root), "--split", "all"]) == 0
    assert "traffic light" in capsys.readouterr().out


def test_class_names_may_hold_spaces(tmp_path):
    path = tmp_path / "classes.txt"
    path.write_text("background\ntraffic light 250 170 30\nchest of drawers\n")
    classes = read_classes_file(path)
    assert classes.names == ("background", "traffic light", "chest of drawers")
    assert classes.colors[1] == (250, 170, 30) and classes.colors[2] == tuple(voc_colormap(3)[2])
    path.write_text("background\ncar 1 2\n")
    with pytest.raises(Exception, match="expected 'name' or 'name R G B'"):
        read_classes_file(path)
