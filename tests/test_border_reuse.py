"""Computing the trunk's image-independent border once per size gives the dense outputs."""

from __future__ import annotations

import copy

import pytest
import torch

import fcnxs
from fcnxs.core import precision
from fcnxs.inference import border_reuse
from fcnxs.inference.border_reuse import (
    MIN_SAVING,
    BorderReuse,
    Window,
    image_windows,
    saved_share,
    tile_plan,
    tile_span,
)
from fcnxs.model.architecture import TRUNK, Conv
from fcnxs.model.config import CAFFE_SEMANTICS


def _agreement(reference: torch.Tensor, got: torch.Tensor) -> tuple[float, float]:
    reference, got = reference.float(), got.float()
    relative = float((reference - got).abs().max() / reference.abs().max())
    equal = float((reference.argmax(1) == got.argmax(1)).float().mean())
    return relative, equal


def test_windows_at_375x500_are_those_of_the_design_notes():
    rows = dict(zip([layer.name for layer in TRUNK], image_windows(375), strict=True))
    # conv1_1 (pad 100) reads padded rows y..y+2: the image (rows 100..474) reaches 98..474.
    assert (rows["conv1_1"].lo, rows["conv1_1"].hi, rows["conv1_1"].size) == (98, 475, 573)
    assert rows["pool5"].size == 17 and rows["fc6"].full and rows["fc7"].full
    assert 0.33 < saved_share(375, 500) < 0.37  # DESIGN §6: about 35 %
    assert saved_share(2000, 2000) < MIN_SAVING  # large inputs run densely


def test_outside_the_windows_every_image_gives_the_same_values(fcn8s_model):
    maps = {}

    def keep(name):
        return lambda module, args, out: maps.setdefault(name, []).append(out.clone())

    layers = [layer.name for layer in TRUNK]
    hooks = [fcn8s_model.get_submodule(name).register_forward_hook(keep(name)) for name in layers]
    try:
        with torch.inference_mode():
            for seed in (1, 2):
                generator = torch.Generator().manual_seed(seed)
                fcn8s_model(torch.randn(1, 3, 40, 57, generator=generator))
    finally:
        for hook in hooks:
            hook.remove()
    windows = zip(layers, image_windows(40), image_windows(57), strict=True)
    for name, rows, cols in windows:
        first, second = (torch.relu(m) for m in maps[name])
        outside = torch.ones(first.shape[-2:], dtype=torch.bool)
        outside[rows.lo : rows.hi, cols.lo : cols.hi] = False
        assert torch.equal(first[..., outside], second[..., outside]), name
        assert not torch.equal(first, second), name


@pytest.mark.parametrize("semantics", ["mxnet", "caffe"])
@pytest.mark.slow
def test_reuse_gives_the_dense_outputs_call_after_call(fcn8s_model, semantics):
    model = fcn8s_model
    if semantics == "caffe":
        model = fcnxs.FCN(model.config.replace(semantics=CAFFE_SEMANTICS)).eval()
        model.load_state_dict(fcn8s_model.state_dict())
    model = copy.deepcopy(model).to(memory_format=torch.channels_last)
    reuse = BorderReuse(model)
    generator = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        for height, width in [(45, 61), (20, 9)]:  # 20×9 is padded to the network's minimum
            for _ in range(4):  # dense, dense and kept, then windowed
                x = torch.randn(1, 3, height, width, generator=generator) * 60
                relative, equal = _agreement(model(x), reuse(x))
                assert relative < 1e-4 and equal > 0.999
    assert reuse.cache_info().sizes_kept >= 1


@pytest.mark.parametrize("cpu", ["this CPU", "a CPU without native bf16"])
def test_bf16_reuse_matches_dense_bf16(fcn8s_model, cpu, request):
    if cpu != "this CPU":  # oneDNN refuses bf16 weights there: the plain convolution runs
        request.getfixturevalue("cpu_without_half")
    reuse = BorderReuse(fcn8s_model)
    x = torch.randn(1, 3, 48, 48, generator=torch.Generator().manual_seed(3)) * 60
    with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16):
        dense = fcn8s_model(x)
        for _ in range(3):
            got = reuse(x)
    relative, equal = _agreement(dense, got)
    assert got.dtype == dense.dtype and relative < 2e-2 and equal > 0.98
    assert (reuse.cache_info().packed_bytes > 0) == precision.native_on_cpu(torch.bfloat16)


@pytest.mark.slow
def test_changed_weights_are_never_served_from_what_was_kept():
    model = fcnxs.build_model("fcn8s", num_classes=3, seed=0).eval()
    reuse = BorderReuse(model)
    x = torch.randn(1, 3, 40, 40, generator=torch.Generator().manual_seed(4)) * 60
    with torch.inference_mode():
        for _ in range(3):
            reuse(x)
    with torch.no_grad():
        model.conv1_2.bias.add_(0.5)
        model.score.weight.normal_(0, 0.05)
    with torch.inference_mode():
        relative, _ = _agreement(model(x), reuse(x))
    assert relative < 1e-4


@pytest.mark.slow
def test_weights_are_packed_once_for_every_size_and_pass(fcn8s_model):
    """One packed layout serves every input size: a new size adds its borders only, and its
    dense passes run on the packed weights too, with the dense network's outputs."""
    reuse = BorderReuse(fcn8s_model)
    generator = torch.Generator().manual_seed(5)
    packed = []
    with torch.inference_mode():
        for side in (40, 56):
            for _ in range(3):  # dense, dense and kept, then windowed
                x = torch.randn(1, 3, side, side, generator=generator) * 60
                relative, equal = _agreement(fcn8s_model(x), reuse(x))
                assert relative < 1e-4 and equal > 0.999
                packed.append(reuse.cache_info().packed_bytes)
    assert packed[0] > 0 or not precision.native_on_cpu(torch.float32)
    assert len(set(packed)) == 1  # packed on the first call, never again
    assert reuse.cache_info().sizes_kept == 2


@pytest.mark.slow
def test_the_memory_budget_keeps_only_the_newest_size(fcn8s_model):
    reuse = BorderReuse(fcn8s_model, max_bytes=1)
    with torch.inference_mode():
        for side in (40, 44):
            for _ in range(3):
                reuse(torch.zeros(1, 3, side, side))
    assert reuse.cache_info().sizes_kept == 1


@pytest.mark.parametrize("ceil", [False, True])
def test_every_input_window_lies_inside_the_tile_its_layer_reads(ceil):
    for height in range(26, 1200, 3):
        for width in range(26, 1200, 41):
            inputs = (Window(0, height, height), Window(0, width, width))
            for layer, (rows, cols, tiled) in zip(
                TRUNK, tile_plan(height, width, ceil), strict=True
            ):
                pad = layer.pad if isinstance(layer, Conv) else 0
                for window_in, window in zip(inputs, (rows, cols), strict=True):
                    start, end = tile_span(layer, window, window_in.size)
                    inside = start <= window_in.lo + pad and window_in.hi + pad <= end
                    assert inside or not tiled, (height, width, layer.name)
                inputs = (rows, cols)


def test_sizes_seen_once_are_bounded(fcn8s_model, monkeypatch):
    monkeypatch.setattr(border_reuse, "MAX_SEEN_SIZES", 2)
    reuse = BorderReuse(fcn8s_model)
    with torch.inference_mode():
        for side in (40, 41, 42, 43, 44):
            reuse(torch.zeros(1, 3, side, side))
    assert reuse.cache_info().sizes_seen <= 2
