"""Test-time augmentation: flips and scales average class probabilities at the input's size,
through whole images, tiles and batches; scale 1 alone changes nothing at all."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from PIL import Image

import fcnxs
from fcnxs.data.synth import write_synthetic_voc
from fcnxs.inference.border_reuse import MAX_CACHED_BYTES
from fcnxs.inference.segmenter import Segmenter
from fcnxs.inference.tta import TTA, averaged_probabilities


@pytest.fixture(scope="module")
def varied_model(fcn8s_model):
    """A model whose labels vary across an image (and so can be compared)."""
    model = copy.deepcopy(fcn8s_model)
    with torch.no_grad():
        for name in ("score", "score_pool4", "score_pool3"):
            torch.nn.init.normal_(model.get_submodule(name).weight, std=0.01)
    return model


def _smooth_image(rng, h, w):
    """Blobs rather than noise, so that rescaled views see the same scene."""
    small = rng.integers(0, 256, (h // 16 + 1, w // 16 + 1, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((w, h), Image.BILINEAR))


@pytest.mark.slow  # builds several full-size segmenters, each packing its weights
def test_flip_on_a_mirror_symmetric_image_gives_mirrored_labels(varied_model, rng):
    half = _smooth_image(rng, 96, 64)
    image = np.concatenate([half, half[:, ::-1]], axis=1)  # left-right symmetric
    plain = Segmenter(varied_model, tile=None).labels(image)
    assert not np.array_equal(plain, plain[:, ::-1]), "the model alone is not symmetric"
    flipped = Segmenter(varied_model, tile=None, tta=TTA(flip=True)).labels(image)
    assert np.array_equal(flipped, flipped[:, ::-1])
    assert len(np.unique(flipped)) > 1


@pytest.mark.slow
def test_flip_averaging_commutes_with_mirroring_any_image(varied_model, rng):
    image = _smooth_image(rng, 80, 100)
    segmenter = Segmenter(varied_model, tile=None, tta=TTA(flip=True, scales=(0.75, 1.0)))
    mirrored = segmenter.scores(image[:, ::-1].copy())
    torch.testing.assert_close(mirrored, segmenter.scores(image).flip(-1), atol=1e-5, rtol=1e-4)


@pytest.mark.slow  # builds several full-size segmenters, each packing its weights
def test_scale_1_alone_is_no_tta_exactly(varied_model, rng):
    image = _smooth_image(rng, 70, 90)
    plain = Segmenter(varied_model, tile=None)
    same = Segmenter(varied_model, tile=None, tta=TTA(scales=(1.0,)))
    assert not same.scores_are_probabilities
    assert torch.equal(plain.scores(image), same.scores(image))


def test_views_are_averaged_as_probabilities_at_the_input_size():
    calls = []

    def forward(x):  # logits that depend on the view's size: class 0 likes small views
        calls.append(tuple(x.shape[-2:]))
        n, _, h, w = x.shape
        return torch.tensor([h / 10.0, 0.0]).view(1, 2, 1, 1).expand(n, 2, h, w)

    x = torch.zeros(2, 3, 40, 60)
    out = averaged_probabilities(forward, x, TTA(flip=True, scales=(0.5, 1.0, 1.5)))
    assert calls == [(20, 30), (20, 30), (40, 60), (40, 60), (60, 90), (60, 90)]
    assert out.shape == (2, 2, 40, 60)
    expected = sum(torch.softmax(torch.tensor([h / 10.0, 0.0]), 0) for h in (20, 40, 60)) / 3
    torch.testing.assert_close(out[:, :, 17, 33], expected.expand(2, 2))
    with pytest.raises(Exception, match="scales"):
        TTA(scales=(0.0,))


def test_border_reuse_keeps_every_view_size_of_an_image(fcn8s_model):
    """The views come round in turn: a cache that holds fewer sizes than they have would
    miss on every view (measured with three scales on the demo's model, when each size
    kept its own packed weights: 5× slower)."""
    tta = TTA(flip=True, scales=(0.75, 1.0, 1.0, 1.25))
    assert tta.cache_bytes == 3 * MAX_CACHED_BYTES
    assert Segmenter(fcn8s_model, tta=tta).forward.max_bytes == 3 * MAX_CACHED_BYTES
    assert Segmenter(fcn8s_model).forward.max_bytes == MAX_CACHED_BYTES


@pytest.mark.slow
def test_tta_keeps_working_with_tiles_and_batches(varied_model, rng):
    image = _smooth_image(rng, 150, 200)
    tta = TTA(flip=True, scales=(0.75, 1.0))
    whole = Segmenter(varied_model, tile=None, tta=tta)
    tiled = Segmenter(varied_model, tile=96, tta=tta)
    agreement = (whole.labels(image) == tiled.labels(image)).mean()
    assert agreement >= 0.99, agreement
    batch = whole.labels_batch([image, image[::-1].copy()])
    assert np.array_equal(batch[0], whole.labels(image))
    assert np.array_equal(batch[1], whole.labels(image[::-1].copy()))
    assert tiled.cache_info().sizes_kept >= 2  # border reuse met the tiles' view sizes


@pytest.mark.slow
def test_segment_tta_options(tmp_path, model_file, rng, cli):
    Image.fromarray(_smooth_image(rng, 48, 64)).save(tmp_path / "x.png")
    out = tmp_path / "out"
    status, _, err = cli("segment", tmp_path / "x.png", "--model", model_file, "-o", out,
                         "--tta", "flip", "--logits")  # fmt: skip
    assert status == 2 and "--logits" in err[-1] and not out.exists()
    status, _, err = cli("segment", tmp_path / "x.png", "--model", model_file, "-o", out,
                         "--scales", "0")  # fmt: skip
    assert status == 2 and "--scales" in err[-1]
    status, _, _ = cli("segment", tmp_path / "x.png", "--model", model_file, "-o", out,
                       "--tta", "flip", "--scales", "0.75", "1", "--probabilities")  # fmt: skip
    assert status == 0
    probabilities = np.load(out / "x_probabilities.npy").astype(np.float32)
    np.testing.assert_allclose(probabilities.sum(0), 1, atol=5e-3)
    labels = np.asarray(Image.open(out / "x.png"))
    top2 = np.sort(probabilities, 0)[-2:]
    clear = top2[1] - top2[0] > 0.01  # float16 ties aside
    assert np.array_equal(labels[clear], probabilities.argmax(0)[clear]) and clear.mean() > 0.9
    assert probabilities.max() > 0.5  # averaged probabilities, not a softmax of them
    plain, scaled = tmp_path / "plain", tmp_path / "scaled"
    assert (
        cli("segment", tmp_path / "x.png", "--model", model_file, "-o", plain, "--logits")[0] == 0
    )
    assert cli("segment", tmp_path / "x.png", "--model", model_file, "-o", scaled, "--logits",
               "--scales", "1")[0] == 0  # fmt: skip
    assert np.array_equal(np.load(plain / "x.npy"), np.load(scaled / "x.npy"))


@pytest.mark.slow
def test_evaluate_with_tta(tmp_path, cli):
    data = write_synthetic_voc(tmp_path / "ds", 3, height=64, width=64)
    model = fcnxs.build_model("fcn32s", num_classes=6, seed=0)
    with torch.no_grad():
        torch.nn.init.normal_(model.score.weight, std=0.01)
    fcnxs.save_model(model, tmp_path / "model.safetensors")
    args = ["evaluate", "--model", tmp_path / "model.safetensors", "--data", data,
            "--split", "trainval", "--workers", "0"]  # fmt: skip
    assert cli(*args, "--out", tmp_path / "plain.json")[0] == 0
    assert cli(*args, "--out", tmp_path / "same.json", "--scales", "1")[0] == 0
    assert (
        cli(*args, "--out", tmp_path / "tta.json", "--tta", "flip", "--scales", "0.5", "1")[0] == 0
    )
    plain, same, tta = (json.loads((tmp_path / f"{n}.json").read_text())
                        for n in ("plain", "same", "tta"))  # fmt: skip
    assert plain["mean_iou"] == same["mean_iou"] and tta["num_images"] == 3
    status, _, err = cli("evaluate", "--predictions", tmp_path, "--data", data, "--split", "val",
                         "--tta", "flip")  # fmt: skip
    assert status == 2 and "--predictions" in err[-1]
