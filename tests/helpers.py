"""Helpers shared by the tests (importable as ``helpers``)."""

from __future__ import annotations

import contextlib
import struct
import threading
import time
import zlib
from collections.abc import Iterator

import numpy as np
import torch

import fcnxs


def random_image(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    return rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def png_header(width: int, height: int) -> bytes:
    """A PNG that claims any size but holds almost no pixel data: readers learn its size
    cheaply, and decoding it fails."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = chunk(b"IDAT", zlib.compress(b"\x00" * 64))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + idat + chunk(b"IEND", b"")


def meta_model(arch: str, **config_fields) -> fcnxs.FCN:
    """A model on the meta device: shapes without arithmetic."""
    with torch.device("meta"):
        return fcnxs.FCN(fcnxs.ModelConfig(arch=arch, **config_fields))


@contextlib.contextmanager
def serving(app) -> Iterator[str]:
    """Run an ASGI app under uvicorn on a free loopback port; yield its base URL. Leaving
    the block asks the server to shut down gracefully and waits for it."""
    import uvicorn

    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(60)


def narrow_fcn8s(divisor: int = 16, num_classes: int = 5, seed: int = 0) -> fcnxs.FCN:
    """An FCN-8s with 1/``divisor`` of VGG16's channels in every layer (3 input channels
    kept): the same geometry (pads, pools, crops, border reuse's windows) at a 256th of the
    arithmetic, for tests that must be quick where bf16 is emulated (an AVX2-only CPU)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.device("meta"):
        model = fcnxs.FCN(fcnxs.ModelConfig(arch="fcn8s", num_classes=num_classes))
    for name, module in list(model.named_children()):
        if not isinstance(module, torch.nn.Conv2d | torch.nn.ConvTranspose2d):
            continue
        narrow = {c: max(3 if c == 3 else 1, c // divisor) for c in (3, 64, 128, 256, 512, 4096)}
        in_channels = narrow.get(module.in_channels, module.in_channels)
        out_channels = narrow.get(module.out_channels, module.out_channels)
        if isinstance(module, torch.nn.ConvTranspose2d):
            in_channels, out_channels = module.in_channels, module.out_channels  # classes
        layer = type(module)(in_channels, out_channels, module.kernel_size, module.stride,
                             module.padding, bias=module.bias is not None)  # fmt: skip
        with torch.no_grad():
            fan_in = in_channels * layer.weight[0, 0].numel()
            layer.weight.normal_(0, (2 / fan_in) ** 0.5, generator=generator)
            if layer.bias is not None:
                layer.bias.normal_(0, 0.1, generator=generator)
        setattr(model, name, layer)
    return model.eval()
