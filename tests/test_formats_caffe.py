import numpy as np
import pytest
import torch
import torch.nn.functional as F
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image
from writers import caffe_layers_from_state, write_caffemodel

import fcnxs
from fcnxs.formats.caffe import read_caffe_blobs
from fcnxs.model.preprocessing import to_input

pytestmark = pytest.mark.slow

CAFFE_MEAN_BGR = np.array([104.00699, 116.66877, 122.67892], np.float32)


@pytest.fixture(scope="module")
def atonce(tmp_path_factory):
    """A Caffe "at-once" FCN-8s (layer encoding, BlobShape shapes) and its raw weights."""
    torch.manual_seed(0)
    model = fcnxs.build_model("fcn8s", num_classes=3, seed=2)
    with torch.no_grad():
        for name in ("score", "score_pool4", "score_pool3"):
            layer = model.get_submodule(name)
            layer.weight.normal_(0, 0.05 if name == "score" else 5.0)
            layer.bias.normal_(0, 0.1)
        for name in ("score2", "score4", "bigscore"):
            model.get_submodule(name).weight.add_(
                torch.randn_like(model.get_submodule(name).weight) * 0.05
            )
    raw = {k: v.clone() for k, v in model.state_dict().items()}
    layers = caffe_layers_from_state(raw, "fcn8s")
    layers["scale_pool4"] = [np.full(512, 0.01, np.float32)]
    layers["scale_pool3"] = [np.full(256, 0.0001, np.float32)]
    path = tmp_path_factory.mktemp("caffe") / "fcn8s-atonce-heavy.caffemodel"
    write_caffemodel(path, layers, encoding="layer")
    return path, raw


def test_atonce_fcn8s_loads_with_caffe_semantics(atonce):
    path, raw = atonce
    model = fcnxs.load_model(path)
    c = model.config
    assert (c.arch, c.num_classes) == ("fcn8s", 3)
    assert c.semantics.pool_rounding == "ceil" and not c.semantics.upsample_output_padding
    assert (c.semantics.pool4_scale, c.semantics.pool3_scale) == pytest.approx((0.01, 0.0001))
    assert c.preprocessing.channel_order == "BGR"
    assert c.preprocessing.mean == pytest.approx(tuple(CAFFE_MEAN_BGR))
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in raw.items())


def _numpy_conv_relu(x: np.ndarray, w: np.ndarray, b: np.ndarray, pad: int) -> np.ndarray:
    x = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    windows = sliding_window_view(x, w.shape[-2:], axis=(1, 2))  # C, H, W, kh, kw
    return np.maximum(np.einsum("chwij,ocij->ohw", windows, w, optimize=True) + b[:, None, None], 0)


def _numpy_ceil_pool(x: np.ndarray) -> np.ndarray:
    c, h, w = x.shape
    padded = np.full((c, h + h % 2, w + w % 2), -np.inf, x.dtype)
    padded[:, :h, :w] = x
    return padded.reshape(c, padded.shape[1] // 2, 2, padded.shape[2] // 2, 2).max(axis=(2, 4))


def test_first_layer_group_matches_a_hand_written_caffe_computation(atonce):
    path, raw = atonce
    model = fcnxs.load_model(path)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (9, 13, 3), dtype=np.uint8)  # odd sizes: rounding matters
    # Caffe: BGR, minus the FCN mean, conv1_1 (pad 100) + ReLU, conv1_2 + ReLU, pool with ceil.
    x = image[:, :, ::-1].astype(np.float32).transpose(2, 0, 1) - CAFFE_MEAN_BGR[:, None, None]
    x = _numpy_conv_relu(x, raw["conv1_1.weight"].numpy(), raw["conv1_1.bias"].numpy(), 100)
    x = _numpy_conv_relu(x, raw["conv1_2.weight"].numpy(), raw["conv1_2.bias"].numpy(), 1)
    expected = _numpy_ceil_pool(x)
    assert expected.shape == (64, 104, 106)  # ceil(207/2), ceil(211/2): floor would drop one
    seen = {}
    model.pool1.register_forward_hook(lambda m, i, out: seen.setdefault("pool1", out))
    with torch.inference_mode():  # the dense network (segment computes windows of pool1)
        model.eval()(to_input(image, model.config.preprocessing))
    np.testing.assert_allclose(seen["pool1"][0].numpy(), expected, rtol=1e-4, atol=1e-3)


def _reference_caffe_fcn8s(raw, image):
    """The Caffe FCN-8s at-once forward pass written out layer by layer."""
    x = torch.from_numpy(image[:, :, ::-1].astype(np.float32).transpose(2, 0, 1).copy())[None]
    x = x - torch.from_numpy(CAFFE_MEAN_BGR).view(1, 3, 1, 1)
    h, w = image.shape[:2]
    taps = {}
    for block, n in enumerate([2, 2, 3, 3, 3], 1):
        for i in range(1, n + 1):
            name = f"conv{block}_{i}"
            x = F.relu(F.conv2d(x, raw[f"{name}.weight"], raw[f"{name}.bias"],
                                padding=100 if name == "conv1_1" else 1))  # fmt: skip
        x = taps[block] = F.max_pool2d(x, 2, 2, ceil_mode=True)
    x = F.relu(F.conv2d(x, raw["fc6.weight"], raw["fc6.bias"]))
    x = F.relu(F.conv2d(x, raw["fc7.weight"], raw["fc7.bias"]))
    x = F.conv2d(x, raw["score.weight"], raw["score.bias"])
    up2 = F.conv_transpose2d(x, raw["score2.weight"], stride=2)
    p4 = F.conv2d(taps[4] * 0.01, raw["score_pool4.weight"], raw["score_pool4.bias"])
    fuse4 = up2 + p4[..., 5 : 5 + up2.shape[2], 5 : 5 + up2.shape[3]]
    up4 = F.conv_transpose2d(fuse4, raw["score4.weight"], stride=2)
    p3 = F.conv2d(taps[3] * 0.0001, raw["score_pool3.weight"], raw["score_pool3.bias"])
    fuse3 = up4 + p3[..., 9 : 9 + up4.shape[2], 9 : 9 + up4.shape[3]]
    big = F.conv_transpose2d(fuse3, raw["bigscore.weight"], stride=8)
    return big[0, :, 31 : 31 + h, 31 : 31 + w]


def test_whole_network_matches_the_caffe_reference_forward(atonce):
    path, raw = atonce
    model = fcnxs.load_model(path)
    image = np.random.default_rng(1).integers(0, 256, (47, 61, 3), dtype=np.uint8)
    ours = torch.from_numpy(fcnxs.segment(model, image, return_scores=True)[1])
    with torch.no_grad():
        expected = _reference_caffe_fcn8s(raw, image)
    assert ours.shape == expected.shape == (3, 47, 61)
    assert (ours - expected).abs().max() <= 1e-4 * expected.abs().max()


def test_vgg16_caffemodel_in_the_v1_encoding_starts_an_fcn32s(tmp_path, fcn8s_model):
    trunk = {k: v for k, v in fcn8s_model.state_dict().items() if k.startswith(("conv", "fc"))}
    layers = caffe_layers_from_state(trunk, "fcn32s")
    layers["fc6"][0] = layers["fc6"][0].reshape(4096, 25088)  # InnerProduct, as in the file
    layers["fc7"][0] = layers["fc7"][0].reshape(4096, 4096)
    layers["fc8"] = [np.zeros((1000, 4096), np.float32), np.zeros(1000, np.float32)]
    path = tmp_path / "VGG_ILSVRC_16_layers.caffemodel"
    write_caffemodel(path, layers, encoding="v1", legacy_shapes=True)
    assert read_caffe_blobs(path)["fc6"][0].shape == (1, 1, 4096, 25088)
    model, report = fcnxs.start_model("fcn32s", path, num_classes=21)
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in trunk.items())
    assert report.ignored == ["fc8"]
    assert model.config.preprocessing.channel_order == "BGR"
    assert model.config.preprocessing.mean == pytest.approx((103.939, 116.779, 123.68))
    assert model.config.semantics.pool_rounding == "ceil"


def test_bad_caffe_files_fail_with_one_line(tmp_path, atonce):
    path, _ = atonce
    data = path.read_bytes()

    def expect(file, match):
        with pytest.raises(fcnxs.FcnxsError, match=match) as info:
            fcnxs.load_model(file)
        assert str(info.value).startswith(str(file)) and "\n" not in str(info.value)

    truncated = tmp_path / "truncated.caffemodel"
    truncated.write_bytes(data[: len(data) // 3])
    expect(truncated, "truncated")
    garbage = tmp_path / "garbage.caffemodel"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    expect(garbage, "garbage.caffemodel: ")
    empty = tmp_path / "empty.caffemodel"
    empty.write_bytes(b"")
    expect(empty, "empty file")
    unknown = tmp_path / "unknown.caffemodel"
    write_caffemodel(unknown, {"conv9_9": [np.zeros((2, 2, 3, 3), np.float32)]})
    expect(unknown, "unknown layer 'conv9_9'")
    biased = tmp_path / "biased.caffemodel"
    write_caffemodel(biased, {"upscore2": [np.zeros((3, 3, 4, 4)), np.zeros(3)]})
    expect(biased, "upsampling layer has a bias")


def test_a_models_format_is_found_once_per_command(atonce, tmp_path, monkeypatch, cli):
    """segment and info read a foreign file's format once (it was three times)."""
    from fcnxs.model import loading

    calls = []
    real = loading.detect_format
    monkeypatch.setattr(loading, "detect_format", lambda *a: calls.append(a) or real(*a))
    path, _ = atonce
    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(tmp_path / "a.png")
    status, _, err = cli("segment", tmp_path / "a.png", "--model", path, "-o", tmp_path / "out")
    assert status == 0 and any("Caffe" in line for line in err), err
    assert len(calls) == 1
    calls.clear()
    assert cli("info", path)[0] == 0 and len(calls) == 1
