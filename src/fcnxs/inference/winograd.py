"""relu(conv(x)) by Winograd's minimal filtering, for the layers where it pays: F(4×4, 3×3)
on the wide 3×3 layers, F(2×2, 7×7) on fc6.

oneDNN's direct convolution already runs near the CPU's peak, so what is left is fewer
multiplications (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016):
F(4×4, 3×3) computes a 4×4 block of outputs from a 6×6 input tile with 36 products per
channel pair instead of 144, F(2×2, 7×7) a 2×2 block from an 8×8 tile with 64 instead of 196.
The tiles' transforms are matrix products over the whole map, one per axis, and the products
one matrix product per tile position. On conv3–conv5 that is 1.5–2.3× faster than oneDNN's
fp32 at 375×500, on fc6 1.7–1.9× (docs/design.md §6); on conv1–conv2 (64–128 channels, large
maps) the transforms cost more than the products save. The price is rounding: about 1e-5 of
the largest output per layer instead of 1e-6 (tested against the direct convolution, and end
to end). bf16 products (``dtype``) are measured by `benchmarks/winograd.py` and not used:
1.7× faster than oneDNN's bf16 on the 512-channel layers, but with 11× its error per layer
(F(4×4, 3×3)'s output transform multiplies rounding errors by up to 64).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fcnxs.core import torch_internals

_PACK_BYTES = 128 << 20
"""Filters are transformed this many bytes of the result at a time: fc6's whole transform
(537 MB) next to its packed copy would add as much again to the peak for a moment."""


@dataclass(frozen=True)
class Transform:
    """F(out×out, kernel×kernel) at ``points`` and ∞, and the layers it is used on."""

    out: int
    kernel: int
    points: tuple[float, ...]
    min_out_channels: int
    """Narrower layers lose to oneDNN's direct convolution (`benchmarks/winograd.py`)."""
    band_bytes: int
    """Tiles are transformed a band of rows at a time, each transform at most this large: a
    large input's would otherwise take several times its feature map. Bands that stay in the
    caches ran as fast or faster for the 3×3 layers (measured with 4–32 MB and whole maps).
    fc6's products read 537 MB of filters per band, so its bands are larger, but no larger
    than what the command's allocator keeps between images (`fcnxs.cli.allocator`)."""
    packed_products: bool
    """The products by oneDNN's inner product on filters packed once (2× MKL's batched
    product at fc6's 4096 outputs, both on AVX-512 and AVX2 kernels), else by MKL's batched
    product (steady over every size, and faster up to 512 outputs)."""

    @property
    def tile(self) -> int:
        return self.out + self.kernel - 1

    @functools.cached_property
    def matrices(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Bᵀ (tile × tile), G ⊗ G (tile² × kernel², both axes of a filter at once) and Aᵀ
        (out × tile), such that Y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A for a filter g and a tile d.
        Aᵀ evaluates the output block's polynomial at the points, G the filter's (over
        Π_{j≠i}(pᵢ − pⱼ)), and row i of Bᵀ holds the coefficients of Π_{j≠i}(x − pⱼ); ∞ takes
        the leading coefficients (the construction of Lavin & Gray's wincnn)."""
        points = np.array(self.points, dtype=np.float64)
        assert len(points) == self.tile - 1

        def evaluate(degree: int) -> np.ndarray:  # one row per point, then ∞'s
            return np.vstack([np.vander(points, degree, increasing=True), np.eye(degree)[-1]])

        others = [np.delete(points, i) for i in range(len(points))]
        scale = np.array([np.prod(p - rest) for p, rest in zip(points, others, strict=True)])
        g = evaluate(self.kernel) / np.append(scale, 1)[:, None]
        bt = np.vstack([np.append(np.poly(rest)[::-1], 0) for rest in others])
        bt = np.vstack([bt, np.poly(points)[::-1]])
        gg = np.kron(g, g)  # rounded once, from float64
        return tuple(torch.from_numpy(m).float() for m in (bt, gg, evaluate(self.out).T))


F4x4_3x3 = Transform(4, 3, (0, 1, -1, 2, -2), 256, 8 << 20, packed_products=False)
F2x2_7x7 = Transform(2, 7, (0, 1, -1, 2, -2, 1 / 2, -1 / 2), 1024, 32 << 20, packed_products=True)
TRANSFORMS = (F4x4_3x3, F2x2_7x7)


def transform_for(module: nn.Conv2d, x: torch.Tensor) -> Transform | None:
    """The transform ``module`` on ``x`` runs by, if any: a plain convolution of a layer
    wide enough for its kernel size, in fp32, and for fc6's only where this PyTorch has
    oneDNN's inner product (else oneDNN's direct convolution takes it)."""
    if not (
        x.dtype == torch.float32
        and module.stride == (1, 1)
        and module.dilation == (1, 1)
        and module.groups == 1
    ):
        return None
    for transform in TRANSFORMS:
        if (
            module.kernel_size == (transform.kernel,) * 2
            and module.out_channels >= transform.min_out_channels
            and (not transform.packed_products or torch_internals.packed_inner_products(x.dtype))
        ):
            return transform
    return None


class Winograd:
    """One layer's filters transformed once, in the dtype the products run in, and its
    bias: ``u``, (tile², in, out), for MKL, or ``packed``, one (out, in) matrix per tile
    position packed for oneDNN."""

    def __init__(
        self, module: nn.Conv2d, transform: Transform, dtype: torch.dtype = torch.float32
    ) -> None:
        self.transform = transform
        weight = module.weight.detach().float()
        self.out_channels = weight.shape[0]
        o, c = weight.shape[:2]
        # (o·c, ij), a view where the weight is contiguous: one matrix product per slice
        filters = weight.contiguous().view(o * c, -1)
        gg = transform.matrices[1]
        # U[ab, o, c] = Σ_ij (G ⊗ G)[ab, ij] g[o, c, ij]: one product (positions × ij) ·
        # (ij × o·c) whose rows are the positions' (o, c) matrices, each contiguous (packing
        # strided ones left the heap holding twice the packed bytes). One product rather
        # than one per filter: fc6's transform took 0.6 s, the 3×3 layers' 0.5 (measured).
        self.packed: list[torch.Tensor] = []
        self.u = None
        if not transform.packed_products:  # (tile², in, out) for MKL's batched product
            u = torch.matmul(gg, filters.T).view(len(gg), o, c)
            self.u = u.mT.to(dtype).contiguous()
        else:  # fc6's 537 MB a slice of positions at a time, packed as they come, through
            # one buffer (fresh ones for fc6 were 1 GB of pages faulted in)
            positions = min(len(gg), max(1, _PACK_BYTES // (o * c * 4)))
            buffer = weight.new_empty(positions * o * c)
            for rows in gg.split(positions):
                out = buffer[: len(rows) * o * c].view(len(rows), o * c)
                for matrix in torch.matmul(rows, filters.T, out=out).view(len(rows), o, c):
                    self.packed.append(torch_internals.pack_inner_product(matrix.to(dtype)))
        self.dtype = dtype
        self.bias = None if module.bias is None else module.bias.detach().float()

    @property
    def nbytes(self) -> int:
        matrices = self.packed if self.u is None else [self.u]
        return sum(u.numel() * u.element_size() for u in matrices)

    def relu_conv(self, x: torch.Tensor, padding: int) -> torch.Tensor:
        """relu(conv(x)) for an (N, C, H, W) ``x``, channels-last in and out, in its dtype."""
        n, c, h, w = x.shape
        k, out, tile = self.out_channels, self.transform.out, self.transform.tile
        reach = self.transform.kernel - 1
        out_h, out_w = h + 2 * padding - reach, w + 2 * padding - reach
        tiles_h, tiles_w = -(-out_h // out), -(-out_w // out)
        # zero rows and columns complete the last tiles; their outputs are cropped
        extra_h = tiles_h * out + reach - (h + 2 * padding)
        extra_w = tiles_w * out + reach - (w + 2 * padding)
        x = F.pad(x, (padding, padding + extra_w, padding, padding + extra_h))
        x = x.contiguous(memory_format=torch.channels_last).permute(0, 2, 3, 1)  # N H W C
        tiles = x.unfold(1, tile, out).unfold(2, tile, out)  # N th tw C tile tile, a view
        result = x.new_empty((n, out_h, out_w, k))
        band = max(1, self.transform.band_bytes // (tile * tile * tiles_w * max(c, k) * 4))
        for image in range(n):
            for top in range(0, tiles_h, band):
                rows = slice(top * out, min(top + band, tiles_h) * out)
                blocks = self._blocks(tiles[image, top : top + band])
                target = result[image, rows]
                target.copy_(blocks[: target.shape[0], :out_w])
        if self.bias is not None:
            result.add_(self.bias)
        return result.relu_().permute(0, 3, 1, 2)  # (N, out, H', W'), channels-last

    def _blocks(self, tiles: torch.Tensor) -> torch.Tensor:
        """The output blocks, in fp32, of (rows, columns, C, tile, tile) tiles, laid out as
        (out·rows, out·columns, out channels). The products are taken as many rows of tile
        positions at a time as fit in the band's bytes, and added up as they come: all of a
        tile's products at fc6 would be 50 MB (at 375×500), above what the command's
        allocator keeps between images, so faulted in again on every call."""
        bt, _, at = self.transform.matrices
        out, tile = self.transform.out, self.transform.tile
        rows, columns, c = tiles.shape[:3]
        d = tiles.new_empty((tile, tile, rows, columns, c), dtype=torch.float32)
        d.copy_(tiles.permute(3, 4, 0, 1, 2))  # one pass: gathered, and in fp32
        v = torch.matmul(bt, d.view(tile, -1)).view(tile, tile, -1)  # Bᵀ along rows
        v = torch.matmul(bt, v).to(self.dtype).view(tile * tile, rows * columns, c)
        row_bytes = tile * rows * columns * self.out_channels * 4
        step = max(1, self.transform.band_bytes // row_bytes)
        y = None
        for first in range(0, tile, step):  # Y = Σᵢ Aᵀ[:, i] ⊗ (Aᵀ Mᵢ), Mᵢ row i's products
            i = slice(first, min(first + step, tile))
            m = self._products(v, slice(i.start * tile, i.stop * tile)).float()
            along_columns = torch.matmul(at, m.view(-1, tile, m[0].numel()))  # (i, out, ·)
            part = torch.matmul(at[:, i], along_columns.view(i.stop - i.start, -1))
            y = part if y is None else y.add_(part)
        y = y.view(out, out, rows, columns, -1)
        return y.permute(2, 0, 3, 1, 4).reshape(rows * out, columns * out, -1)

    def _products(self, v: torch.Tensor, positions: slice) -> torch.Tensor:
        """The transformed tiles ``v`` (tile², P, C) times the transformed filters, at
        ``positions``: (positions, P, out)."""
        if self.u is None:
            products = zip(v[positions], self.packed[positions], strict=True)
            inner_product = torch_internals.inner_product
            return torch.stack([inner_product(vj, u, None, relu=False) for vj, u in products])
        return torch.bmm(v[positions], self.u[positions])
