import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from writers import mx_arrays_from_state, write_mx_params, write_mx_symbol

import fcnxs
from fcnxs.cli import main
from fcnxs.formats.mxnet import read_mxnet_params, read_mxnet_symbol
from helpers import random_image


@pytest.mark.parametrize("version", ["legacy", "v1", "v2", "v3"])
@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64, np.int32, np.uint8])
def test_every_record_version_and_dtype(tmp_path, version, dtype):
    rng = np.random.default_rng(1)
    arrays = {
        "arg:conv1_1_weight": (rng.standard_normal((4, 3, 3, 3)) * 10).astype(dtype),
        "arg:conv1_1_bias": np.arange(4).astype(dtype),
        "aux:scalarish": np.array([7]).astype(dtype),
    }
    write_mx_params(tmp_path / "x.params", arrays, version)
    loaded = read_mxnet_params(tmp_path / "x.params")
    assert list(loaded) == list(arrays)
    for name, array in arrays.items():
        assert loaded[name].dtype == torch.from_numpy(array).dtype
        assert np.array_equal(loaded[name].numpy(), array)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, fcn8s_model):
    """FCN8s_VGG16-0019.params (legacy records, as the tutorial's files) + symbol."""
    folder = tmp_path_factory.mktemp("mxnet")
    arrays = mx_arrays_from_state(fcn8s_model.state_dict())
    write_mx_params(folder / "FCN8s_VGG16-0019.params", arrays, "legacy")
    write_mx_symbol(folder / "FCN8s_VGG16-symbol.json", "fcn8s", 5)
    return folder / "FCN8s_VGG16"


@pytest.mark.slow
def test_checkpoint_loads_exactly_by_every_name(checkpoint, fcn8s_model, rng):
    image = random_image(rng, 53, 71)
    expected = fcnxs.segment(fcn8s_model, image, return_scores=True)[1]
    for source, epoch in [
        (f"{checkpoint}-0019.params", None),
        (f"{checkpoint}-symbol.json", None),
        (str(checkpoint), 19),
        (str(checkpoint), None),
    ]:
        model = fcnxs.load_model(source, epoch=epoch)
        c = model.config
        assert (c.arch, c.num_classes, c.semantics.pool_rounding) == ("fcn8s", 5, "floor")
        assert c.semantics.upsample_output_padding and c.semantics.crop_offsets is None
        assert c.preprocessing.channel_order == "RGB"
        scores = fcnxs.segment(model, image, return_scores=True)[1]
        assert np.array_equal(scores, expected)


def test_symbol_semantics_2015_style(tmp_path):
    write_mx_symbol(tmp_path / "old-symbol.json", "fcn16s", 21, adj=False, attr_key="param",
                    offsets={"score_pool4c": 5, "upscore": 30})  # fmt: skip
    info = read_mxnet_symbol(tmp_path / "old-symbol.json")
    assert info.output_padding is False and info.pool_rounding == "floor"
    assert info.offsets_of_cropped == {"score_pool4": 5, "bigscore": 30}  # by the layer cropped
    write_mx_symbol(tmp_path / "new-symbol.json", "fcn8s", 21, pooling="full", attr_key="attr")
    info = read_mxnet_symbol(tmp_path / "new-symbol.json")
    assert info.output_padding is True and info.pool_rounding == "ceil"
    assert info.offsets_of_cropped == {"score_pool4": 5, "score_pool3": 9, "bigscore": 31}


@pytest.mark.slow
def test_2015_checkpoint_keeps_its_stored_offsets_and_no_output_padding(tmp_path, rng):
    model16 = fcnxs.build_model("fcn16s", num_classes=3, seed=4)
    with torch.no_grad():
        for p in model16.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    write_mx_params(
        tmp_path / "FCN16s-0001.params", mx_arrays_from_state(model16.state_dict()), "v2"
    )
    write_mx_symbol(tmp_path / "FCN16s-symbol.json", "fcn16s", 3, adj=False, attr_key="param",
                    offsets={"score_pool4c": 5, "upscore": 26})  # fmt: skip
    loaded = fcnxs.load_model(tmp_path / "FCN16s-0001.params")
    sem = loaded.config.semantics
    assert sem.crop_offsets == {"score_pool4c": 5, "upscore": 26}
    assert not sem.upsample_output_padding
    image = random_image(rng, 60, 90)
    scores = fcnxs.segment(loaded, image, return_scores=True)[1]
    assert scores.shape == (3, 60, 90)
    # The stored offset is really used: one pixel off the derived alignment.
    derived = fcnxs.build_model(loaded.config.replace(semantics=fcnxs.Semantics(
        upsample_output_padding=False)))  # fmt: skip
    derived.load_state_dict(loaded.state_dict())
    shifted = fcnxs.segment(derived, image, return_scores=True)[1]
    assert np.allclose(scores[:, 1:, 1:], shifted[:, :-1, :-1], atol=1e-4)
    assert not np.allclose(scores, shifted, atol=1e-4)


@pytest.mark.slow
def test_cli_segment_and_convert_an_mxnet_checkpoint(tmp_path, checkpoint, fcn8s_model, capsys):
    from PIL import Image

    image_path = tmp_path / "photo.jpg"
    Image.fromarray(random_image(np.random.default_rng(3), 40, 50)).save(image_path)
    out = tmp_path / "out"
    assert main(["segment", str(image_path), "--model", str(checkpoint), "--epoch", "19",
                 "-o", str(out), "--logits"]) == 0  # fmt: skip
    err = capsys.readouterr().err
    assert "not used: arg:data, arg:softmax_label, arg:fc8_weight, arg:fc8_bias" in err
    expected = fcnxs.segment(fcn8s_model, Image.open(image_path), return_scores=True)[1]
    assert np.array_equal(np.load(out / "photo.npy"), expected)

    converted = tmp_path / "fcn8s.safetensors"
    assert main(["convert", f"{checkpoint}-symbol.json", f"{checkpoint}-0019.params",
                 "-o", str(converted)]) == 0  # fmt: skip
    state = fcnxs.load_model(converted).state_dict()
    assert all(torch.equal(state[k], v) for k, v in fcn8s_model.state_dict().items())
    with safe_open(converted, framework="pt") as f:
        provenance = json.loads(f.metadata()["config"])["provenance"]
    assert provenance["source"].endswith("FCN8s_VGG16-0019.params")


def _error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    return err


@pytest.mark.slow  # several full-size models: seconds each where the CPU is slow
def test_bad_mxnet_files_fail_with_one_line(tmp_path, checkpoint, capsys):
    params = f"{checkpoint}-0019.params"
    with open(params, "rb") as f:
        data = f.read()
    Image.new("RGB", (8, 8)).save(tmp_path / "x.jpg")
    seg = ["segment", str(tmp_path / "x.jpg"), "-o", str(tmp_path / "out"), "--model"]

    truncated = tmp_path / "cut-0001.params"
    truncated.write_bytes(data[: len(data) // 2])
    assert "truncated" in _error(capsys, [*seg, str(truncated)])

    wrong_magic = tmp_path / "magic-0001.params"
    wrong_magic.write_bytes(b"\x13" + data[1:4096])
    assert "not an MXNet .params file" in _error(capsys, [*seg, str(wrong_magic)])

    unknown = tmp_path / "unknown-0001.params"
    write_mx_params(unknown, {"arg:conv9_9_weight": np.zeros((2, 2), np.float32)})
    assert "unknown array 'arg:conv9_9_weight'" in _error(capsys, [*seg, str(unknown)])

    assert "holds an fcn8s, but --arch says fcn32s" in _error(
        capsys, [*seg, params, "--arch", "fcn32s"]
    )
    assert "defines 5 classes, but --num-classes says 21" in _error(
        capsys, [*seg, params, "--num-classes", "21"]
    )
    assert "--epoch says 3" in _error(capsys, [*seg, params, "--epoch", "3"])
    assert "no such file" in _error(capsys, [*seg, str(checkpoint), "--epoch", "3"])


@pytest.mark.slow
def test_wrong_shapes_and_vgg16_as_a_model(tmp_path, fcn8s_model, capsys):
    arrays = mx_arrays_from_state(fcn8s_model.state_dict())
    arrays["arg:score2_weight"] = np.zeros((5, 5, 3, 3), np.float32)
    write_mx_params(tmp_path / "shape-0001.params", arrays)
    err = _error(
        capsys, ["convert", str(tmp_path / "shape-0001.params"), "-o", str(tmp_path / "o")]
    )
    assert "score2.weight has shape [5, 5, 3, 3], expected [5, 5, 4, 4]" in err

    vgg = {k: v for k, v in mx_arrays_from_state(fcn8s_model.state_dict()).items()
           if not k.startswith(("arg:score", "arg:bigscore"))}  # fmt: skip
    write_mx_params(tmp_path / "VGG_FC_ILSVRC_16_layers-0074.params", vgg)
    err = _error(capsys, ["convert", str(tmp_path / "VGG_FC_ILSVRC_16_layers-0074.params"),
                          "-o", str(tmp_path / "o")])  # fmt: skip
    assert "is a VGG16 without an FCN head" in err and "fcnxs create --arch fcn32s" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_vgg16_checkpoints_start_an_fcn32s(tmp_path, fcn8s_model):
    state = fcn8s_model.state_dict()
    trunk = {k: v for k, v in state.items() if k.startswith(("conv", "fc"))}
    fully_conv = mx_arrays_from_state(trunk)
    write_mx_params(tmp_path / "VGG_FC_ILSVRC_16_layers-0074.params", fully_conv, "legacy")
    plain = dict(fully_conv)
    plain["arg:fc6_weight"] = plain["arg:fc6_weight"].reshape(4096, 25088)
    plain["arg:fc7_weight"] = plain["arg:fc7_weight"].reshape(4096, 4096)
    write_mx_params(tmp_path / "vgg16-0000.params", plain, "v2")
    for source in ["VGG_FC_ILSVRC_16_layers-0074.params", "vgg16-0000.params"]:
        model, report = fcnxs.start_model("fcn32s", tmp_path / source, num_classes=21)
        new = model.state_dict()
        assert all(torch.equal(new[k], v) for k, v in trunk.items())
        assert "arg:fc8_weight" in report.ignored and "arg:data" in report.ignored
        assert not new["score.weight"].any() and model.config.num_classes == 21
