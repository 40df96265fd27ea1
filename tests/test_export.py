import numpy as np
import onnxruntime
import pytest

import fcnxs
from fcnxs.apps.export import read_onnx_config
from fcnxs.cli import main

pytestmark = pytest.mark.slow


def test_export_says_when_its_check_would_prove_nothing(tmp_path, capsys):
    fresh = tmp_path / "fresh.safetensors"
    assert main(["create", "--arch", "fcn32s", "--num-classes", "2", "-o", str(fresh)]) == 0
    assert main(["export", str(fresh), "-o", str(tmp_path / "fresh.onnx")]) == 0
    printed = capsys.readouterr().out
    assert "not compared: the model's scores are all zero" in printed
    assert "max |difference|" not in printed


def test_export_matches_pytorch_on_several_sizes(tmp_path, model_file, fcn8s_model, capsys):
    out = tmp_path / "model.onnx"
    assert main(["export", model_file, "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "ONNX Runtime vs PyTorch: max |difference|" in printed
    config = read_onnx_config(out)
    assert config["arch"] == "fcn8s" and config["preprocessing"]["mean"] == [
        123.68,
        116.779,
        103.939,
    ]
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    image = np.random.default_rng(0).integers(0, 256, (2, 45, 77, 3), dtype=np.uint8)
    x = image.astype(np.float32) - np.array(config["preprocessing"]["mean"], np.float32)
    (scores,) = session.run(["scores"], {"image": x.transpose(0, 3, 1, 2).copy()})
    assert scores.shape == (2, 5, 45, 77)
    for i in range(2):
        expected = fcnxs.segment(fcn8s_model, image[i], return_scores=True)[1]
        assert np.abs(scores[i] - expected).max() <= 1e-4 * np.abs(expected).max()


def test_export_leaves_the_callers_model_as_it_was(tmp_path):
    from fcnxs.apps.export import export_onnx

    model = fcnxs.build_model("fcn32s", num_classes=2, seed=0).train()
    export_onnx(model, tmp_path / "m.onnx")
    assert model.training and model.device.type == "cpu"
