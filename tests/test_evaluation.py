import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import fcnxs
from fcnxs.cli import main
from fcnxs.data.synth import write_synthetic_voc
from fcnxs.evaluation.metrics import ConfusionMatrix, compute_scores
from fcnxs.evaluation.report import report_dict


def _straightforward(truths, preds, n):
    """Each metric by its definition, pixel by pixel, without a confusion matrix."""
    pairs = [(t, p) for truth, pred in zip(truths, preds, strict=True)
             for t, p in zip(truth.ravel(), pred.ravel(), strict=True) if t != 255]  # fmt: skip
    correct = sum(t == p for t, p in pairs)
    accs, ious, fw = [], [], 0.0
    for c in range(n):
        in_truth = sum(t == c for t, _ in pairs)
        in_pred = sum(p == c for _, p in pairs)
        both = sum(t == c and p == c for t, p in pairs)
        if in_truth:
            accs.append(both / in_truth)
        union = in_truth + in_pred - both
        if union:
            ious.append(both / union)
            fw += in_truth / len(pairs) * both / union
    iou_c = []
    for c in range(n):
        union = sum(t == c or p == c for t, p in pairs)
        iou_c.append(sum(t == c and p == c for t, p in pairs) / union if union else None)
    return correct / len(pairs), np.mean(accs), np.mean(ious), fw, iou_c


def test_metrics_equal_a_straightforward_computation():
    rng = np.random.default_rng(0)
    n = 7  # class 6 never appears; class 5 only in predictions; class 4 only in the truth
    truths = [
        rng.choice([0, 1, 2, 3, 4, 255], size=(9, 11), p=[0.4, 0.2, 0.1, 0.1, 0.1, 0.1])
        for _ in range(4)
    ]
    preds = [rng.choice([0, 1, 2, 3, 5], size=(9, 11)) for _ in range(4)]
    matrix = ConfusionMatrix(n)
    for truth, pred in zip(truths, preds, strict=True):
        matrix.update(truth, pred)
    scores = compute_scores(matrix.hist)
    pixel, mean_acc, mean_iou, fw, per_class = _straightforward(truths, preds, n)
    assert scores.pixel_accuracy == pytest.approx(pixel)
    assert scores.mean_accuracy == pytest.approx(mean_acc)
    assert scores.mean_iou == pytest.approx(mean_iou)
    assert scores.frequency_weighted_iou == pytest.approx(fw)
    assert np.isnan(scores.per_class_iou[6]) and per_class[6] is None
    assert scores.per_class_iou[5] == 0 and scores.per_class_iou[4] == 0
    for c in range(6):
        assert scores.per_class_iou[c] == pytest.approx(per_class[c])
    report = report_dict(matrix.hist, tuple(f"c{i}" for i in range(n)), 4)
    assert report["per_class_iou"]["c6"] is None and report["mean_iou"] == pytest.approx(mean_iou)
    assert matrix.hist.sum() == sum(int((t != 255).sum()) for t in truths)


def test_predictions_outside_the_classes_are_refused():
    with pytest.raises(ValueError, match=r"classes 0\.\.2"):
        ConfusionMatrix(3).update(np.zeros((2, 2)), np.full((2, 2), 255))


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = write_synthetic_voc(tmp_path_factory.mktemp("eval") / "voc", 8, height=40, width=56)
    model = fcnxs.build_model("fcn16s", num_classes=6, seed=3)
    path = root.parent / "model.safetensors"
    fcnxs.save_model(model, path)
    return root, path


REQUIRED = ["pixel_accuracy", "mean_accuracy", "mean_iou", "frequency_weighted_iou",
            "per_class_iou", "confusion_matrix", "num_images"]  # fmt: skip
SCORES = ["pixel_accuracy", "mean_accuracy", "mean_iou", "frequency_weighted_iou",
          "per_class_iou", "confusion_matrix"]  # fmt: skip


@pytest.mark.slow
def test_saved_predictions_score_exactly_as_the_model(synth, tmp_path, capsys):
    root, model = synth
    data = ["--data", str(root), "--split", "trainval"]
    assert main(["evaluate", "--model", str(model), *data, "--out", str(tmp_path / "model.json"),
                 "--save-predictions", str(tmp_path / "preds"), "--workers", "0"]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "mean IoU" in printed and "background" in printed and "ring" in printed
    by_model = json.loads((tmp_path / "model.json").read_text())
    assert all(key in by_model for key in REQUIRED) and by_model["num_images"] == 8
    assert all(v is None or 0 <= v <= 1 for v in by_model["per_class_iou"].values())
    assert (tmp_path / "model_confusion.png").read_bytes().startswith(b"\x89PNG")
    assert main(["evaluate", "--predictions", str(tmp_path / "preds"), *data,
                 "--out", str(tmp_path / "preds.json")]) == 0  # fmt: skip
    by_files = json.loads((tmp_path / "preds.json").read_text())
    assert {k: by_files[k] for k in SCORES} == {k: by_model[k] for k in SCORES}


def test_bad_predictions_are_one_line_errors(synth, tmp_path, capsys):
    root, _ = synth
    preds = tmp_path / "preds"
    preds.mkdir()
    data = ["--data", str(root), "--split", "val", "--out", str(tmp_path / "r.json")]
    assert main(["evaluate", "--predictions", str(preds), *data]) == 2
    assert "synth_00000.png: no such prediction file" in capsys.readouterr().err
    Image.new("L", (10, 10)).save(preds / "synth_00000.png")
    Image.new("L", (56, 40)).save(preds / "synth_00001.png")
    assert main(["evaluate", "--predictions", str(preds), *data]) == 2
    assert "synth_00000.png: is 10×10, the truth 56×40" in capsys.readouterr().err
    Image.new("L", (56, 40), 9).save(preds / "synth_00000.png")
    assert main(["evaluate", "--predictions", str(preds), *data]) == 2
    assert "synth_00000.png: holds labels outside the classes" in capsys.readouterr().err


def test_model_and_dataset_classes_must_agree(synth, tmp_path, model_file, capsys):
    root, _ = synth
    assert main(["evaluate", "--model", model_file, "--data", str(root), "--split", "val",
                 "--out", str(tmp_path / "r.json")]) == 2  # fmt: skip
    assert "the model has 5 classes, the dataset 6" in capsys.readouterr().err


@pytest.mark.slow
def test_two_processes_under_torchrun_sum_their_matrices(synth, tmp_path):
    root, model = synth
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    args = ["evaluate", "--model", str(model), "--data", str(root), "--split", "trainval",
            "--workers", "0", "--device", "cpu"]  # fmt: skip
    subprocess.run([torchrun, "--nproc_per_node", "2", "--master_port", "29731", "-m", "fcnxs",
                    *args, "--out", str(tmp_path / "two.json")], check=True,
                   capture_output=True, env=dict(os.environ, OMP_NUM_THREADS="1"))  # fmt: skip
    assert main([*args, "--out", str(tmp_path / "one.json")]) == 0
    two = json.loads((tmp_path / "two.json").read_text())
    one = json.loads((tmp_path / "one.json").read_text())
    assert two["num_images"] == one["num_images"] == 8
    assert two["confusion_matrix"] == one["confusion_matrix"]


@pytest.fixture(scope="module")
def scoring_model(synth):
    """A model whose labels vary over the images (a fresh one's zero score layers give
    background everywhere, and every comparison of labels would hold trivially)."""
    model = fcnxs.build_model("fcn16s", num_classes=6, seed=3)
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name in ("score", "score_pool4"):
            model.get_submodule(name).weight.normal_(0, 0.05, generator=generator)
            model.get_submodule(name).bias.normal_(0, 0.5, generator=generator)
    path = synth[0].parent / "scoring.safetensors"
    fcnxs.save_model(model, path)
    return str(path)


@pytest.mark.slow
@pytest.mark.parametrize(("precision", "batch"), [("fp32", "1"), ("bf16", "1"), ("bf16", "3")])
def test_evaluate_scores_what_segment_writes(synth, scoring_model, tmp_path, precision, batch):
    """One engine: evaluate's confusion matrix is that of segment's files with the same
    options, to the pixel, in either precision and in batches."""
    root, _ = synth
    engine = ["--precision", precision, "--device", "cpu", "--batch-size", batch]
    assert main(["segment", str(root / "JPEGImages"), "--model", scoring_model, *engine,
                 "-o", str(tmp_path / "masks")]) == 0  # fmt: skip
    data = ["--data", str(root), "--split", "trainval"]
    assert main(["evaluate", "--predictions", str(tmp_path / "masks"), *data,
                 "--out", str(tmp_path / "files.json")]) == 0  # fmt: skip
    assert main(["evaluate", "--model", scoring_model, *data, *engine,
                 "--out", str(tmp_path / "model.json")]) == 0  # fmt: skip
    by_files = json.loads((tmp_path / "files.json").read_text())
    by_model = json.loads((tmp_path / "model.json").read_text())
    assert by_model["confusion_matrix"] == by_files["confusion_matrix"]
    assert len({v for row in by_model["confusion_matrix"] for v in row if v}) > 3  # not trivial
