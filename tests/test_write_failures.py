"""Writes that fail: a full disk (a file-size limit, as ``ulimit -f`` sets, gives the same
errors), a reader that goes away. Each is one line and its exit status, and no file is
left half-written."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fcnxs.data.synth import write_synthetic_voc

pytestmark = pytest.mark.slow

FCNXS = [sys.executable, "-m", "fcnxs"]


def run_limited(argv: list, limit: int | None = None, **kwargs) -> subprocess.CompletedProcess:
    """``fcnxs ARGV`` in a child whose files may not grow past ``limit`` bytes."""

    def cap() -> None:
        if limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run(
        [*FCNXS, *map(str, argv)], capture_output=True, text=True, preexec_fn=cap, env=env,
        **kwargs,
    )  # fmt: skip


def assert_clean_errors(stderr: str) -> list[str]:
    lines = stderr.strip().splitlines()
    assert "Traceback" not in stderr and lines, stderr
    errors = [line for line in lines if line.startswith("fcnxs: error: ")]
    assert errors, stderr
    return errors


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


@pytest.fixture
def photo(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    path = tmp_path / "photo.png"
    Image.fromarray(rng.integers(0, 256, (75, 100, 3), dtype=np.uint8)).save(path)
    return path


def test_an_overlay_that_does_not_fit_is_an_error_not_a_truncated_jpeg(tmp_path, photo,
                                                                       model_file):  # fmt: skip
    out = tmp_path / "out"
    done = run_limited(["segment", photo, "--model", model_file, "-o", out, "--overlay"])
    assert done.returncode == 0, done.stderr
    size = (out / "photo_overlay.jpg").stat().st_size
    assert (out / "photo.png").stat().st_size < 4096 < size  # the mask fits, the overlay not
    out = tmp_path / "full"
    done = run_limited(["segment", photo, "--model", model_file, "-o", out, "--overlay"], 4096)
    assert done.returncode == 2
    errors = assert_clean_errors(done.stderr)
    assert "photo_overlay.jpg: could not write (File too large)" in errors[0]
    assert leftovers(out) == []  # neither a truncated overlay nor the mask without it


def test_streamed_scores_on_a_full_disk_stop_the_run_with_one_line(tmp_path, photo, model_file):
    second = tmp_path / "second.png"
    Image.open(photo).save(second)
    out = tmp_path / "out"
    done = run_limited(["segment", photo, second, "--model", model_file, "-o", out, "--logits"],
                       64 << 10)  # fmt: skip
    assert done.returncode == 2
    errors = assert_clean_errors(done.stderr)
    assert "photo.npy: could not write (File too large)" in errors[0]
    assert "stopped: no space for outputs" in errors[-1]
    assert "segment: 0 of 2 images written" in done.stdout
    assert leftovers(out) == []


def test_a_checkpoint_that_does_not_fit_stops_training_and_leaves_no_orphans(tmp_path):
    """Adam's checkpoint (~1.1 GB) does not fit where the weights (~0.54 GB) do."""
    data = write_synthetic_voc(tmp_path / "ds", 2, height=32, width=32, val_fraction=0)
    run = tmp_path / "run"
    done = run_limited(["train", "--arch", "fcn32s", "--data", data, "--split", "train",
                        "--out", run, "--optimizer", "adam", "--workers", "0"],
                       800 << 20)  # fmt: skip
    assert done.returncode == 1, done.stderr
    errors = assert_clean_errors(done.stderr)
    assert len(errors) == 1
    assert "checkpoint.pt: could not write (File too large)" in errors[0]
    assert "--resume" in errors[0]
    assert leftovers(run) == ["run.json"]  # no weights file nothing refers to


def test_a_reader_that_goes_away_ends_the_command_quietly(model_file):
    process = subprocess.Popen([*FCNXS, "info", model_file], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)  # fmt: skip
    process.stdout.close()  # as `| head` does once it has what it wants
    stderr = process.stderr.read().decode()
    assert process.wait() == 141
    assert stderr == ""
