"""FCN-32s, FCN-16s and FCN-8s on a VGG16 trunk, exactly as the original defined them.

Modules are built from the layer lists in `fcnxs.model.architecture`, under their original names,
so ``state_dict()`` keys read ``conv1_1.weight`` ... ``bigscore.weight``. Everything a
framework did differently (pool rounding, upsampler output padding, crop offsets, pool
scaling) comes from the model's `ModelConfig`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from fcnxs.model.architecture import (
    FINAL_CROP,
    FINAL_UPSAMPLER,
    HEADS,
    SCORE,
    SKIP_POOLS,
    SKIP_STRIDE,
    TRUNK,
    TRUNK_CHANNELS,
    Conv,
)
from fcnxs.model.config import ModelConfig
from fcnxs.model.geometry import crop_offsets, padded_length, upsampler


def _upsampler(num_classes: int, stride: int, config: ModelConfig) -> nn.ConvTranspose2d:
    window = upsampler(stride, config.semantics)
    return nn.ConvTranspose2d(
        num_classes,
        num_classes,
        window.kernel,
        window.stride,
        output_padding=window.output_padding,
        bias=False,
    )


def _crop(x: torch.Tensor, offset: int, height: int, width: int) -> torch.Tensor:
    return x[..., offset : offset + height, offset : offset + width]


def _conv_by_matmul(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``conv(x)`` for an unpadded stride-1 convolution, as one matrix product over the
    unfolded windows of ``x``: the same sums in another order.

    This is fc6 (7×7, 512 → 4096) in training on a CPU. Its map has a few hundred positions,
    where oneDNN's backward pass takes twice as long as the two matrix products it amounts
    to (forward + backward at 375×500 on a 2-core AVX2 CPU: 2.29 s against 1.43 s).
    """
    n, _, height, width = x.shape
    k = conv.kernel_size[0]
    windows = F.unfold(x, k)  # (N, C·k·k, positions)
    out = conv.weight.flatten(1) @ windows  # bf16 under autocast, like the convolution's
    out = out + conv.bias.to(out.dtype)[:, None]
    return out.view(n, -1, height - k + 1, width - k + 1)


class FCN(nn.Module):
    """A fully convolutional network; ``forward`` maps (N, 3, H, W) inputs to (N, C, H, W) scores.

    Any H and W work: inputs too small for fc6's 7×7 window are padded at the bottom and
    right with zeros (the mean colour), run, and cropped back.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.head_spec = HEADS[config.arch]
        ceil = config.semantics.pool_rounding == "ceil"
        for layer in TRUNK:
            if isinstance(layer, Conv):
                module: nn.Module = nn.Conv2d(
                    layer.in_channels, layer.out_channels, layer.kernel, padding=layer.pad
                )
            else:
                module = nn.MaxPool2d(2, 2, ceil_mode=ceil)
            self.add_module(layer.name, module)
        classes = config.num_classes
        self.add_module(SCORE, nn.Conv2d(TRUNK_CHANNELS["fc7"], classes, 1))
        for skip in self.head_spec.skips:
            self.add_module(skip.upsampler, _upsampler(classes, SKIP_STRIDE, config))
            self.add_module(skip.score, nn.Conv2d(TRUNK_CHANNELS[skip.pool], classes, 1))
        self.add_module(FINAL_UPSAMPLER, _upsampler(classes, self.head_spec.final_stride, config))
        self.crop_offsets = crop_offsets(config)
        sem = config.semantics
        self.pool_scales = {"pool4": sem.pool4_scale, "pool3": sem.pool3_scale}
        self.dropout: float | None = None
        """Overrides fc6/fc7's dropout probability (0.5) in training when set."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.run_padded(self.forward_valid, x)

    def run_padded(
        self, forward_valid: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor
    ) -> torch.Tensor:
        """``forward_valid(x)`` for any size: inputs too small for the network are padded at
        the bottom and right with zeros (the mean colour), run, and cropped back."""
        height, width = x.shape[-2:]
        padded_h = padded_length(self.config, height)
        padded_w = padded_length(self.config, width)
        if (padded_h, padded_w) != (height, width):
            x = F.pad(x, (0, padded_w - width, 0, padded_h - height))
        return forward_valid(x)[..., :height, :width]

    def forward_valid(self, x: torch.Tensor) -> torch.Tensor:
        """`forward` for inputs the network takes as they are (every size from 26 px under
        the usual semantics): no shape arithmetic in Python, so exporters keep H and W
        dynamic."""
        height, width = x.shape[-2:]
        return self.head(*self.trunk(x), height, width)

    def trunk(
        self,
        x: torch.Tensor,
        relu_conv: Callable[[nn.Conv2d, torch.Tensor, int], torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """fc7's output and the pool maps the skips read (pool3, pool4).
        ``relu_conv(module, x, padding)``, in inference, computes relu(conv(x)) in its
        stead (with weights laid out once, `fcnxs.inference.prepacked`)."""
        pools = {}
        for layer in TRUNK:
            module = getattr(self, layer.name)
            big_unpadded = isinstance(layer, Conv) and layer.pad == 0 and layer.kernel > 1
            if relu_conv is not None and isinstance(layer, Conv) and not self.training:
                x = relu_conv(module, x, layer.pad)
                continue
            if big_unpadded and self.training:  # fc6, see _conv_by_matmul
                x = _conv_by_matmul(module, x) if x.device.type == "cpu" else module(x)
            else:
                x = module(x)
            if isinstance(layer, Conv):
                x = F.relu(x, inplace=True)
                p = layer.dropout if self.dropout is None else self.dropout
                if p and self.training and layer.dropout:
                    x = F.dropout(x, p, training=True)
            elif layer.name in SKIP_POOLS:
                pools[layer.name] = x
        return x, pools

    def head(
        self, x: torch.Tensor, pools: dict[str, torch.Tensor], height: int, width: int
    ) -> torch.Tensor:
        """Score fc7, fuse the skips and upsample to the input's ``height`` × ``width``."""
        x = getattr(self, SCORE)(x)
        for skip in self.head_spec.skips:
            upsampled = getattr(self, skip.upsampler)(x)
            pool = pools[skip.pool]
            scale = self.pool_scales[skip.pool]
            scored = getattr(self, skip.score)(pool * scale if scale != 1.0 else pool)
            h, w = upsampled.shape[-2:]
            x = upsampled + _crop(scored, self.crop_offsets[skip.crop], h, w)
        x = getattr(self, FINAL_UPSAMPLER)(x)
        return _crop(x, self.crop_offsets[FINAL_CROP], height, width)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device


def empty_model(config: ModelConfig, device: str | torch.device = "cpu") -> FCN:
    """A model with uninitialised weights, for loaders that fill every tensor anyway.

    Built on the meta device first, so no time goes into initialising 134 M parameters
    that are about to be replaced.
    """
    with torch.device("meta"):
        model = FCN(config)
    return model.to_empty(device=device)


@contextlib.contextmanager
def evaluating(model: FCN) -> Iterator[FCN]:
    """Run ``model`` in eval mode under inference mode, restoring its mode afterwards."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield model
    finally:
        model.train(was_training)
