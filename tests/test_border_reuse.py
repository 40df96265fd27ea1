"""Computing the trunk's image-independent border once per size gives the dense outputs."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

import fcnxs
from fcnxs.core import precision
from fcnxs.inference.border_reuse import MIN_SAVING, BorderReuse
from fcnxs.inference.windows import (
    Window,
    frame_plan,
    image_windows,
    patch_span,
    saved_share,
    zero_index,
    zero_rims,
    zero_shortened,
)
from fcnxs.model.architecture import TRUNK, Conv
from fcnxs.model.config import CAFFE_SEMANTICS
from helpers import narrow_fcn8s


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
            for _ in range(3):  # the border made, then read
                x = torch.randn(1, 3, height, width, generator=generator) * 60
                relative, equal = _agreement(model(x), reuse(x))
                assert relative < 1e-4 and equal > 0.999
    assert reuse.cache_info().sizes_kept >= 1


@pytest.mark.parametrize("cpu", ["this CPU", "a CPU without native bf16"])
@pytest.mark.parametrize(
    "width", ["narrow", pytest.param("VGG16", marks=pytest.mark.slow)]
)  # VGG16's width takes 150 s where bf16 is emulated (AVX2): the narrow one 1/256 of it
def test_bf16_reuse_matches_dense_bf16(fcn8s_model, cpu, width, request):
    if cpu != "this CPU":  # oneDNN refuses bf16 weights there: the plain convolution runs
        request.getfixturevalue("cpu_without_half")
    model = fcn8s_model if width == "VGG16" else narrow_fcn8s()
    reuse = BorderReuse(model)
    x = torch.randn(1, 3, 48, 48, generator=torch.Generator().manual_seed(3)) * 60
    with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16):
        dense = model(x)
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
    """One packed layout serves every input size: a new size adds its borders only, and
    the all-zero pass that makes them runs on the packed weights too."""
    reuse = BorderReuse(fcn8s_model)
    generator = torch.Generator().manual_seed(5)
    packed = []
    with torch.inference_mode():
        for side in (40, 56):
            for _ in range(2):  # the border made, then read
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
def test_every_input_window_lies_inside_the_patch_its_layer_reads(ceil):
    for height in range(26, 1200, 3):
        for width in range(26, 1200, 41):
            inputs = (Window(0, height, height), Window(0, width, width))
            for layer, (rows, cols, framed) in zip(
                TRUNK, frame_plan(height, width, ceil), strict=True
            ):
                pad = layer.pad if isinstance(layer, Conv) else 0
                for window_in, window in zip(inputs, (rows, cols), strict=True):
                    start, end = patch_span(layer, window, window_in.size)
                    inside = start <= window_in.lo + pad and window_in.hi + pad <= end
                    assert inside or not framed, (height, width, layer.name)
                inputs = (rows, cols)


def _zero_maps(trunk, height: int, width: int) -> list[torch.Tensor]:
    """The padded inputs of a one-channel trunk's layers for an all-zero image."""
    z, maps = torch.zeros(1, 1, height, width, dtype=torch.float64), []
    for layer, step in zip(TRUNK, trunk, strict=False):
        pad = layer.pad if isinstance(layer, Conv) else 0
        maps.append(torch.nn.functional.pad(z, (pad,) * 4))
        z = step(z)
    return maps


def _one_channel_trunk(ceil: bool, layers: int) -> list:
    """A trunk of VGG16's shape with one channel (random kernels and biases, tanh + 1 for
    a ReLU that never dies, in float64): a position read from the wrong place differs."""
    generator = torch.Generator().manual_seed(0)
    trunk = []
    for layer in TRUNK[:layers]:
        if isinstance(layer, Conv):
            shape = (1, 1, layer.kernel, layer.kernel)
            k = torch.randn(shape, generator=generator, dtype=torch.float64)
            b = torch.randn(1, generator=generator, dtype=torch.float64)
            trunk.append(lambda z, k=k, b=b, p=layer.pad: F.conv2d(z, k, b, padding=p).tanh() + 1)
        else:
            trunk.append(lambda z: F.max_pool2d(z, 2, 2, ceil_mode=ceil))
    return trunk


def _zero_maps(trunk, height: int, width: int) -> list[torch.Tensor]:
    """The padded inputs of a one-channel trunk's layers for an all-zero image."""
    z, maps = torch.zeros(1, 1, height, width, dtype=torch.float64), []
    for layer, step in zip(TRUNK, trunk, strict=False):
        pad = layer.pad if isinstance(layer, Conv) else 0
        maps.append(F.pad(z, (pad,) * 4))
        z = step(z)
    return maps


LAYERS_READ = 17
"""Up to conv5_3's input: the deepest layer a window runs on at these sizes."""


@pytest.mark.parametrize("ceil", [False, True])
def test_an_all_zero_image_s_rims_hold_every_row_unlike_the_middle(ceil):
    """Between the rims every row is the same, at every length. (A rim may be wider than
    what differs: a max-pool can hide a rim row behind a larger middle value.)"""
    trunk = _one_channel_trunk(ceil, LAYERS_READ)
    for length in range(26, 420, 9):
        maps = _zero_maps(trunk, length, 40)
        for i, (rims, m) in enumerate(zip(zero_rims(length, ceil), maps, strict=False)):
            rows = m[0, 0]
            assert rows.shape[0] == rims.size, (length, i)
            middle = rows[rims.top : rims.size - rims.bottom]
            assert len(middle) and torch.equal(middle, middle[:1].expand_as(middle)), (length, i)


@pytest.mark.parametrize("ceil", [False, True])
def test_an_all_zero_image_s_maps_are_read_from_shortened_ones_by_distance_to_the_edges(ceil):
    """Every position of every padded input, read from the shortened input's maps, is the
    full-size map's."""
    trunk = _one_channel_trunk(ceil, LAYERS_READ)
    shortened_somewhere = False
    for height, width in [(26, 27), (45, 61), (97, 120), (64, 33), (190, 255), (375, 500)]:
        short_h = zero_shortened(height, LAYERS_READ, ceil)
        short_w = zero_shortened(width, LAYERS_READ, ceil)
        shortened_somewhere |= (short_h, short_w) != (height, width)
        rows, cols = zero_index(height, short_h, ceil), zero_index(width, short_w, ceil)
        full, short = _zero_maps(trunk, height, width), _zero_maps(trunk, short_h, short_w)
        for i in range(LAYERS_READ):
            read = short[i][..., rows[i], :][..., cols[i]]
            assert torch.allclose(read, full[i], rtol=1e-12, atol=0), (height, width, i)
    assert shortened_somewhere


def test_borders_come_from_an_all_zero_image(fcn8s_model):
    """What a size's frames are read from is the dense network's padded inputs for an
    all-zero image (its biases made nonzero: a zero-bias network's are all zeros)."""
    model = copy.deepcopy(fcn8s_model)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.ndim == 1:
                parameter.normal_(0, 0.5, generator=torch.Generator().manual_seed(6))
    reuse = BorderReuse(model)
    x = torch.zeros(1, 3, 45, 61)
    with torch.inference_mode():
        borders = reuse._zero_maps(x)
        z, dense = x, []
        for layer in TRUNK[: len(borders)]:
            pad = layer.pad if isinstance(layer, Conv) else 0
            dense.append(F.pad(z, (pad,) * 4))
            module = model.get_submodule(layer.name)
            z = torch.relu(module(z)) if isinstance(layer, Conv) else module(z)
    assert sum(b is not None for b in borders) > 10
    for border, reference in zip(borders, dense, strict=True):
        if border is not None:
            read = border.read(slice(None), slice(None))
            assert (read - reference).abs().max() <= 1e-5 * reference.abs().max()
    assert reuse.cache_info().sizes_kept == 0  # made, not yet kept: the call keeps it


def test_only_single_images_on_a_cpu_run_in_windows(fcn8s_model):
    """A batch runs densely, keeping nothing, and so does a GPU (the rule reads only the
    device's type: a meta tensor stands in for a CUDA one); one image on the CPU keeps its
    size's borders."""
    from fcnxs.inference.border_reuse import _worth_windows

    x = torch.randn(2, 3, 96, 128)
    forward = BorderReuse(fcn8s_model)
    with torch.inference_mode():
        assert torch.allclose(forward(x), fcn8s_model(x), atol=1e-4)
        assert forward.cache_info().sizes_kept == 0
        forward(x[:1])
    assert forward.cache_info().sizes_kept == 1
    assert _worth_windows(x[:1], ceil=False)
    assert not _worth_windows(torch.empty(1, 3, 96, 128, device="meta"), ceil=False)
