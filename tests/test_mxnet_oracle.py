"""fcnxs against MXNet itself: same checkpoint, same image, same logits.

Needs a Python with MXNet 1.9.1, named by FCNXS_MXNET_PYTHON (`make mxnet-venv` creates
one and `.ci/run` uses it). The format tests above cover the same code without MXNet.
"""

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fcnxs.cli import main

MXNET_PYTHON = os.environ.get("FCNXS_MXNET_PYTHON")
TOOL = Path(__file__).parent.parent / "tools" / "mxnet_reference.py"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.mxnet,
    pytest.mark.skipif(
        not MXNET_PYTHON, reason="FCNXS_MXNET_PYTHON (a Python with MXNet 1.9.1) is not set"
    ),
]


@pytest.mark.parametrize(
    "arch,style,pooling",
    [
        ("fcn8s", "2016", "valid"),
        ("fcn32s", "2016", "valid"),
        ("fcn16s", "2015", "valid"),
        ("fcn8s", "2016", "full"),
    ],
)
def test_logits_match_mxnet(tmp_path, arch, style, pooling):
    rng = np.random.default_rng(5)
    y, x = np.mgrid[0:187, 0:251]
    smooth = np.stack([(x * 0.7 + y * 0.3) % 256, (y * 0.9) % 256, (x * y * 0.01) % 256], -1)
    image = np.clip(smooth + rng.normal(0, 15, smooth.shape), 0, 255).astype(np.uint8)
    Image.fromarray(image).save(tmp_path / "photo.png")
    env = dict(os.environ, OMP_NUM_THREADS="2")
    subprocess.run(
        [MXNET_PYTHON, str(TOOL), "--arch", arch, "--style", style, "--pooling", pooling,
         "--classes", "5", "--image", str(tmp_path / "photo.png"), "--out", str(tmp_path)],
        check=True, env=env, capture_output=True,
    )  # fmt: skip
    argv = ["segment", str(tmp_path / "photo.png"), "--model", str(tmp_path / "FCN"),
            "--epoch", "1", "-o", str(tmp_path / "ours"), "--logits"]  # fmt: skip
    assert main(argv) == 0
    theirs = np.load(tmp_path / "mxnet_logits.npy")
    ours = np.load(tmp_path / "ours" / "photo.npy")
    assert ours.shape == theirs.shape == (5, 187, 251)
    assert np.abs(ours - theirs).max() <= 1e-4 * np.abs(theirs).max()
    assert (ours.argmax(0) == theirs.argmax(0)).mean() > 0.999
