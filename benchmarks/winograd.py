"""Is Winograd worth it for FCN's 3×3 convolutions on this CPU? One layer of each VGG16
stage at the sizes FCN-8s meets for a 375×500 image, oneDNN's direct convolution against
Winograd F(2×2, 3×3) and F(4×4, 3×3) written as batched matrix products in PyTorch.

    .venv/bin/python benchmarks/winograd.py [--runs 5]

Winograd trades multiplications for transforms: F(m, 3) needs (m + 2)² / (9 m²) of the
direct multiplications (0.44 for m = 2, 0.25 for m = 4) but reads and writes every tile
through an input and an output transform. The table says which side wins here, and the
error each variant makes (max |Δ| / max |direct|).
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from machine import describe_machine, median_seconds

# (G, Bᵀ, Aᵀ) of Lavin & Gray (2016): Y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A
TRANSFORMS = {
    2: (
        [[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]],
        [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]],
        [[1, 1, 1, 0], [0, 1, -1, -1]],
    ),
    4: (
        [[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
         [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]],
        [[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
         [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]],
        [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]],
    ),
}  # fmt: skip
LAYERS = [  # (name, channels in, channels out, height, width) for a 375×500 image, pad 100
    ("conv1_2", 64, 64, 573, 698),
    ("conv2_2", 128, 128, 287, 349),
    ("conv3_3", 256, 256, 144, 175),
    ("conv4_3", 512, 512, 72, 88),
    ("conv5_3", 512, 512, 36, 44),
]


class Winograd:
    """relu(conv3x3(x, w, b, padding=1)) as F(m×m, 3×3) with the filter transformed once."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, m: int) -> None:
        g, bt, at = (torch.tensor(t, dtype=torch.float32) for t in TRANSFORMS[m])
        self.m, self.bt, self.at = m, bt, at
        u = torch.einsum("ai,ocij,bj->aboc", g, weight, g)  # (t, t, out, in)
        t = m + 2
        self.u = u.reshape(t * t, *weight.shape[:2]).transpose(1, 2).contiguous()  # (t², in, out)
        self.bias = bias

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        m, t = self.m, self.m + 2
        n, c, h, w = x.shape
        th, tw = -(-h // m), -(-w // m)
        x = F.pad(x, (1, tw * m + 1 - w, 1, th * m + 1 - h))
        tiles = x.unfold(2, t, m).unfold(3, t, m)  # (n, c, th, tw, t, t)
        v = torch.einsum("ai,nchwij,bj->abnhwc", self.bt, tiles, self.bt)
        v = v.reshape(t * t, n * th * tw, c)
        product = torch.bmm(v, self.u).reshape(t, t, n, th, tw, -1)  # (t, t, n, th, tw, out)
        y = torch.einsum("ia,abnhwo,jb->nohiwj", self.at, product, self.at)
        y = y.reshape(n, -1, th * m, tw * m)[:, :, :h, :w]
        return torch.relu(y + self.bias.view(1, -1, 1, 1))


def _time(call, runs: int) -> float:
    call()  # warm up
    return median_seconds(call, runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    print(describe_machine())
    print(f"median of {args.runs} calls, fp32, batch 1\n")
    columns = ["layer", "C→C′ at H×W", "oneDNN direct (ms)", "F(2,3) (ms)", "F(4,3) (ms)",
               "error F(2,3)", "error F(4,3)"]  # fmt: skip
    print("| " + " | ".join(columns) + " |")
    print("|---|---|---:|---:|---:|---:|---:|")
    with torch.inference_mode():
        for name, cin, cout, h, w in LAYERS:
            x = torch.randn(1, cin, h, w).relu()
            weight = torch.randn(cout, cin, 3, 3) * (2 / (9 * cin)) ** 0.5
            bias = torch.randn(cout) * 0.1
            xl = x.contiguous(memory_format=torch.channels_last)
            direct = torch.relu(F.conv2d(xl, weight, bias, padding=1))

            def conv(xl=xl, weight=weight, bias=bias):
                return F.conv2d(xl, weight, bias, padding=1).relu_()

            cells = [f"{1000 * _time(conv, args.runs):.0f}"]
            errors = []
            for m in (2, 4):
                winograd = Winograd(weight, bias, m)
                cells.append(f"{1000 * _time(lambda w=winograd, x=x: w(x), args.runs):.0f}")
                errors.append(f"{((winograd(x) - direct).abs().max() / direct.abs().max()):.1e}")
            print(f"| {name} | {cin}→{cout} at {h}×{w} | " + " | ".join(cells + errors) + " |")


if __name__ == "__main__":
    main()
