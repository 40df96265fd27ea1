import json
import struct

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import fcnxs
from fcnxs.core.atomic import atomic_path
from helpers import random_image


def test_save_then_load_gives_identical_outputs(fcn8s_model, model_file, rng):
    loaded = fcnxs.load_model(model_file)
    assert loaded.config == fcn8s_model.config
    original, reloaded = fcn8s_model.state_dict(), loaded.state_dict()
    assert all(torch.equal(original[k], reloaded[k]) for k in original)
    image = random_image(rng, 61, 47)
    a_labels, a_scores = fcnxs.segment(fcn8s_model, image, return_scores=True)
    b_labels, b_scores = fcnxs.segment(loaded, image, return_scores=True)
    assert np.array_equal(a_labels, b_labels) and np.array_equal(a_scores, b_scores)


def test_metadata_is_readable_with_plain_safetensors(model_file):
    with safe_open(model_file, framework="np") as f:
        metadata = f.metadata()
        keys = set(f.keys())
    assert metadata["format"] == "fcnxs-model"
    config = json.loads(metadata["config"])
    assert config["arch"] == "fcn8s" and config["num_classes"] == 5
    assert config["preprocessing"]["mean"] == [123.68, 116.779, 103.939]
    assert config["semantics"]["pool_rounding"] == "floor"
    assert len(config["class_names"]) == len(config["colors"]) == 5
    assert "conv1_1.weight" in keys and "bigscore.weight" in keys


def _expect_error(path, match):
    with pytest.raises(fcnxs.FcnxsError, match=match) as info:
        fcnxs.load_model(path)
    message = str(info.value)
    assert message.startswith(str(path)) and "\n" not in message
    return message


def test_bad_model_files_fail_with_one_line(tmp_path, model_file):
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    _expect_error(empty, "empty file")
    _expect_error(tmp_path / "absent.safetensors", "no such file")
    _expect_error(tmp_path, "is a directory")

    truncated = tmp_path / "truncated.safetensors"
    with open(model_file, "rb") as f:
        truncated.write_bytes(f.read(10_000_000))
    _expect_error(truncated, "not a readable safetensors model file")

    foreign = tmp_path / "photo.jpg"
    foreign.write_bytes(b"\xff\xd8\xff\xe0" + bytes(5000))
    _expect_error(foreign, "unrecognised model format")
    disguised = tmp_path / "photo.safetensors"
    disguised.write_bytes(foreign.read_bytes())
    _expect_error(disguised, "not a readable safetensors model file")

    bare = tmp_path / "bare.safetensors"
    save_file({"w": torch.zeros(2)}, bare)
    _expect_error(bare, "without an fcnxs configuration")

    header_only = tmp_path / "header.safetensors"
    header = json.dumps({"__metadata__": {"format": "fcnxs-model"}}).encode()
    header_only.write_bytes(struct.pack("<Q", len(header)) + header)
    _expect_error(header_only, "without an fcnxs configuration")


@pytest.mark.slow
def test_inconsistent_model_files_fail_with_one_line(tmp_path, fcn8s_model):
    state = {k: v.contiguous() for k, v in fcn8s_model.state_dict().items()}
    metadata = {
        "format": "fcnxs-model",
        "format_version": "1",
        "config": fcn8s_model.config.to_json(),
    }

    wrong_shape = dict(state, **{"score.weight": torch.zeros(6, 4096, 1, 1)})
    save_file(wrong_shape, tmp_path / "shape.safetensors", metadata=metadata)
    _expect_error(tmp_path / "shape.safetensors", r"score.weight has shape \[6, 4096, 1, 1\]")

    missing = {k: v for k, v in state.items() if k != "score4.weight"}
    save_file(missing, tmp_path / "missing.safetensors", metadata=metadata)
    _expect_error(tmp_path / "missing.safetensors", "missing tensors score4.weight")

    bad_config = dict(metadata, config=json.dumps({"arch": "fcn4s"}))
    save_file(state, tmp_path / "config.safetensors", metadata=bad_config)
    _expect_error(tmp_path / "config.safetensors", "invalid configuration: unknown architecture")


def test_atomic_path_leaves_nothing_behind_on_failure(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("crash mid-write")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]
