"""fcnxs segment on every kind of input a user has, large images in tiles, and the API."""

import copy
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

import fcnxs
from fcnxs.cli import main
from fcnxs.data.images import open_image
from fcnxs.inference.segmenter import Segmenter, mean_color
from helpers import png_header


def _rgb(rng, h, w):
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 // w, y * 255 // h, (x + y) % 256], -1)
    return np.clip(base + rng.integers(-20, 20, (h, w, 3)), 0, 255).astype(np.uint8)


@pytest.fixture
def kinds(tmp_path, rng):
    """One real file of each kind users have, written by Pillow: name → (path, W×H)."""
    rgb = _rgb(rng, 37, 53)
    image = Image.fromarray(rgb)
    folder = tmp_path / "in"
    folder.mkdir()
    files = {}

    def save(name, img, **kw):
        img.save(folder / name, **kw)
        files[name] = img.size

    save("photo.jpg", image, quality=90)
    save("plain.png", image)
    save("bitmap.bmp", image)
    save("scan.tif", image)
    save("web.webp", image)
    frames = [image, Image.fromarray(255 - rgb)]
    frames[0].save(folder / "anim.gif", save_all=True, append_images=frames[1:], duration=100)
    files["anim.gif"] = image.size
    save("gray.png", image.convert("L"))
    save("palette.png", image.convert("P"))
    save("alpha.png", image.convert("RGBA"))
    save("gray-alpha.png", image.convert("LA"))
    save("deep-gray.png", Image.fromarray(rgb[..., 0].astype(np.uint16) * 257))  # 16-bit gray
    save("deep-scan.tif", Image.fromarray(rgb[..., 1].astype(np.uint16) * 257))
    save("print-proof.jpg", image.convert("CMYK"))
    save("print-scan.tif", image.convert("CMYK"))
    return folder, files


@pytest.mark.slow
def test_every_input_kind_gives_a_mask_of_its_size(kinds, model_file, tmp_path):
    folder, files = kinds
    out = tmp_path / "out"
    assert main(["segment", str(folder), "--model", model_file, "-o", str(out)]) == 0
    for name, size in files.items():
        mask = Image.open(out / (name.rsplit(".", 1)[0] + ".png"))
        assert mask.mode == "P" and mask.size == size, name


def test_corrupted_files_are_one_line_errors_and_the_rest_go_on(
    kinds, model_file, tmp_path, capsys
):
    folder, files = kinds
    bad = tmp_path / "bad"
    bad.mkdir()
    data = (folder / "plain.png").read_bytes()
    (bad / "truncated.png").write_bytes(data[: len(data) // 2])
    flipped = bytearray(data)
    for i in range(60, len(flipped), 97):
        flipped[i] ^= 0xFF
    (bad / "flipped.png").write_bytes(bytes(flipped))
    jpeg = bytearray((folder / "photo.jpg").read_bytes())
    for i in range(400, len(jpeg) - 10, 211):
        jpeg[i] ^= 0x55
    (bad / "flipped-photo.jpg").write_bytes(bytes(jpeg))
    (bad / "empty.jpg").write_bytes(b"")
    (bad / "notes.png").write_text("this is not an image")
    out = tmp_path / "out"
    code = main(
        ["segment", str(bad), str(folder / "photo.jpg"), "--model", model_file, "-o", str(out)]
    )
    err = capsys.readouterr().err.strip().splitlines()
    failed = {line.split(": ")[2].split("/")[-1] for line in err if line.startswith("fcnxs: error")}
    assert code == 1 and (out / "photo.png").is_file()
    assert {"truncated.png", "empty.jpg", "notes.png"} <= failed
    for source in bad.iterdir():  # each input: a one-line error or a mask of its size
        if source.name not in failed:
            assert Image.open(out / f"{source.stem}.png").size == files["plain.png"]
    assert all("Traceback" not in line for line in err)
    assert not list(out.glob(".*"))  # no partial file left behind


def test_exif_orientation_gives_a_mask_in_display_orientation(
    tmp_path, model_file, fcn8s_model, rng
):
    rgb = _rgb(rng, 40, 64)
    exif = Image.Exif()
    exif[0x0112] = 6  # the viewer rotates 90° clockwise
    Image.fromarray(rgb).save(tmp_path / "phone.jpg", exif=exif, quality=95)
    out = tmp_path / "out"
    assert (
        main(["segment", str(tmp_path / "phone.jpg"), "--model", model_file, "-o", str(out)]) == 0
    )
    mask = np.asarray(Image.open(out / "phone.png"))
    assert mask.shape == (64, 40)  # display orientation: portrait
    shown = Image.open(tmp_path / "phone.jpg").transpose(Image.Transpose.ROTATE_270)
    assert np.array_equal(mask, fcnxs.segment(fcn8s_model, shown))


def test_transparent_pixels_are_the_models_mean_colour(fcn8s_model, rng):
    rgba = np.dstack([_rgb(rng, 30, 30), np.full((30, 30), 255, np.uint8)])
    rgba[:, :15, 3] = 0
    flat = rgba[..., :3].copy()
    flat[:, :15] = mean_color(fcn8s_model)
    a = fcnxs.segment(fcn8s_model, Image.fromarray(rgba, "RGBA"), return_scores=True)[1]
    b = fcnxs.segment(fcn8s_model, flat, return_scores=True)[1]
    assert np.array_equal(a, b)


@pytest.mark.slow
def test_folders_globs_and_layout(tmp_path, model_file, rng):
    tree = tmp_path / "photos"
    (tree / "2024" / "june").mkdir(parents=True)
    for rel in ["a.jpg", "2024/b.png", "2024/june/c.jpg", "2024/june/notes.txt", "2024/d.ppm"]:
        path = tree / rel
        if rel.endswith(".txt"):
            path.write_text("skip me")
        else:
            Image.fromarray(_rgb(rng, 20, 24)).save(path)
    out = tmp_path / "out"
    assert main(["segment", str(tree), "--recursive", "--model", model_file, "-o", str(out)]) == 0
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert written == ["2024/b.png", "2024/d.png", "2024/june/c.png", "a.png"]
    flat = tmp_path / "flat"
    assert main(["segment", str(tree), "--model", model_file, "-o", str(flat)]) == 0
    assert [p.name for p in flat.rglob("*.png")] == ["a.png"]
    globbed = tmp_path / "globbed"
    assert main(["segment", str(tree / "2024" / "*" / "*.jpg"), "--model", model_file,
                 "-o", str(globbed)]) == 0  # fmt: skip
    assert [p.relative_to(globbed).as_posix() for p in globbed.rglob("*.png")] == ["june/c.png"]


def test_overlay_logits_and_probabilities(tmp_path, model_file, rng):
    Image.fromarray(_rgb(rng, 33, 45)).save(tmp_path / "x.png")
    out = tmp_path / "out"
    assert main(["segment", str(tmp_path / "x.png"), "--model", model_file, "-o", str(out),
                 "--overlay", "--logits", "--probabilities"]) == 0  # fmt: skip
    overlay = Image.open(out / "x_overlay.jpg")  # a small image: the legend beside it
    assert overlay.height >= 33 and overlay.width > 45
    logits = np.load(out / "x.npy")
    probabilities = np.load(out / "x_probabilities.npy")
    assert logits.dtype == np.float32 and probabilities.dtype == np.float16
    assert logits.shape == probabilities.shape == (5, 33, 45)
    np.testing.assert_allclose(probabilities.astype(np.float32).sum(0), 1, atol=5e-3)
    assert np.array_equal(np.asarray(Image.open(out / "x.png")), logits.argmax(0))


@pytest.mark.slow
def test_tiles_agree_with_the_whole_image(fcn8s_model, rng):
    model = copy.deepcopy(fcn8s_model)  # a model whose argmax varies across the image
    with torch.no_grad():
        for name in ("score", "score_pool4", "score_pool3"):
            torch.nn.init.normal_(model.get_submodule(name).weight, std=0.01)
    image = _rgb(rng, 210, 300)
    whole = Segmenter(model, tile=None).scores(image)
    tiled = Segmenter(model, tile=128).scores(image)
    assert len(torch.unique(whole.argmax(0))) > 1
    agreement = (whole.argmax(0) == tiled.argmax(0)).float().mean()
    assert agreement >= 0.995
    assert (whole - tiled).abs().max() <= 1e-2 * whole.abs().max()


def test_a_segmenter_leaves_the_model_as_it_was_and_keeps_its_cache(fcn8s_model, rng):
    model = copy.deepcopy(fcn8s_model).train()
    before = {k: (v.clone(), v.stride()) for k, v in model.state_dict().items()}
    segmenter = Segmenter(model, tile=None)
    image = _rgb(rng, 40, 44)
    first = segmenter.scores(image)
    for _ in range(2):  # the border kept and reused: the same scores
        again = segmenter.scores(image)
        torch.testing.assert_close(again, first, rtol=0, atol=1e-4 * first.abs().max().item())
    assert segmenter.cache_info().sizes_kept == 1
    assert model.training and torch.backends.cudnn.benchmark is False
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, before[name][0]) and tensor.stride() == before[name][1]


def test_decompression_bomb_guard_stays_on_with_an_option_to_raise_it(tmp_path, model_file, capsys):
    Image.new("RGB", (300, 200)).save(tmp_path / "big.png")
    argv = ["segment", str(tmp_path / "big.png"), "--model", model_file, "-o", str(tmp_path / "o")]
    assert main([*argv, "--max-pixels", "10000"]) == 2
    err = capsys.readouterr().err
    assert "60000 pixels exceeds the decompression-bomb limit of 10000" in err
    assert "--max-pixels" in err
    assert main([*argv, "--max-pixels", "100000"]) == 0


def test_max_pixels_admits_images_beyond_pillows_own_limit(tmp_path):
    """Pillow refuses past 2 × its limit (179 M pixels) and warns past it, whatever our
    option says; only our limit counts, and it names the option."""
    huge = tmp_path / "huge.png"
    huge.write_bytes(png_header(20_000, 10_000))  # 200 M pixels, no pixel data
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(fcnxs.FcnxsError, match="exceeds the decompression-bomb limit of"):
            open_image(huge)
        with pytest.raises(fcnxs.FcnxsError, match="unreadable or truncated image"):
            open_image(huge, max_pixels=300_000_000)  # past the size check, to the decoder
        middle = tmp_path / "middle.png"
        middle.write_bytes(png_header(10_000, 10_000))  # 100 M: Pillow would only warn
        with pytest.raises(fcnxs.FcnxsError, match="--max-pixels"):
            open_image(middle)
    assert Image.MAX_IMAGE_PIXELS == 89_478_485  # Pillow's own setting is left as it was


def test_tiled_images_show_their_progress(fcn8s_model, rng, capsys):
    Segmenter(fcn8s_model, tile=64).scores(_rgb(rng, 150, 140))
    assert "140×150 in 2×2 tiles: 2/2" in capsys.readouterr().err


def test_python_api_takes_arrays_images_and_paths(tmp_path, fcn8s_model, rng):
    rgb = _rgb(rng, 25, 35)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    (tmp_path / "b.png").write_bytes(b"junk")
    from_array = fcnxs.segment(fcn8s_model, rgb)
    assert np.array_equal(from_array, fcnxs.segment(fcn8s_model, Image.fromarray(rgb)))
    assert np.array_equal(from_array, fcnxs.segment(fcn8s_model, tmp_path / "a.png"))
    results = list(fcnxs.segment_paths(fcn8s_model, [tmp_path / "a.png", tmp_path / "b.png"]))
    assert np.array_equal(results[0][1], from_array)
    assert isinstance(results[1][1], fcnxs.FcnxsError) and "b.png" in str(results[1][1])


def test_a_model_loaded_under_inference_mode_segments_as_any_other(model_file, fcn8s_model, rng):
    """Its parameters have no version counter, which the caches read to see a change."""
    rgb = _rgb(rng, 25, 35)
    with torch.inference_mode():
        model = fcnxs.load_model(model_file)
        labels, scores = fcnxs.segment(model, rgb, return_scores=True)
        assert np.array_equal(Segmenter(model).labels(rgb), labels)
    expected_labels, expected_scores = fcnxs.segment(fcn8s_model, rgb, return_scores=True)
    assert np.array_equal(labels, expected_labels)
    np.testing.assert_allclose(scores, expected_scores, rtol=0, atol=1e-4 * np.abs(scores).max())


@pytest.mark.slow
def test_labels_are_the_argmax_of_the_scores_batched_or_not(fcn8s_model, rng):
    segmenter = Segmenter(fcn8s_model, tile=64)
    images = [_rgb(rng, 30, 40), _rgb(rng, 30, 40), _rgb(rng, 25, 35), _rgb(rng, 90, 80)]
    one_by_one = [segmenter.labels(image) for image in images]  # the last one in tiles
    for image, labels in zip(images, one_by_one, strict=True):
        assert labels.dtype == np.uint8
        assert np.array_equal(labels, segmenter.scores(image).argmax(0).numpy())
    batched = segmenter.labels_batch(images)
    assert all(np.array_equal(a, b) for a, b in zip(batched, one_by_one, strict=True))


@pytest.mark.slow  # builds several full-size segmenters, each packing its weights
def test_segment_in_batches_writes_what_one_at_a_time_writes(tmp_path, model_file, rng):
    folder = tmp_path / "in"
    folder.mkdir()
    for i, (h, w) in enumerate([(30, 40), (30, 40), (30, 40), (25, 35), (30, 40)]):
        Image.fromarray(_rgb(rng, h, w)).save(folder / f"{i}.png")
    argv = ["segment", str(folder), "--model", model_file]
    assert main([*argv, "-o", str(tmp_path / "one")]) == 0
    assert main([*argv, "-o", str(tmp_path / "three"), "--batch-size", "3"]) == 0
    for i in range(5):
        one = np.asarray(Image.open(tmp_path / "one" / f"{i}.png"))
        assert np.array_equal(one, np.asarray(Image.open(tmp_path / "three" / f"{i}.png")))


def test_an_overlays_legend_never_hides_most_of_a_small_image():
    from fcnxs.inference.outputs import overlay_image

    names = ["background", "aeroplane", "diningtable"]
    colors = np.array([(0, 0, 0), (128, 0, 0), (0, 128, 0)])
    for height, width in [(64, 64), (300, 400)]:
        rgb = np.full((height, width, 3), 200, np.uint8)
        labels = np.zeros((height, width), np.uint8)
        labels[: height // 2, : width // 2], labels[height // 2 :, width // 2 :] = 1, 2
        picture = np.asarray(overlay_image(rgb, labels, colors.tolist(), names))
        tinted = np.where((labels > 0)[..., None], (rgb + colors[labels]) / 2, rgb)
        tinted = tinted.astype(np.uint8)
        if height == 64:  # beside it: the image itself untouched by the legend
            assert picture.shape[1] > width
            assert np.array_equal(picture[:height, :width], tinted)
        else:  # on it, in a corner that is a small share of it
            assert picture.shape[:2] == (height, width)
            assert (picture != tinted).any(-1).mean() < 0.25
