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


class FileServer:
    """Files served over HTTP on 127.0.0.1 with Range requests, as the download tests need:
    every request recorded (path, Range header), and a connection that can drop after some
    bytes (``drop_after``) or go slowly (``delay`` seconds a chunk) on demand."""

    def __init__(self) -> None:
        import http.server

        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.drop_after: dict[str, int] = {}
        self.delay = 0.0
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                server.requests.append((self.path, self.headers.get("Range")))
                data = server.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                start = 0
                if self.headers.get("Range"):
                    start = int(self.headers["Range"].split("=")[1].split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                stop = len(data)
                if self.path in server.drop_after:
                    stop = start + server.drop_after.pop(self.path)  # once
                for i in range(start, stop, 1 << 16):
                    self.wfile.write(data[i : min(stop, i + (1 << 16))])
                    time.sleep(server.delay)

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
