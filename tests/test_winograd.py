"""Winograd F(4×4, 3×3) and the packed convolutions give the direct convolution's outputs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fcnxs.inference import prepacked, winograd
from fcnxs.inference.prepacked import PackedConvs
from fcnxs.inference.winograd import Winograd, suits


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


@pytest.mark.parametrize(
    ("batch", "channels", "height", "width", "padding"),
    [
        (1, 256, 37, 50, 1),  # output sizes no multiple of 4: the last tiles are cropped
        (2, 128, 13, 7, 0),  # a batch, unpadded (a tile of border reuse)
        (1, 256, 3, 3, 0),  # one output position
        (1, 64, 8, 8, 1),
    ],
)
def test_winograd_is_the_direct_convolution(batch, channels, height, width, padding):
    conv = _conv(channels, 256)
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(batch, channels, height, width, generator=generator).relu()
    x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        got = Winograd(conv).relu_conv(x, padding)
        expected = _direct(conv, x, padding)
    assert got.shape == expected.shape and got.dtype == torch.float32
    assert got.is_contiguous(memory_format=torch.channels_last)
    assert (got - expected).abs().max() <= 3e-5 * expected.abs().max()
    assert (got >= 0).all()


def test_bands_of_tile_rows_give_the_whole_map(monkeypatch):
    """A large input is transformed a band of tile rows at a time (here one row per band,
    over a batch of two): the same outputs as in one band."""
    conv = _conv(128, 256)
    x = torch.randn(2, 128, 14, 19, generator=torch.Generator().manual_seed(4)).relu()
    x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        whole = Winograd(conv).relu_conv(x, 1)
        monkeypatch.setattr(winograd, "BAND_BYTES", 1)
        banded = Winograd(conv).relu_conv(x, 1)
        expected = _direct(conv, x, 1)
    assert (banded - whole).abs().max() <= 1e-6 * whole.abs().max()  # rounding apart
    assert (banded - expected).abs().max() <= 3e-5 * expected.abs().max()


def test_bf16_products_round_worse_than_bf16_and_are_not_used():
    """The products in bf16 (what `benchmarks/winograd.py` measures): bf16 out, within a
    few hundredths, where oneDNN's bf16 is within a few thousandths: `suits` says no."""
    conv = _conv(512, 512)
    x = torch.randn(1, 512, 12, 17, generator=torch.Generator().manual_seed(3)).relu()
    x = x.bfloat16().contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        winograd = Winograd(conv, torch.bfloat16)
        got = winograd.relu_conv(x, 1)
        expected = _direct(conv, x, 1)
    assert winograd.u.dtype == torch.bfloat16 and got.dtype == torch.bfloat16
    assert (got.double() - expected).abs().max() <= 0.1 * expected.abs().max()
    assert not suits(conv, x)


def test_winograd_takes_only_wide_plain_3x3_layers_in_fp32():
    x = torch.zeros(1, 8, 8, 8)
    assert suits(_conv(128, 256), x)
    assert not suits(_conv(64, 128), x)  # narrow: oneDNN is faster (docs/design.md §6)
    assert not suits(_conv(128, 256, kernel=7), x)
    assert not suits(nn.Conv2d(128, 256, 3, stride=2), x)
    assert not suits(_conv(512, 512), x.half())


def test_packed_convolutions_pick_their_algorithm_and_slice_large_weights(monkeypatch):
    """A wide layer runs by Winograd, a narrow one on oneDNN, and a weight over the slice
    size is packed in slices of output channels: all give the direct convolution."""
    if not prepacked.available(torch.zeros(1)):
        pytest.skip("oneDNN is not available in this PyTorch build")
    monkeypatch.setattr(prepacked, "SLICE_BYTES", 20_000)  # 128→96 3×3: 4.6 KB per channel
    packed = PackedConvs()
    x = torch.randn(1, 128, 20, 23, generator=torch.Generator().manual_seed(2)).relu()
    with torch.inference_mode():
        for conv in (_conv(128, 256), _conv(128, 96)):
            for padding in (0, 1):
                got = packed.relu_conv(conv, x, padding)
                expected = _direct(conv, x, padding)
                assert (got - expected).abs().max() <= 3e-5 * expected.abs().max()
    kinds = sorted(type(p).__name__ for p in packed._packed.values())
    assert kinds == ["OneDNN", "Winograd"]
    sliced = next(p for p in packed._packed.values() if not isinstance(p, Winograd))
    assert [w.size(0) for w, _ in sliced.slices] == [4] * 24  # 18.4 KB each
    weights = 128 * 96 * 9 * 4 + 36 * 128 * 256 * 4  # oneDNN's copy; U, 4× the 3×3 filters
    assert packed.nbytes == weights
