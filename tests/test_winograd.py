"""Winograd F(4×4, 3×3) and F(2×2, 7×7) and the packed convolutions give the direct
convolution's outputs."""

from __future__ import annotations

import dataclasses
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fcnxs.core import torch_internals
from fcnxs.inference import prepacked, winograd
from fcnxs.inference.prepacked import PackedConvs
from fcnxs.inference.winograd import F2x2_7x7, F4x4_3x3, Winograd, transform_for


def _conv(in_channels: int, out_channels: int, kernel: int = 3, seed: int = 0) -> nn.Conv2d:
    torch.manual_seed(seed)
    conv = nn.Conv2d(in_channels, out_channels, kernel)
    with torch.no_grad():
        conv.weight.normal_(0, (2 / (kernel * kernel * in_channels)) ** 0.5)
        conv.bias.normal_(0, 0.1)
    return conv


def _direct(conv: nn.Conv2d, x: torch.Tensor, padding: int) -> torch.Tensor:
    """The reference, in float64."""
    weight, bias = conv.weight.double(), conv.bias.double()
    return F.relu(F.conv2d(x.double(), weight, bias, padding=padding))


needs_onednn = pytest.mark.skipif(
    not torch_internals.packed_inner_products(torch.float32),
    reason="oneDNN's inner product is not usable in this PyTorch build",
)


def test_the_matrices_of_f4x4_3x3_are_those_published():
    """Built from the points 0, ±1, ±2 and ∞, they are Lavin & Gray's (2016, and wincnn's)."""
    bt, gg, at = F4x4_3x3.matrices
    published_bt = [[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
                    [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]]  # fmt: skip
    published_g = [[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
                   [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]]  # fmt: skip
    published_at = [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0],
                    [0, 1, -1, 8, -8, 1]]  # fmt: skip
    g = torch.tensor(published_g, dtype=torch.float64)
    assert torch.equal(bt, torch.tensor(published_bt, dtype=torch.float32))
    assert torch.equal(at, torch.tensor(published_at, dtype=torch.float32))
    assert torch.equal(gg, torch.kron(g, g).float())


def test_the_one_dimensional_transforms_compute_a_correlation_exactly():
    """Y = Aᵀ[(G g) ⊙ (Bᵀ d)] is the correlation of d with g, in float64 to rounding."""
    generator = torch.Generator().manual_seed(0)
    for transform in (F4x4_3x3, F2x2_7x7):
        bt, _, at = (m.double() for m in transform.matrices)
        points = torch.tensor([*transform.points], dtype=torch.float64)
        g_rows = torch.vander(points, transform.kernel, increasing=True)
        scale = torch.stack([torch.prod(p - points[points != p]) for p in points])
        g = torch.cat([g_rows / scale[:, None], torch.eye(transform.kernel)[-1:].double()])
        d = torch.randn(transform.tile, generator=generator, dtype=torch.float64)
        f = torch.randn(transform.kernel, generator=generator, dtype=torch.float64)
        expected = torch.stack([d[i : i + transform.kernel] @ f for i in range(transform.out)])
        torch.testing.assert_close(at @ ((g @ f) * (bt @ d)), expected, rtol=1e-12, atol=1e-12)


def _transformed(conv: nn.Conv2d) -> Winograd:
    return Winograd(conv, F4x4_3x3 if conv.kernel_size == (3, 3) else F2x2_7x7)


@pytest.mark.parametrize(
    ("batch", "channels", "height", "width", "padding", "kernel"),
    [
        (1, 256, 37, 50, 1, 3),  # output sizes no multiple of 4: the last tiles are cropped
        (2, 128, 13, 7, 0, 3),  # a batch, unpadded (a tile of border reuse)
        (1, 256, 3, 3, 0, 3),  # one output position
        (1, 64, 8, 8, 1, 3),
        pytest.param(1, 512, 18, 22, 0, 7, marks=needs_onednn),  # fc6 at 375×500
        pytest.param(2, 64, 10, 7, 0, 7, marks=needs_onednn),  # odd sizes, a batch
        pytest.param(1, 64, 7, 7, 0, 7, marks=needs_onednn),  # one output position
        pytest.param(1, 64, 9, 12, 3, 7, marks=needs_onednn),  # padded
    ],
)
def test_winograd_is_the_direct_convolution(batch, channels, height, width, padding, kernel):
    conv = _conv(channels, 256, kernel)
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(batch, channels, height, width, generator=generator).relu()
    x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        got = _transformed(conv).relu_conv(x, padding)
        expected = _direct(conv, x, padding)
    assert got.shape == expected.shape and got.dtype == torch.float32
    assert got.is_contiguous(memory_format=torch.channels_last)
    assert (got - expected).abs().max() <= 3e-5 * expected.abs().max()
    assert (got >= 0).all()


@pytest.mark.parametrize(
    "transform", [F4x4_3x3, pytest.param(F2x2_7x7, marks=needs_onednn)], ids=["3x3", "7x7"]
)
def test_bands_of_tile_rows_give_the_whole_map(transform):
    """A large input is transformed a band of tile rows at a time (here one row per band,
    over a batch of two): the same outputs as in one band."""
    conv = _conv(128, 256, transform.kernel)
    x = torch.randn(2, 128, 14, 19, generator=torch.Generator().manual_seed(4)).relu()
    x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        whole = Winograd(conv, transform).relu_conv(x, 1)
        one_row = dataclasses.replace(transform, band_bytes=1)
        banded = Winograd(conv, one_row).relu_conv(x, 1)
        expected = _direct(conv, x, 1)
    assert (banded - whole).abs().max() <= 1e-6 * whole.abs().max()  # rounding apart
    assert (banded - expected).abs().max() <= 3e-5 * expected.abs().max()


def test_bf16_products_round_worse_than_bf16_and_are_not_used():
    """The products in bf16 (what `benchmarks/winograd.py` measures): bf16 out, within a
    few hundredths, where oneDNN's bf16 is within a few thousandths: not used."""
    conv = _conv(512, 512)
    x = torch.randn(1, 512, 12, 17, generator=torch.Generator().manual_seed(3)).relu()
    x = x.bfloat16().contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        transformed = Winograd(conv, F4x4_3x3, torch.bfloat16)
        got = transformed.relu_conv(x, 1)
        expected = _direct(conv, x, 1)
    assert transformed.u.dtype == torch.bfloat16 and got.dtype == torch.bfloat16
    assert (got.double() - expected).abs().max() <= 0.1 * expected.abs().max()
    assert transform_for(conv, x) is None


def test_winograd_takes_wide_plain_3x3_layers_and_fc6_in_fp32():
    x = torch.zeros(1, 8, 8, 8)
    assert transform_for(_conv(128, 256), x) is F4x4_3x3
    assert transform_for(nn.Conv2d(512, 4096, 7), x) is F2x2_7x7  # fc6
    assert transform_for(_conv(64, 128), x) is None  # narrow: oneDNN is faster (design §6)
    assert transform_for(_conv(128, 256, kernel=7), x) is None
    assert transform_for(_conv(128, 256, kernel=5), x) is None
    assert transform_for(nn.Conv2d(128, 256, 3, stride=2), x) is None
    assert transform_for(nn.Conv2d(512, 4096, 7), x.bfloat16()) is None
    assert transform_for(_conv(512, 512), x.half()) is None


def test_without_onednns_inner_product_fc6_and_fc7_are_left_to_the_direct_convolution(
    monkeypatch,
):
    """A PyTorch build without it keeps fc6 and 1×1 layers on oneDNN's convolution, not on
    a missing op."""
    x = torch.zeros(1, 8, 8, 8)
    monkeypatch.setitem(
        torch_internals._verdicts, (torch_internals.PACKED_INNER_PRODUCT.name, x.dtype), False
    )
    assert transform_for(nn.Conv2d(512, 4096, 7), x) is None
    assert transform_for(_conv(128, 256), x) is F4x4_3x3  # MKL's products need no oneDNN
    assert isinstance(prepacked._pack(nn.Conv2d(8, 16, 1), x, 0), prepacked.OneDNN)


@needs_onednn
def test_packed_convolutions_pick_their_algorithm_and_slice_large_weights(monkeypatch):
    """A wide 3×3 layer and fc6's shape run by Winograd, a narrow one on oneDNN, a 1×1 one
    by oneDNN's inner product, a weight over the slice size is packed in slices of output
    channels, and filters are transformed a few tile positions at a time: all give the
    direct convolution."""
    monkeypatch.setattr(prepacked, "SLICE_BYTES", 20_000)  # 128→96 3×3: 4.6 KB per channel
    monkeypatch.setattr(winograd, "_PACK_BYTES", 7 << 18)  # 3 (7×7) or 14 (3×3) at once, and a rest
    packed = PackedConvs()
    x = torch.randn(1, 128, 20, 23, generator=torch.Generator().manual_seed(2)).relu()
    with torch.inference_mode():
        for conv in (_conv(128, 256), _conv(128, 96), _conv(128, 1024, 7), _conv(128, 64, 1)):
            for padding in (0, 1):
                got = packed.relu_conv(conv, x, padding)
                expected = _direct(conv, x, padding)
                assert (got - expected).abs().max() <= 3e-5 * expected.abs().max()
    kinds = sorted(type(p).__name__ for p in packed._packed.values())
    assert kinds == ["InnerProduct", "OneDNN", "Winograd", "Winograd"]
    sliced = next(p for p in packed._packed.values() if isinstance(p, prepacked.OneDNN))
    assert [w.size(0) for w, _ in sliced.slices] == [4] * 24  # 18.4 KB each
    fc6 = next(p for p in packed._packed.values() if getattr(p, "transform", 0) is F2x2_7x7)
    assert len(fc6.packed) == 64 and fc6.u is None  # products by oneDNN's inner product
    weights = 128 * 96 * 9 * 4 + 36 * 128 * 256 * 4  # oneDNN's copy; U, 4× the 3×3 filters
    weights += 128 * 64 * 4  # the inner product's copy
    assert packed.nbytes == weights + 64 * 128 * 1024 * 4  # and 64/49 of the 7×7 ones


@needs_onednn
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_a_1x1_layer_by_the_inner_product_is_the_convolution_in_every_native_format(dtype):
    """Channels-last in and out, padded or not, as fc7 runs in fp32 and bf16."""
    x = torch.randn(2, 64, 7, 9, generator=torch.Generator().manual_seed(4)).to(dtype)
    if not prepacked._packs(x):
        pytest.skip(f"this CPU computes {dtype} only by emulation")
    conv = _conv(64, 48, kernel=1)
    with torch.inference_mode():
        for padding in (0, 1):
            got = PackedConvs().relu_conv(
                conv, x.contiguous(memory_format=torch.channels_last), padding
            )
            assert got.is_contiguous(memory_format=torch.channels_last) and got.dtype == dtype
            expected = _direct(conv, x.float(), padding)
            tolerance = 3e-5 if dtype == torch.float32 else 2e-2
            assert (got.double() - expected).abs().max() <= tolerance * expected.abs().max()


def test_concurrent_first_calls_pack_a_layer_once(monkeypatch):
    """Four service threads meeting a layer at once: one packs, the others wait for it (two
    packings of fc6 at once would hold two 0.5 GB copies)."""
    packings = []
    real = prepacked._pack

    def slow_pack(*args):
        packings.append(args[0])
        time.sleep(0.2)  # long enough for every thread to arrive while it packs
        return real(*args)

    monkeypatch.setattr(prepacked, "_pack", slow_pack)
    packed, conv = PackedConvs(), _conv(16, 32, kernel=1)
    x = torch.randn(1, 16, 9, 9).contiguous(memory_format=torch.channels_last)
    start = threading.Barrier(4)

    def first_call(_):
        start.wait()
        with torch.inference_mode():
            return packed.relu_conv(conv, x, 0)

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(first_call, range(4)))
    assert len(packings) == 1
    assert all(torch.equal(r, results[0]) for r in results)
