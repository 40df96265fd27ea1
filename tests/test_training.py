"""Training on the synthetic dataset: the checkpoint set, learning, resuming after kill -9,
two processes under torchrun, divergence, and the three-stage pipeline."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import fcnxs
from fcnxs.cli import main
from fcnxs.core.distributed import Context
from fcnxs.core.errors import TrainingFailed
from fcnxs.data.synth import write_synthetic_voc
from fcnxs.training.checkpoints import load_checkpoint
from fcnxs.training.loop import REFERENCE_STEPS, Position, check_loss

pytestmark = pytest.mark.slow

FCNXS = [sys.executable, "-m", "fcnxs"]
TORCHRUN = os.path.join(os.path.dirname(sys.executable), "torchrun")


@pytest.fixture(scope="module")
def four(tmp_path_factory):
    """Four 64×64 images, a list file naming each ten times (a 40-sample epoch) and one
    naming the first two (a two-step epoch, for tests that save at every step)."""
    root = write_synthetic_voc(tmp_path_factory.mktemp("train") / "voc", 4, height=64, width=64,
                               val_fraction=0, seed=3)  # fmt: skip
    ids = (root / "ImageSets" / "Segmentation" / "train.txt").read_text().split()
    lines = [f"{i}\tJPEGImages/{s}.jpg\tSegmentationClass/{s}.png" for i, s in enumerate(ids * 10)]
    (root / "repeat.lst").write_text("\n".join(lines) + "\n")
    (root / "two.lst").write_text("\n".join(lines[:2]) + "\n")
    return root


def _records(run_dir, kind):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def test_a_short_run_learns_and_overfits_four_images(four, tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["train", "--arch", "fcn8s", "--data", str(four), "--list", "repeat.lst",
            "--val-split", "train", "--out", str(run), "--epochs", "3", "--batch-size", "4",
            "--optimizer", "adam", "--lr", "2e-4", "--weight-decay", "0", "--dropout", "0",
            "--workers", "0", "--log-every", "1"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "Epoch[0] Batch [1]\tSpeed: " in out and "samples/sec\tTrain-accuracy=" in out
    names = {p.name for p in run.iterdir()}
    assert {"checkpoint.pt", "model.safetensors", "best.safetensors", "run.json",
            "metrics.jsonl"} <= names  # fmt: skip
    assert 1 <= len([n for n in names if n.startswith("weights-")]) <= 2  # latest and best
    steps = _records(run, "train")
    assert len(steps) == 30 and steps[-1]["loss"] < 0.2 * steps[0]["loss"]
    epochs = _records(run, "epoch")
    assert [e["epoch"] for e in epochs] == [0, 1, 2]
    assert epochs[-1]["val_pixel_accuracy"] >= 0.95
    best = max(epochs, key=lambda e: e["val_mean_iou"])
    model = fcnxs.load_model(run / "best.safetensors")
    assert model.config.class_names[1] == "disc"
    report = json.loads((run / "run.json").read_text())
    assert report["arch"] == "fcn8s" and report["batch_size"] == 4
    assert best["val_mean_iou"] > 0.5


def _train_argv(root, run, extra=()):
    return ["train", "--arch", "fcn16s", "--data", str(root), "--list", "two.lst",
            "--out", str(run), "--epochs", "2", "--lr", "1e-4", "--workers", "0",
            "--save-every", "1", "--seed", "5", *extra]  # fmt: skip


def _weights(run):
    return fcnxs.load_model(run / "model.safetensors").state_dict()


def test_resume_after_kill_9_ends_with_the_uninterrupted_weights(four, tmp_path):
    """Killed after its first checkpoint, the run resumed by its own command line plus
    ``--resume`` ends with the weights of a run never interrupted."""
    straight = tmp_path / "straight"
    assert main(_train_argv(four, straight)) == 0

    killed = tmp_path / "killed"
    process = subprocess.Popen([*FCNXS, *_train_argv(four, killed)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.time() + 120
    while not (killed / "checkpoint.pt").exists():
        assert process.poll() is None and time.time() < deadline
        time.sleep(0.05)
    time.sleep(1.5)  # into the next step or the middle of the next save
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = subprocess.run(
        [*FCNXS, *_train_argv(four, killed), "--resume", str(killed)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "resumed at epoch" in done.stdout + done.stderr
    assert not list(killed.glob(".*.tmp"))
    a, b = _weights(straight), _weights(killed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    steps = lambda run: [(r["global_step"], r["loss"]) for r in _records(run, "train")]  # noqa: E731
    assert _records(killed, "epoch")[-1]["loss"] == _records(straight, "epoch")[-1]["loss"]
    assert len(steps(killed)) == len(steps(straight))


def test_two_processes_match_one_with_the_same_global_batch(four, tmp_path):
    common = ["--arch", "fcn8s", "--data", str(four), "--split", "train", "--epochs", "1",
              "--lr", "1e-3", "--dropout", "0", "--workers", "0", "--seed", "1",
              "--device", "cpu"]  # fmt: skip
    two = subprocess.run([TORCHRUN, "--nproc_per_node", "2", "--master_port", "29733", "-m",
                          "fcnxs", "train", *common, "--batch-size", "1",
                          "--out", str(tmp_path / "two")], capture_output=True, text=True,
                         env=dict(os.environ, OMP_NUM_THREADS="1"))  # fmt: skip
    assert two.returncode == 0, two.stderr[-2000:]
    digests = {line.split()[-1] for line in two.stdout.splitlines() if "final weights" in line}
    assert len(digests) == 1, two.stdout  # both replicas hold the same weights
    assert main(["train", *common, "--batch-size", "2", "--out", str(tmp_path / "one")]) == 0
    a, b = _weights(tmp_path / "two"), _weights(tmp_path / "one")
    moved = fcnxs.build_model("fcn8s", num_classes=6, seed=1).state_dict()
    assert not torch.equal(a["score.weight"], moved["score.weight"])  # training changed them
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-6)


def test_a_non_finite_loss_stops_the_run_and_keeps_the_last_checkpoint(four, tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["train", "--arch", "fcn32s", "--data", str(four), "--split", "train",
            "--out", str(run), "--lr", "1e8", "--loss-reduction", "sum", "--workers", "0",
            "--save-every", "1"]  # fmt: skip
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "non-finite loss" in err and err.strip().count("\n") == 0
    model, state = load_checkpoint(run)
    assert state["position"]["global_step"] >= 1
    assert all(torch.isfinite(t).all() for t in model.state_dict().values())


def test_pipeline_runs_the_three_stages_each_from_the_previous_best(tmp_path, capsys):
    root = write_synthetic_voc(tmp_path / "voc", 3, height=40, width=48, val_fraction=0.34)
    out = tmp_path / "stages"
    argv = ["pipeline", "--data", str(root), "--split", "train", "--val-split", "val",
            "--out", str(out), "--epochs", "1", "--lr", "1e-4", "--workers", "0"]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    for arch in ("fcn32s", "fcn16s", "fcn8s"):
        assert (out / arch / "best.safetensors").is_file()
        assert f"== {arch}: starting, 1 epoch at" in printed
    settings = json.loads((out / "fcn8s" / "run.json").read_text())
    assert settings["init"] == str(out / "fcn16s" / "best.safetensors")
    assert "copied" in printed and "score_pool3.weight" in printed
    assert fcnxs.load_model(out / "fcn8s" / "best.safetensors").config.arch == "fcn8s"
    assert main(argv) == 0  # finished stages are not trained again
    assert "fcn32s: done, skipped" in capsys.readouterr().out
    # A changed recipe is refused, not silently ignored; more epochs extend the last stage.
    assert main([*argv[:-4], "--lr", "1e-3", "--workers", "0"]) == 2
    assert "run.json records 0.0001, not 0.001" in capsys.readouterr().err
    assert main([*argv[:-5], "1", "1", "2", "--lr", "1e-4", "--workers", "0"]) == 0
    assert json.loads((out / "fcn8s" / "run.json").read_text())["epochs"] == 2
    assert [e["epoch"] for e in _records(out / "fcn8s", "epoch")] == [0, 1]


def test_overwrite_starts_a_finished_run_again(four, tmp_path, capsys):
    run = tmp_path / "run"
    argv = _train_argv(four, run, ["--epochs", "1"])
    assert main(argv) == 0
    first = (run / "metrics.jsonl").read_text()
    assert main(argv) == 2
    assert "holds a training run" in capsys.readouterr().err
    assert main([*argv, "--overwrite"]) == 0
    assert (run / "metrics.jsonl").read_text() == first  # the same run again, not appended
    assert len(list(run.glob("weights-*.safetensors"))) == 1


def test_train_usage_errors(tmp_path, capsys):
    assert main(["train", "--data", str(tmp_path), "--split", "x"]) == 2
    assert "train needs --arch and --out" in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "run.json: no run settings" in err and err.count("run.json") == 1  # named once
    (tmp_path / "run.json").write_text("[1, 2]")
    assert main(["train", "--resume", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "run.json: not a run settings file" in err and err.count("run.json") == 1


def test_a_diverging_loss_stops_the_run_with_the_likely_fix(tmp_path):
    position, context = Position(), Context()
    for _ in range(REFERENCE_STEPS):  # the run's early level: 2.0
        assert check_loss(torch.tensor(2.0), position, context, tmp_path) == 2.0
    assert check_loss(torch.tensor(150.0), position, context, tmp_path) == 150.0  # 75×: on
    with pytest.raises(TrainingFailed) as info:
        check_loss(torch.tensor(250.0), position, context, tmp_path)
    message = str(info.value)
    assert "the loss diverged at epoch 0 batch 0: 250" in message and "\n" not in message
    assert "lower lr, or train in fp32 (precision)" in message
    assert info.value.exit_status == 1
    with pytest.raises(TrainingFailed, match="non-finite loss"):
        check_loss(torch.tensor(float("nan")), position, context, tmp_path)


@pytest.mark.parametrize(
    "device",
    [
        "cpu",
        pytest.param(
            "cuda",
            marks=[
                pytest.mark.cuda,
                pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here"),
            ],
        ),
    ],
)
def test_an_extended_run_equals_one_trained_as_long_with_dropout(four, tmp_path, device):
    """Dropout draws from the device's generator: a resume restores it (on CUDA too, whose
    summing kernels must then add in the same order). The warm-up (one step an epoch here)
    goes on from the step the run stopped at."""
    straight, extended = tmp_path / "straight", tmp_path / "extended"
    common = ["--device", device, "--dropout", "0.5", "--batch-size", "2", "--warmup", "3",
              "--log-every", "1"]  # fmt: skip
    rates = lambda run: [r["lr"] for r in _records(run, "train")]  # noqa: E731
    assert main(_train_argv(four, straight, common)) == 0
    assert main(_train_argv(four, extended, [*common, "--epochs", "1"])) == 0
    assert rates(extended) == pytest.approx([1e-4 / 3])  # step 0 of 3
    assert main(["train", "--resume", str(extended), "--epochs", "2"]) == 0
    assert rates(extended) == rates(straight) == pytest.approx([1e-4 / 3, 1e-4 * 2 / 3])
    a, b = _weights(straight), _weights(extended)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((extended / "run.json").read_text())["epochs"] == 2
