"""The GPU engine against the CPU's: the same labels, batched or not, within bounded memory.

Every test here needs an NVIDIA GPU; without one each skips, saying so. (Training's exact
resume on CUDA is in test_training.py.)"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from PIL import Image

import fcnxs
from helpers import random_image

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here"),
]


@pytest.fixture(scope="module")
def on_gpu(fcn8s_model) -> fcnxs.FCN:
    """The shared random FCN-8s, copied to the GPU (the CPU one stays where it is)."""
    return copy.deepcopy(fcn8s_model).cuda()


def _agreement(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape and a.dtype == b.dtype == np.uint8
    return float((a == b).mean())


def test_gpu_fp32_labels_are_the_cpus(fcn8s_model, on_gpu, rng):
    cpu = fcnxs.Segmenter(fcn8s_model, tile=None)
    gpu = fcnxs.Segmenter(on_gpu, tile=None)
    for height, width in ((375, 500), (97, 120), (500, 333)):
        image = random_image(rng, height, width)
        assert _agreement(gpu.labels(image), cpu.labels(image)) >= 0.999
    assert gpu.cache_info().sizes_kept == 0  # border reuse is for CPUs: a GPU runs densely


def test_batched_labels_are_one_at_a_times(on_gpu, rng):
    """cuDNN picks its algorithms by batch size, so sums are added in other orders: near-ties
    of this random model may flip (0.015 % of pixels did on an H100), nothing more."""
    segmenter = fcnxs.Segmenter(on_gpu, tile=None)
    images = [random_image(rng, 200, 260) for _ in range(5)]
    batched = segmenter.labels_batch(images)
    for image, labels in zip(images, batched, strict=True):
        assert _agreement(labels, segmenter.labels(image)) >= 0.999


@pytest.mark.parametrize("name", ["tf32", "bf16"])
def test_faster_precisions_mostly_agree_with_fp32_and_leave_no_setting_changed(on_gpu, rng, name):
    image = random_image(rng, 375, 500)
    flags = lambda: (torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark)  # noqa: E731
    before = flags()
    fp32 = fcnxs.Segmenter(on_gpu, tile=None).labels(image)
    faster = fcnxs.Segmenter(on_gpu, precision=name, tile=None).labels(image)
    assert _agreement(faster, fp32) >= 0.95
    assert flags() == before


def test_the_first_call_of_a_size_stays_within_4_gib(on_gpu, rng):
    """cuDNN's autotuner may try algorithms with workspaces of tens of GiB; a size seen
    for the first time must not take more than a few."""
    image = random_image(rng, 371, 497)  # a size no other test runs
    segmenter = fcnxs.Segmenter(on_gpu, tile=None)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    segmenter.labels(image)
    assert torch.cuda.max_memory_allocated() - before <= 4 * 2**30


def test_segment_command_on_gpu_writes_the_cpus_masks(cli, tmp_path, model_file, rng):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i, (height, width) in enumerate(((375, 500),) * 3 + ((120, 97), (375, 500))):
        Image.fromarray(random_image(rng, height, width)).save(photos / f"{i}.png")
    for device in ("cpu", "cuda"):
        status, _, err = cli("segment", photos, "--model", model_file, "-o", tmp_path / device,
                             "--device", device)  # fmt: skip
        assert status == 0, err
    for i in range(5):
        cpu = np.asarray(Image.open(tmp_path / "cpu" / f"{i}.png"))
        gpu = np.asarray(Image.open(tmp_path / "cuda" / f"{i}.png"))
        assert _agreement(gpu, cpu) >= 0.999
