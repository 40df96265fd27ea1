"""fcnxs's algorithms against oneDNN's direct convolution, layer by layer, on this CPU:
Winograd's F(4×4, 3×3) on the 3×3 layers of FCN-8s and F(2×2, 7×7) on fc6, and on which it
pays (`fcnxs.inference.winograd` takes the 3×3 layers with 256 or more output channels, and
fc6, in fp32 only), and oneDNN's inner product on fc7 (1×1, every format).

    .venv/bin/python benchmarks/winograd.py [--runs 5]

Each layer runs at the window border reuse gives it for a 375×500 image, on random weights
and inputs, batch 1, in fp32 and, where the CPU computes it natively, bf16. The errors are
against a float64 direct convolution of the same inputs: max |Δ| / max |output| and the
root-mean-square Δ / that of the output.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from machine import bf16_is_native, describe_machine, median_seconds
from torch import nn

from fcnxs.inference import winograd
from fcnxs.inference.prepacked import InnerProduct, OneDNN
from fcnxs.inference.windows import tile_plan
from fcnxs.model.architecture import TRUNK, Conv


def _time(call, runs: int) -> float:
    call()  # packs, or transforms the filters
    return median_seconds(call, runs)


def _errors(got: torch.Tensor, exact: torch.Tensor) -> str:
    delta = got.double() - exact
    largest = float(delta.abs().max() / exact.abs().max())
    rms = float(delta.pow(2).mean().sqrt() / exact.pow(2).mean().sqrt())
    return f"{largest:.1e} / {rms:.1e}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    print(describe_machine())
    print(f"median of {args.runs} calls, batch 1, the windows of a 375×500 image\n")
    print("| dtype | layer | C→C′ at H×W out | oneDNN direct (ms) | algorithm | its time (ms) "
          "| speed-up | error direct (max / rms) | error of the algorithm (max / rms) "
          "| used |")  # fmt: skip
    print("|---|---|---|---:|---|---:|---:|---:|---:|---|")
    dtypes = [torch.float32] + ([torch.bfloat16] if bf16_is_native() else [])
    with torch.inference_mode():
        for dtype in dtypes:
            for layer, (rows, cols, _) in zip(TRUNK, tile_plan(375, 500), strict=True):
                if isinstance(layer, Conv) and (layer.pad == 1 or layer.kernel in (1, 7)):
                    print(_row(layer, rows.hi - rows.lo, cols.hi - cols.lo, dtype, args.runs))


def _row(layer: Conv, height: int, width: int, dtype: torch.dtype, runs: int) -> str:
    k = layer.kernel
    conv = nn.Conv2d(layer.in_channels, layer.out_channels, k)
    nn.init.normal_(conv.weight, 0, (2 / (k * k * layer.in_channels)) ** 0.5)
    nn.init.normal_(conv.bias, 0, 0.1)
    x = torch.randn(1, layer.in_channels, height + k - 1, width + k - 1).relu().to(dtype)
    x = x.contiguous(memory_format=torch.channels_last)
    exact = F.relu(F.conv2d(x.double(), conv.weight.double(), conv.bias.double()))
    if k == 1:
        name, other, used = "inner product", InnerProduct(conv, x), InnerProduct.suits(conv)
    else:
        transform = winograd.F4x4_3x3 if k == 3 else winograd.F2x2_7x7
        name = f"F({transform.out}×{transform.out}, {k}×{k})"
        other = winograd.Winograd(conv, transform, dtype)
        used = winograd.transform_for(conv, x) is not None
    direct = OneDNN(conv, x, 0)
    t_direct = _time(lambda: direct.relu_conv(x, 0), runs)
    t_other = _time(lambda: other.relu_conv(x, 0), runs)
    return (
        f"| {str(dtype).removeprefix('torch.')} | {layer.name} | {layer.in_channels}→"
        f"{layer.out_channels} at {height}×{width} | {1000 * t_direct:.1f} | {name} | "
        f"{1000 * t_other:.1f} | {t_direct / t_other:.2f}× | "
        f"{_errors(direct.relu_conv(x, 0), exact)} | "
        f"{_errors(other.relu_conv(x, 0), exact)} | {'yes' if used else 'no'} |"
    )


if __name__ == "__main__":
    main()
