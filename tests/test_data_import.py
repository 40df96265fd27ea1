"""``fcnxs data import labelme|coco``: hand-made annotation files become datasets whose masks
equal an independent rasterisation of the same shapes (labelme) or pycocotools' own decoding
(COCO); broken files are one line each, and nothing is written unless asked to skip them."""

from __future__ import annotations

import base64
import io
import json
import math

import numpy as np
import pytest
from PIL import Image, ImageDraw

from fcnxs.cli import main
from fcnxs.core.palette import VOID_LABEL
from fcnxs.data.dataset import load_pair
from fcnxs.data.layouts import open_dataset

H, W = 120, 160
CLASSES = {"_background_": 0, "cat": 1, "dog": 2, "__ignore__": VOID_LABEL}
YY, XX = np.mgrid[0:H, 0:W]


def _png_b64(array: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def _shape(label, kind, points, **extra):
    return {"label": label, "points": points, "group_id": None, "shape_type": kind,
            "flags": {}, **extra}  # fmt: skip


def _write_json(path, shapes, image_path=None, image_data=None, size=(H, W)):
    doc = {"version": "5.5.0", "flags": {}, "shapes": shapes, "imagePath": image_path,
           "imageData": image_data, "imageHeight": size[0], "imageWidth": size[1]}  # fmt: skip
    path.write_text(json.dumps(doc))


def _labelme(kind, points, line_width=10, point_size=5):
    """labelme's own ``labelme.utils.shape_to_mask`` (5.x), call for call: what labelme2voc
    paints for a shape. (Rectangles' corners ordered first, which Pillow requires.)"""
    mask = Image.fromarray(np.zeros((H, W), dtype=np.uint8))
    draw = ImageDraw.Draw(mask)
    xy = [tuple(point) for point in points]
    if kind == "circle":
        (cx, cy), (px, py) = xy
        d = math.sqrt((cx - px) ** 2 + (cy - py) ** 2)
        draw.ellipse([cx - d, cy - d, cx + d, cy + d], outline=1, fill=1)
    elif kind == "rectangle":
        (x1, y1), (x2, y2) = xy
        draw.rectangle([(min(x1, x2), min(y1, y2)), (max(x1, x2), max(y1, y2))], outline=1, fill=1)
    elif kind in ("line", "linestrip"):
        draw.line(xy=xy, fill=1, width=line_width)
    elif kind == "point":
        cx, cy = xy[0]
        r = point_size
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=1, fill=1)
    else:
        draw.polygon(xy=xy, outline=1, fill=1)
    return np.array(mask, dtype=bool)


def _labelme_label(shapes):
    """labelme's ``shapes_to_label``: later shapes over earlier ones, by class value."""
    label = np.zeros((H, W), np.uint8)
    for shape in shapes:
        label[_labelme(shape["shape_type"] or "polygon", shape["points"])] = CLASSES[shape["label"]]
    return label


@pytest.fixture
def labelme(tmp_path, rng):
    """A labelme folder: one file of rectangles and a mask (embedded image), one of every
    other kind (image beside it, a JPEG), each with overlaps and an ignore region."""
    src = tmp_path / "labelme"
    (src / "sub").mkdir(parents=True)
    (tmp_path / "labels.txt").write_text("__ignore__\n_background_\ncat\ndog\n")
    boxes_image = np.stack(np.broadcast_arrays(XX, YY * 2, 200 - XX), -1).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(boxes_image).save(buffer, "PNG")
    mask = (rng.random((10, 12)) > 0.5).astype(np.uint8)
    boxes = [
        _shape("cat", "rectangle", [[10, 20], [70, 90]]),
        _shape("dog", "rectangle", [[100, 60], [50, 40]]),  # corners in any order, over cat
        _shape("__ignore__", "rectangle", [[60, 50], [65, 100]]),
        _shape("dog", "mask", [[140, 5], [151, 14]], mask=_png_b64(mask * 255)),
    ]
    _write_json(src / "boxes.json", boxes, "missing.png",
                base64.b64encode(buffer.getvalue()).decode())  # fmt: skip
    expected_boxes = _labelme_label(boxes[:3])
    expected_boxes[5:15, 140:152][mask > 0] = 2

    Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)).save(
        src / "sub" / "photo.jpg", quality=90
    )
    polygon = [[20, 20], [140, 30], [120, 100], [30, 90]]
    strip = [[70, 5], [90, 15], [110, 5]]
    kinds = [
        _shape("cat", "polygon", polygon),
        _shape("dog", "circle", [[60, 60], [60, 75]]),  # over the polygon
        _shape("__ignore__", "polygon", [[100, 40], [130, 40], [115, 70]]),
        _shape("cat", None, [[140, 80], [155, 80], [150, 115]]),  # labelme's default kind
        _shape("dog", "circle", [[20, 100], [28, 106]]),
    ]
    _write_json(src / "sub" / "photo.json", kinds, "photo.jpg")
    expected_kinds = _labelme_label(kinds)
    strokes = [
        _shape("dog", "line", [[5, 110], [60, 110]]),
        _shape("cat", "linestrip", strip),
        _shape("dog", "point", [[10, 10]]),
        _shape("cat", "point", [[150, 100]]),
    ]
    # written on another machine: its imagePath is absolute there; the image is beside it here
    _write_json(src / "sub" / "strokes.json", strokes, "D:\\labels\\photo.jpg")
    expected_strokes = _labelme_label(strokes)
    expected = {
        "boxes": expected_boxes,
        "sub_photo": expected_kinds,
        "sub_strokes": expected_strokes,
    }
    return src, tmp_path / "labels.txt", boxes_image, expected


def test_labelme_import_gives_labelme2vocs_masks(labelme, tmp_path, capsys):
    src, labels, boxes_image, expected = labelme
    out = tmp_path / "dataset"
    argv = ["data", "import", "labelme", str(src), "--labels", str(labels), "-o", str(out),
            "--val-fraction", "0.5", "--seed", "3"]  # fmt: skip
    assert main(argv) == 0
    assert "wrote 3 samples of 3 classes" in capsys.readouterr().out
    dataset = open_dataset(root=out, split="trainval")
    assert dataset.classes.names == ("_background_", "cat", "dog")
    assert [s.id for s in dataset.samples] == ["boxes", "sub_photo", "sub_strokes"]
    read = {s.id: load_pair(dataset, i) for i, s in enumerate(dataset.samples)}
    assert np.array_equal(read["boxes"][1], expected["boxes"])
    # the embedded PNG is re-encoded as JPEG; the JPEG beside its file is copied as it is
    assert np.abs(read["boxes"][0].astype(int) - boxes_image).mean() < 3
    assert (out / "JPEGImages" / "sub_photo.jpg").read_bytes() == (
        src / "sub" / "photo.jpg"
    ).read_bytes()
    assert np.array_equal(read["sub_photo"][1], expected["sub_photo"])
    assert np.array_equal(read["sub_strokes"][1], expected["sub_strokes"])
    for value in (0, 1, 2, VOID_LABEL):  # every class and the ignore region are there
        assert (read["sub_photo"][1] == value).sum() > 50
    splits = [(out / "ImageSets" / "Segmentation" / f"{s}.txt").read_text().split()
              for s in ("train", "val")]  # fmt: skip
    assert sorted(splits[0] + splits[1]) == ["boxes", "sub_photo", "sub_strokes"]
    assert len(splits[1]) == 2
    assert main(["data", "check", str(out), "--split", "trainval"]) == 0


BROKEN = {
    "label.json": ([_shape("horse", "polygon", [[1, 1], [20, 1], [9, 9]])], "shape 1 ('horse', "
                   "polygon): label 'horse' is not in the labels file"),
    "outside.json": ([_shape("cat", "rectangle", [[1, 1], [400, 9]])],
                     "shape 1 ('cat', rectangle): point (400, 9) is outside the 160×120 image"),
    "points.json": ([_shape("cat", "circle", [[1, 1]])],
                    "shape 1 ('cat', circle): a circle takes 2 points, not 1"),
    "mask.json": ([_shape("dog", "mask", [[1, 1], [4, 4]], mask="not base64!")],
                  "shape 1 ('dog', mask): mask is not valid base64"),
}  # fmt: skip


def test_broken_labelme_files_are_one_line_each_and_nothing_is_written(labelme, tmp_path, cli):
    src, labels, *_ = labelme
    image = src / "sub" / "photo.jpg"
    for name, (shapes, _) in BROKEN.items():
        _write_json(src / name, shapes, "sub/photo.jpg")
    _write_json(src / "size.json", [], "sub/photo.jpg", size=(100, 100))
    _write_json(src / "lost.json", [], "nowhere.jpg")
    (src / "syntax.json").write_text('{"shapes": [')
    out = tmp_path / "dataset"
    status, _, err = cli("data", "import", "labelme", src, "--labels", labels, "-o", out)
    assert status == 1 and not out.exists()
    assert not list(tmp_path.glob(".dataset*")), "the temporary folder is left"
    wanted = [f"{src / name}: {message}" for name, (_, message) in BROKEN.items()] + [
        f"{src / 'size.json'}: imageWidth×imageHeight is 100×100, its image is 160×120",
        f"{src / 'syntax.json'}: not a labelme JSON file (Expecting",
        f"{src / 'lost.json'}: its image nowhere.jpg is not beside it (and it has no imageData)",
    ]
    for line in wanted:
        assert any(e.startswith(f"fcnxs: error: {line}") for e in err), (line, err)
    assert (
        err[-1]
        == "fcnxs: error: nothing written: 7 files with problems (--skip-bad leaves them out)"
    )
    errors = [e for e in err if not e.startswith("import labelme:")]  # progress aside
    assert len(errors) == 8 and not any("Traceback" in e for e in err)

    status, out_text, err = cli("data", "import", "labelme", src, "--labels", labels, "-o", out,
                                "--skip-bad")  # fmt: skip
    assert status == 0 and "wrote 3 samples" in out_text
    assert sum("warning: left out" in e for e in err) == 7
    written = sorted(p.stem for p in (out / "SegmentationClass").iterdir())
    assert written == ["boxes", "sub_photo", "sub_strokes"]
    assert image.exists()


def test_labels_file_and_options_are_checked_before_anything_is_written(labelme, tmp_path, cli):
    src, labels, *_ = labelme
    out = tmp_path / "dataset"
    bad_labels = tmp_path / "bad.txt"
    bad_labels.write_text("cat\n_background_\n")
    status, _, err = cli("data", "import", "labelme", src, "--labels", bad_labels, "-o", out)
    assert status == 2 and "the first class must be _background_" in err[0] and not out.exists()
    status, _, err = cli("data", "import", "labelme", src, "--labels", labels, "-o", out,
                         "--val-fraction", "1")  # fmt: skip
    assert status == 2 and len(err) == 1 and not out.exists()
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    status, _, err = cli("data", "import", "labelme", src, "--labels", labels, "-o", out)
    assert status == 2 and "not empty" in err[0] and (out / "keep.txt").read_text() == "mine"


def _rle_uncompressed(mask: np.ndarray) -> dict:
    """COCO's uncompressed RLE: run lengths in column-major order, starting with zeros."""
    flat = mask.flatten(order="F").astype(np.uint8)
    counts, current, run = [], 0, 0
    for value in flat:
        if value == current:
            run += 1
        else:
            counts.append(run)
            current, run = value, 1
    counts.append(run)
    return {"counts": counts, "size": list(mask.shape)}


def test_coco_import_matches_pycocotools_decoding(tmp_path, rng, capsys):
    from pycocotools import mask as coco_mask
    from pycocotools.coco import COCO

    images = tmp_path / "images"
    images.mkdir()
    entries = []
    for i, (h, w) in enumerate([(60, 80), (50, 40)], start=1):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(
            images / f"{i:012d}.jpg"
        )
        entries.append({"id": i, "file_name": f"{i:012d}.jpg", "height": h, "width": w})
    blob = np.zeros((60, 80), np.uint8, order="F")
    blob[10:40, 30:70] = 1
    blob[20:25, 40:45] = 0
    compressed = coco_mask.encode(np.asfortranarray(blob))
    compressed["counts"] = compressed["counts"].decode()
    crowd = np.zeros((60, 80), np.uint8)
    crowd[35:55, 5:60] = 1
    small = np.zeros((50, 40), np.uint8)
    small[5:45, 10:20] = 1
    annotations = [
        {"id": 1, "image_id": 1, "category_id": 3, "iscrowd": 0,
         "segmentation": [[5.5, 5.0, 50.0, 8.0, 30.0, 45.5], [60.0, 40.0, 78.0, 40.0, 70.0, 58.0]]},
        {"id": 2, "image_id": 1, "category_id": 1, "iscrowd": 0, "segmentation": compressed},
        {"id": 3, "image_id": 1, "category_id": 1, "iscrowd": 1,
         "segmentation": _rle_uncompressed(crowd)},
        {"id": 4, "image_id": 2, "category_id": 3, "iscrowd": 0,
         "segmentation": _rle_uncompressed(small)},
    ]  # fmt: skip
    categories = [{"id": 3, "name": "traffic light", "supercategory": "outdoor"},
                  {"id": 1, "name": "person", "supercategory": "person"}]  # fmt: skip
    path = tmp_path / "instances.json"
    path.write_text(json.dumps({"images": entries, "annotations": annotations,
                                "categories": categories}))  # fmt: skip
    out = tmp_path / "coco-voc"
    argv = ["data", "import", "coco", str(path), "--images", str(images), "-o", str(out)]
    assert main(argv) == 0
    dataset = open_dataset(root=out, split="trainval")
    assert dataset.classes.names == ("background", "person", "traffic light")
    coco = COCO(str(path))
    class_of = {1: 1, 3: 2}
    for index, sample in enumerate(dataset.samples):
        entry = next(e for e in entries if e["file_name"].startswith(sample.id))
        expected = np.zeros((entry["height"], entry["width"]), np.uint8)
        for annotation in coco.loadAnns(coco.getAnnIds(imgIds=[entry["id"]])):
            value = VOID_LABEL if annotation["iscrowd"] else class_of[annotation["category_id"]]
            expected[coco.annToMask(annotation) > 0] = value
        assert np.array_equal(load_pair(dataset, index)[1], expected)
        assert len(np.unique(expected)) >= 2
    capsys.readouterr()

    annotations.append({"id": 5, "image_id": 2, "category_id": 9, "segmentation": []})
    path.write_text(json.dumps({"images": entries, "annotations": annotations,
                                "categories": categories}))  # fmt: skip
    assert main([*argv[:-1], str(tmp_path / "again")]) == 1
    err = capsys.readouterr().err
    assert f"{path}: annotation 5 of 000000000002.jpg: category 9 is not listed" in err
    assert not (tmp_path / "again").exists()

    entries[0]["height"] = "60"
    path.write_text(json.dumps({"images": entries, "annotations": annotations[:4],
                                "categories": categories}))  # fmt: skip
    assert main([*argv[:-1], str(tmp_path / "again")]) == 2
    err = capsys.readouterr().err
    assert f"{path}: images entry 1: height and width must be positive whole numbers" in err

    path.write_text(json.dumps({"images": [], "categories": categories}))
    assert main([*argv[:-1], str(tmp_path / "again")]) == 2
    assert f"{path}: lists no images" in capsys.readouterr().err
    for wrong, message in [
        ([*categories, {"id": 3, "name": "again"}], "two categories share an id"),
        ([{"id": i, "name": f"c{i}"} for i in range(1, 256)], "more than 255 classes"),
    ]:
        path.write_text(json.dumps({"images": entries, "categories": wrong}))
        assert main([*argv[:-1], str(tmp_path / "again")]) == 2
        assert f"{path}: {message}" in capsys.readouterr().err


def test_float_shapes_are_drawn_as_labelme_draws_them(tmp_path, rng):
    """Random polygons (self-crossing, float vertices, partly off the image), circles,
    rectangles, lines and points with float coordinates: labelme's pixels, every one,
    outlines included (where a pixel-centre rule left out 0.7 % of an image)."""
    from fcnxs.data.labelme import read_annotation, read_labels_file

    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(tmp_path / "blank.png")
    shapes = []
    for _ in range(6):
        corners = rng.uniform(0, [W, H], (7, 2)).tolist()
        shapes += [
            _shape("cat", "polygon", corners),
            _shape("dog", "circle", corners[:2]),
            _shape("cat", "rectangle", corners[2:4]),
            _shape("dog", "line", corners[4:6]),
            _shape("cat", "linestrip", corners[3:7]),
            _shape("__ignore__", "point", corners[6:]),
        ]
    _write_json(tmp_path / "shapes.json", shapes, "blank.png")
    (tmp_path / "labels.txt").write_text("__ignore__\n_background_\ncat\ndog\n")
    converted = read_annotation(tmp_path / "shapes.json", read_labels_file(tmp_path / "labels.txt"))
    expected = _labelme_label(shapes)
    assert np.array_equal(converted.label, expected)
    assert len(np.unique(expected)) == 4  # every class and the ignore region drawn
