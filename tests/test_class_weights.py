"""Class weights: the two weightings from pixel counts, a file of weights, the weighted
loss as defined, and the weights a run records."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fcnxs.cli import main
from fcnxs.core.distributed import Context
from fcnxs.core.errors import FcnxsError
from fcnxs.core.palette import VOID_LABEL
from fcnxs.data.class_weights import inverse_frequency, median_frequency, read_weights_file
from fcnxs.data.synth import write_synthetic_voc
from fcnxs.training.loop import training_loss
from fcnxs.training.settings import TrainSettings


def test_median_and_inverse_frequency_by_hand():
    counts, present = np.array([10, 30, 0]), np.array([100, 60, 0])
    # frequencies 0.1 and 0.5 (of the images holding each class), median 0.3
    assert median_frequency(counts, present) == pytest.approx([3.0, 0.6, 0.0])
    # 1/f = 4 and 4/3, scaled to average 1 over the classes present
    assert inverse_frequency(counts) == pytest.approx([1.5, 0.5, 0.0])


def test_a_weights_file_gives_one_number_per_class(tmp_path):
    path = tmp_path / "w.txt"
    path.write_text("# background, disc, box\n0.5\n2\n1.25\n")
    assert read_weights_file(path, 3) == [0.5, 2.0, 1.25]
    with pytest.raises(FcnxsError, match="holds 3 weights for 4 classes"):
        read_weights_file(path, 4)
    path.write_text("1\n-2\n3\n")
    with pytest.raises(FcnxsError, match="finite and at least 0"):
        read_weights_file(path, 3)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_the_weighted_loss_is_the_weighted_cross_entropy_over_non_void_pixels(reduction):
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 4, 5, generator=generator)
    labels = torch.randint(0, 3, (2, 4, 5), generator=generator)
    labels[0, 0, :3] = VOID_LABEL
    weights = [0.5, 2.0, 1.25]
    settings = TrainSettings(arch="fcn32s", train_data={}, loss_reduction=reduction,
                             class_weight_values=weights)  # fmt: skip
    got = training_loss(logits, labels, settings, Context())
    log_p = torch.log_softmax(logits, 1)
    total, weight_sum = 0.0, 0.0
    for n, y, x in np.ndindex(2, 4, 5):
        c = int(labels[n, y, x])
        if c == VOID_LABEL:
            continue
        total += -weights[c] * float(log_p[n, c, y, x])
        weight_sum += weights[c]
    expected = total / weight_sum if reduction == "mean" else total
    assert float(got) == pytest.approx(expected, rel=1e-5)
    plain = TrainSettings(arch="fcn32s", train_data={}, loss_reduction=reduction)
    assert float(training_loss(logits, labels, plain, Context())) != pytest.approx(expected)


def test_the_pixels_reduction_has_mxnet_1x_gradient_with_void_pixels():
    """MXNet 1.x's SoftmaxOutput(multi_output=True, normalization='null'): the gradient of
    each logit is (softmax − one-hot) / (H·W) of its image, void pixels counted in H·W and
    given no gradient; images of a batch are summed."""
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 3, 4, 5, generator=generator, requires_grad=True)
    labels = torch.randint(0, 3, (2, 4, 5), generator=generator)
    labels[0, 0, :3] = VOID_LABEL
    labels[1, 2:, 1] = VOID_LABEL
    settings = TrainSettings(arch="fcn32s", train_data={}, loss_reduction="pixels")
    training_loss(logits, labels, settings, Context()).backward()
    expected = torch.softmax(logits.detach(), 1)
    for n, y, x in np.ndindex(2, 4, 5):
        c = int(labels[n, y, x])
        if c == VOID_LABEL:
            expected[n, :, y, x] = 0
        else:
            expected[n, c, y, x] -= 1
    torch.testing.assert_close(logits.grad, expected / 20)
    assert logits.grad[0, :, 0, :3].abs().max() == 0


@pytest.mark.slow
def test_a_run_records_its_class_weights_and_data_check_prints_them(tmp_path, capsys):
    data = write_synthetic_voc(tmp_path / "ds", 2, height=32, width=32, val_fraction=0)
    run = tmp_path / "run"
    argv = ["train", "--arch", "fcn32s", "--data", str(data), "--split", "train",
            "--out", str(run), "--workers", "0", "--class-weights", "median-frequency"]  # fmt: skip
    assert main(argv) == 0
    settings = json.loads((run / "run.json").read_text())
    assert settings["class_weights"] == "median-frequency"
    values = settings["class_weight_values"]
    assert len(values) == 6 and values[0] > 0
    assert main(["data", "check", str(data), "--split", "train"]) == 0
    printed = capsys.readouterr().out
    assert "median-frequency class weights" in printed
    assert f"  {'background':<16} {values[0]:8.3f}" in printed
    assert main(["train", "--resume", str(run), "--class-weights", "inverse-frequency"]) == 2


def test_a_pipeline_weighs_classes_once_for_its_three_stages(tmp_path, monkeypatch):
    from fcnxs.training import pipeline
    from fcnxs.training.loop import TrainResult

    data = write_synthetic_voc(tmp_path / "ds", 3, height=32, width=32, val_fraction=0)
    passes, stages = [], []
    real = pipeline.class_weights
    monkeypatch.setattr(pipeline, "class_weights", lambda *a: passes.append(1) or real(*a))

    def fake_train(settings, run_dir, **_):
        stages.append(settings.class_weight_values)
        return TrainResult(run_dir, None, [])

    monkeypatch.setattr(pipeline, "train", fake_train)
    base = TrainSettings(arch="fcn32s", train_data={"root": str(data), "split": "train"},
                         class_weights="inverse-frequency")  # fmt: skip
    pipeline.run_pipeline(base, tmp_path / "runs", vgg16=None, epochs=[1] * 3, lrs=[None] * 3)
    assert len(passes) == 1
    assert len(stages) == 3 and stages[0] is not None and stages[0] == stages[1] == stages[2]
