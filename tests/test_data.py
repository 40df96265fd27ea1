import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image
from torch.utils.data import DataLoader

from fcnxs.cli import main
from fcnxs.core.errors import FcnxsError
from fcnxs.data.classes import VOC, ClassList, read_classes_file, write_classes_file
from fcnxs.data.dataset import load_pair
from fcnxs.data.images import write_label_png
from fcnxs.data.layouts import open_dataset
from fcnxs.data.loader import (
    BadSample,
    SegmentationData,
    batches,
    make_loader,
    pad_collate,
    start_epoch,
)
from fcnxs.data.synth import write_synthetic_voc
from fcnxs.data.transforms import Augmentation, CutOff, crop_or_pad
from fcnxs.model.config import MXNET_PREPROCESSING


def _pairs(rng, n, h=30, w=40, classes=21):
    images = [rng.integers(0, 256, (h + i, w, 3), dtype=np.uint8) for i in range(n)]
    labels = [
        rng.choice([*range(classes), 255], size=(h + i, w)).astype(np.uint8) for i in range(n)
    ]
    return images, labels


def _save_png_image(array, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format="PNG")  # lossless, so pixels can be compared exactly


@pytest.fixture
def voc_root(tmp_path, rng):
    images, labels = _pairs(rng, 3)
    root = tmp_path / "VOC2012"
    ids = ["2007_000032", "2007_000039", "2008_000001"]
    for sample_id, image, label in zip(ids, images, labels, strict=True):
        # JPEG is lossy: store PNG bytes under the .jpg name VOC uses; Pillow reads by content.
        _save_png_image(image, root / "JPEGImages" / f"{sample_id}.jpg")
        write_label_png(label, VOC.colors, root / "SegmentationClass" / f"{sample_id}.png")
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    (root / "ImageSets" / "Segmentation" / "train.txt").write_text("\n".join(ids[:2]) + "\n")
    (root / "ImageSets" / "Segmentation" / "val.txt").write_text(ids[2] + "\n")
    return root, dict(zip(ids, zip(images, labels, strict=True), strict=True))


def _read_all(dataset):
    return {s.id: load_pair(dataset, i) for i, s in enumerate(dataset.samples)}


def _assert_same(read, expected):
    assert set(read) == set(expected)
    for key, (image, label) in expected.items():
        assert np.array_equal(read[key][0], image) and np.array_equal(read[key][1], label)


def test_voc_root_with_splits(voc_root):
    root, expected = voc_root
    train = open_dataset(root=root, split="train")
    assert [s.id for s in train.samples] == ["2007_000032", "2007_000039"]
    assert train.classes == VOC
    _assert_same(_read_all(train), {k: expected[k] for k in ("2007_000032", "2007_000039")})
    _assert_same(
        _read_all(open_dataset(root=root, split="val")), {"2008_000001": expected["2008_000001"]}
    )


def test_tutorial_list_file(voc_root, capsys):
    root, expected = voc_root
    assert (
        main(["data", "make-lst", str(root), "--split", "train", "-o", str(root / "train.lst")])
        == 0
    )
    lines = (root / "train.lst").read_text().splitlines()
    assert lines[0] == "0\tJPEGImages/2007_000032.jpg\tSegmentationClass/2007_000032.png"
    listed = open_dataset(root=root, list_file="train.lst")
    assert [s.id for s in listed.samples] == ["0", "1"]
    read = _read_all(listed)
    assert np.array_equal(read["1"][1], expected["2007_000039"][1])


def test_sbd_root_with_real_mat_files(tmp_path, rng):
    root = tmp_path / "benchmark_RELEASE" / "dataset"
    images, labels = _pairs(rng, 2)
    expected = {}
    for sample_id, image, label in zip(["2008_000002", "2008_000003"], images, labels, strict=True):
        _save_png_image(image, root / "img" / f"{sample_id}.jpg")
        (root / "cls").mkdir(exist_ok=True)
        gt = {"Segmentation": label, "Boundaries": np.zeros((20, 1), object),
              "CategoriesPresent": np.unique(label)}  # fmt: skip
        scipy.io.savemat(root / "cls" / f"{sample_id}.mat", {"GTcls": gt})
        expected[sample_id] = (image, label)
    (root / "train.txt").write_text("2008_000002\n2008_000003\n")
    dataset = open_dataset(root=root, split="train")
    _assert_same(_read_all(dataset), expected)
    bad = root / "cls" / "2008_000003.mat"
    scipy.io.savemat(bad, {"something": np.zeros(3)})
    with pytest.raises(FcnxsError, match=r"GTcls\.Segmentation"):
        load_pair(dataset, 1)


def test_folder_pair_with_every_mask_encoding_and_a_classes_file(tmp_path, rng):
    classes = ClassList(("sky", "road", "car"), ((10, 20, 30), (200, 100, 0), (0, 255, 0)))
    write_classes_file(classes, tmp_path / "classes.txt")
    assert read_classes_file(tmp_path / "classes.txt") == classes
    images, labels = _pairs(rng, 4, classes=3)
    expected = {}
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        _save_png_image(image, tmp_path / "images" / f"img{i}.png")
        mask = tmp_path / "masks" / f"img{i}.png"
        mask.parent.mkdir(exist_ok=True)
        if i == 0:
            write_label_png(label, classes.colors, mask)  # palette
        elif i == 1:
            Image.fromarray(label, mode="L").save(mask)  # single channel
        else:  # RGB colours, void in VOC's void colour
            lut = np.array([*classes.colors, *[(0, 0, 0)] * 252, (224, 224, 192)], np.uint8)
            Image.fromarray(lut[label]).save(mask)
        expected[f"img{i}"] = (image, label)
    dataset = open_dataset(images=tmp_path / "images", masks=tmp_path / "masks")
    assert dataset.classes == classes
    _assert_same(_read_all(dataset), expected)


def _original_cut_off(image, label, size, rng):
    """The fcn-xs FileIter rule, transcribed from its description (DESIGN §1)."""
    h, w = label.shape
    max_hw, min_hw = max(h, w), min(h, w)
    if min_hw > size:
        start_max = round(rng.uniform(0, max_hw - size - 1))
        start_min = round(rng.uniform(0, min_hw - size - 1))
        if h == max_hw:
            return label[start_max : start_max + size, start_min : start_min + size]
        return label[start_min : start_min + size, start_max : start_max + size]
    if max_hw > size:
        start = round(rng.uniform(0, max_hw - min_hw - 1))
        return label[start : start + min_hw, :] if h == max_hw else label[:, start : start + min_hw]
    return label


@pytest.mark.parametrize(
    "shape", [(500, 375), (375, 500), (400, 400), (300, 200), (200, 150), (90, 700)]
)
def test_cut_off_size_follows_the_original_rule(shape):
    size = 250
    label = np.arange(shape[0] * shape[1], dtype=np.int64).reshape(shape)
    image = np.stack([label] * 3, -1)
    for seed in range(20):
        got_image, got = CutOff(size)(image, label, np.random.default_rng(seed))
        want = _original_cut_off(image, label, size, np.random.default_rng(seed))
        assert np.array_equal(got, want) and np.array_equal(got_image[..., 0], got)
        short = min(shape)
        expected_shape = (
            (size, size) if short > size else (short, short) if max(shape) > size else shape
        )
        assert got.shape == expected_shape


def test_crop_pads_the_label_with_void_and_the_image_with_the_mean():
    image, label = torch.ones(3, 5, 7), torch.zeros(5, 7, dtype=torch.long)
    x, y = crop_or_pad(image, label, 9, np.random.default_rng(0))
    assert x.shape == (3, 9, 9) and y.shape == (9, 9)
    assert (y[5:] == 255).all() and (y[:, 7:] == 255).all() and (y[:5, :7] == 0).all()
    assert (x[:, 5:] == 0).all() and (x[:, :5, :7] == 1).all()


def test_batches_of_crops_and_padded_whole_images():
    a = (torch.ones(3, 4, 6), torch.zeros(4, 6, dtype=torch.long))
    b = (torch.ones(3, 5, 3), torch.ones(5, 3, dtype=torch.long))
    images, labels, bad = pad_collate([a, BadSample("x.jpg: broken"), b])
    assert images.shape == (2, 3, 5, 6) and bad == ["x.jpg: broken"]
    assert (labels[0, 4] == 255).all() and (labels[1, :, 3:] == 255).all()
    assert pad_collate([BadSample("y.jpg: gone")]) == (None, None, ["y.jpg: gone"])


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    return write_synthetic_voc(tmp_path_factory.mktemp("synth") / "voc", 12, height=48, width=64)


def _epoch_batches(root, workers, epoch, seed=7, start_method=None):
    dataset = open_dataset(root=root, split="trainval")
    augmentation = Augmentation(cut_off_size=56, scale=(0.5, 1.5), flip=True, crop_size=40)
    data = SegmentationData(dataset, MXNET_PREPROCESSING, augmentation, seed=seed)
    loader = make_loader(data, batch_size=3, workers=workers)
    if start_method is not None:  # workers started as on macOS, Windows, Python 3.14
        loader = DataLoader(
            data,
            batch_size=3,
            sampler=loader.sampler,
            num_workers=workers,
            collate_fn=pad_collate,
            multiprocessing_context=start_method,
        )
    start_epoch(loader, epoch)
    return [(x.clone(), y.clone()) for x, y, _ in batches(loader)]


@pytest.mark.slow
def test_augmentations_reach_spawned_workers(synth_root):
    serial = _epoch_batches(synth_root, workers=0, epoch=1)
    spawned = _epoch_batches(synth_root, workers=2, epoch=1, start_method="spawn")
    for (x0, y0), (x1, y1) in zip(serial, spawned, strict=True):
        assert torch.equal(x0, x1) and torch.equal(y0, y1)


def test_order_and_augmentation_are_reproducible_with_workers(synth_root):
    serial = _epoch_batches(synth_root, workers=0, epoch=1)
    parallel = _epoch_batches(synth_root, workers=2, epoch=1)
    assert len(serial) == 4
    for (x0, y0), (x1, y1) in zip(serial, parallel, strict=True):
        assert torch.equal(x0, x1) and torch.equal(y0, y1)
        assert x0.shape == (3, 3, 40, 40)
    other_epoch = _epoch_batches(synth_root, workers=0, epoch=2)
    assert not all(torch.equal(a[1], b[1]) for a, b in zip(serial, other_epoch, strict=True))


def test_a_bad_sample_raises_naming_the_file_or_is_skipped_and_counted(synth_root, tmp_path):
    import shutil

    root = tmp_path / "voc"
    shutil.copytree(synth_root, root)
    broken = root / "JPEGImages" / "synth_00003.jpg"
    broken.write_bytes(broken.read_bytes()[:200])
    dataset = open_dataset(root=root, split="trainval")
    for workers in (0, 2):  # from a worker too, the error is one line naming the file
        loader = make_loader(SegmentationData(dataset, MXNET_PREPROCESSING), workers=workers)
        with pytest.raises(FcnxsError) as info:
            list(batches(loader))
        assert str(info.value).startswith(str(broken)) and "\n" not in str(info.value)
        assert "unreadable or truncated" in str(info.value)
    skipping = SegmentationData(dataset, MXNET_PREPROCESSING, skip_bad=True)
    seen = list(batches(make_loader(skipping, shuffle=False, workers=2)))
    assert sum(images is None for images, _, _ in seen) == 1 and len(seen) == 12
    assert sum(skipped for _, _, skipped in seen) == 1


def test_synthetic_dataset_is_seeded_and_has_void_borders(tmp_path, synth_root):
    again = write_synthetic_voc(tmp_path / "again", 12, height=48, width=64)
    for name in ["JPEGImages/synth_00005.jpg", "SegmentationClass/synth_00005.png"]:
        assert (again / name).read_bytes() == (synth_root / name).read_bytes()
    dataset = open_dataset(root=synth_root, split="train")
    assert dataset.classes.names[0] == "background" and len(dataset.classes) == 6
    labels = [load_pair(dataset, i)[1] for i in range(len(dataset))]
    assert all((label == 255).any() and (label > 0).any() for label in labels)
    assert len(open_dataset(root=synth_root, split="val")) == 3


def test_data_check_finds_every_planted_fault(tmp_path, synth_root, capsys):
    import shutil

    root = tmp_path / "voc"
    shutil.copytree(synth_root, root)
    assert main(["data", "check", str(root), "--split", "trainval"]) == 0
    out = capsys.readouterr().out
    assert "12 samples, 0 with problems" in out and "class pixel frequencies" in out

    seg, jpg = root / "SegmentationClass", root / "JPEGImages"
    (jpg / "synth_00000.jpg").unlink()  # missing image
    (jpg / "synth_00001.jpg").write_bytes((jpg / "synth_00001.jpg").read_bytes()[:300])  # truncated
    Image.new("P", (10, 10)).save(seg / "synth_00002.png")  # size mismatch
    label = np.asarray(Image.open(seg / "synth_00003.png")).copy()
    label[0, 0] = 42
    write_label_png(label, VOC.colors, seg / "synth_00003.png")  # value outside the classes
    colours = np.zeros((48, 64, 3), np.uint8)
    colours[5, 5] = (1, 2, 3)
    Image.fromarray(colours).save(seg / "synth_00004.png")  # colour not in the palette
    (seg / "synth_00005.png").write_bytes(b"not a png")  # unreadable mask
    (seg / "synth_00006.png").unlink()  # missing mask

    assert main(["data", "check", "--data", str(root), "--split", "trainval"]) == 1
    out = capsys.readouterr().out
    problems = [line for line in out.splitlines() if line.startswith("problem: ")]
    expected = [
        ("synth_00000.jpg", "no such file"),
        ("synth_00001.jpg", "unreadable or truncated"),
        ("synth_00002.png", "is 10×10, its image synth_00002.jpg is 64×48"),
        ("synth_00003.png", "holds label 42, outside 0..5 and 255"),
        ("synth_00004.png", "colour (1, 2, 3) is not a class colour"),
        ("synth_00005.png", "not an image file"),
        ("synth_00006.png", "no such label file"),
    ]
    assert len(problems) == len(expected)
    for (name, reason), line in zip(expected, problems, strict=True):
        assert name in line and reason in line, line
    assert "12 samples, 7 with problems" in out


def test_dataset_options_errors(tmp_path, capsys):
    assert main(["data", "check", str(tmp_path)]) == 2
    assert "--data needs --split NAME or --list FILE" in capsys.readouterr().err
    assert main(["data", "check", str(tmp_path), "--split", "train"]) == 2
    assert "not a dataset root of a known layout" in capsys.readouterr().err
    assert main(["data", "check", "--images", str(tmp_path)]) == 2
    assert "needs both --images and --masks" in capsys.readouterr().err
