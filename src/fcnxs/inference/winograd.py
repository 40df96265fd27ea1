"""relu(conv3×3(x)) by Winograd's minimal filtering F(4×4, 3×3), for the wide layers.

oneDNN's direct convolution already runs near the CPU's peak, so what is left is fewer
multiplications: F(4×4, 3×3) computes a 4×4 block of outputs from a 6×6 input tile with
36 products per channel pair instead of 144 (Lavin & Gray, "Fast Algorithms for
Convolutional Neural Networks", 2016). The tiles' transforms are matrix products over the
whole map, one per axis, and the 36 products one batched matrix product (MKL's, steady over
every size, where oneDNN's 1×1 convolutions fell to a slow path below a hundred or so
positions). On conv3–conv5 that is 1.5–2.3× faster than oneDNN's fp32 at 375×500; on
conv1–conv2 (64–128 channels, large maps) the transforms cost more than the products save
(docs/design.md §6). The price is rounding: about 1e-5 of the largest output per layer
instead of 1e-6 (tested against the direct convolution, and end to end). bf16 products
(``dtype``) are measured by `benchmarks/winograd.py` and not used: 1.7× faster than oneDNN's
bf16 on the 512-channel layers, but with 11× its error per layer (F(4×4, 3×3)'s output
transform multiplies rounding errors by up to 64).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

MIN_OUT_CHANNELS = 256
"""Layers at least this wide use Winograd (conv3_1 on); narrower ones lose to oneDNN."""
TILE, OUT = 6, 4
"""Input tile and output block of F(4×4, 3×3), along each axis."""
BAND_BYTES = 8 << 20
"""Tiles are transformed a band of rows at a time, each transform at most this large: a
large input's would otherwise take several times its feature map, and bands that stay in
the caches ran as fast or faster (measured with 4–32 MB and whole maps)."""

# Bᵀ, G and Aᵀ for the points 0, ±1, ±2 and ∞ (Lavin & Gray 2016, and their wincnn tool):
# Y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A for a 3×3 filter g and a 6×6 tile d.
_BT = torch.tensor(
    [
        [4, 0, -5, 0, 1, 0],
        [0, -4, -4, 1, 1, 0],
        [0, 4, -4, -1, 1, 0],
        [0, -2, -1, 2, 1, 0],
        [0, 2, -1, -2, 1, 0],
        [0, 4, 0, -5, 0, 1],
    ],
    dtype=torch.float32,
)
_G = torch.tensor(
    [
        [1 / 4, 0, 0],
        [-1 / 6, -1 / 6, -1 / 6],
        [-1 / 6, 1 / 6, -1 / 6],
        [1 / 24, 1 / 12, 1 / 6],
        [1 / 24, -1 / 12, 1 / 6],
        [0, 0, 1],
    ],
    dtype=torch.float64,
)
_AT = torch.tensor(
    [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]],
    dtype=torch.float32,
)
_GG = torch.kron(_G, _G).to(torch.float32)  # (36, 9): both axes of a filter, rounded once


def suits(module: nn.Conv2d, x: torch.Tensor) -> bool:
    """Whether ``module`` on ``x`` runs this way: a plain 3×3 convolution of a wide layer,
    in fp32."""
    return (
        x.dtype == torch.float32
        and module.kernel_size == (3, 3)
        and module.stride == (1, 1)
        and module.dilation == (1, 1)
        and module.groups == 1
        and module.out_channels >= MIN_OUT_CHANNELS
    )


class Winograd:
    """One layer's filters transformed once, (36, in, out) in the dtype the products run
    in, and its bias."""

    def __init__(self, module: nn.Conv2d, dtype: torch.dtype = torch.float32) -> None:
        weight = module.weight.detach().float()
        out_channels, in_channels = weight.shape[:2]
        # U[ab, c, o] = Σ_ij (G ⊗ G)[ab, ij] g[o, c, ij]: one matrix product
        filters = weight.reshape(-1, 9).T.contiguous()  # (ij, o·c)
        u = (_GG @ filters).view(TILE * TILE, out_channels, in_channels)
        self.u = u.transpose(1, 2).to(dtype).contiguous()  # (36, in, out)
        self.bias = None if module.bias is None else module.bias.detach().float()

    @property
    def nbytes(self) -> int:
        return self.u.numel() * self.u.element_size()

    def relu_conv(self, x: torch.Tensor, padding: int) -> torch.Tensor:
        """relu(conv(x)) for an (N, C, H, W) ``x``, channels-last in and out, in its dtype."""
        n, c, h, w = x.shape
        k = self.u.shape[-1]
        out_h, out_w = h + 2 * padding - 2, w + 2 * padding - 2
        tiles_h, tiles_w = -(-out_h // OUT), -(-out_w // OUT)
        # zero rows and columns complete the last tiles; their outputs are cropped
        extra_h = tiles_h * OUT + 2 - (h + 2 * padding)
        extra_w = tiles_w * OUT + 2 - (w + 2 * padding)
        x = F.pad(x, (padding, padding + extra_w, padding, padding + extra_h))
        x = x.contiguous(memory_format=torch.channels_last).permute(0, 2, 3, 1)  # N H W C
        tiles = x.unfold(1, TILE, OUT).unfold(2, TILE, OUT)  # N th tw C 6 6, a view
        out = x.new_empty((n, out_h, out_w, k))
        band = max(1, BAND_BYTES // (TILE * TILE * tiles_w * max(c, k) * 4))
        for image in range(n):
            for top in range(0, tiles_h, band):
                rows = slice(top * OUT, min(top + band, tiles_h) * OUT)
                blocks = self._blocks(tiles[image, top : top + band])
                target = out[image, rows]
                target.copy_(blocks[: target.shape[0], :out_w])
        if self.bias is not None:
            out.add_(self.bias)
        return out.relu_().permute(0, 3, 1, 2)  # (N, out, H', W'), channels-last

    def _blocks(self, tiles: torch.Tensor) -> torch.Tensor:
        """The 4×4 output blocks, in fp32, of (rows, columns, C, 6, 6) tiles, laid out as
        (4·rows, 4·columns, out)."""
        rows, columns, c = tiles.shape[:3]
        d = tiles.new_empty((TILE, TILE, rows, columns, c), dtype=torch.float32)
        d.copy_(tiles.permute(3, 4, 0, 1, 2))  # one pass: gathered, and in fp32
        v = torch.matmul(_BT, d.view(TILE, -1)).view(TILE, TILE, -1)  # Bᵀ along rows
        v = torch.matmul(_BT, v).to(self.u.dtype)  # along columns, batched over the rows
        m = torch.bmm(v.view(TILE * TILE, rows * columns, c), self.u).float()  # (36, ·, out)
        y = torch.matmul(_AT, m.view(TILE, -1)).view(OUT, TILE, -1)  # Aᵀ along rows
        y = torch.matmul(_AT, y).view(OUT, OUT, rows, columns, -1)  # and along columns
        return y.permute(2, 0, 3, 1, 4).reshape(rows * OUT, columns * OUT, -1)
