"""fcnxs serve over real HTTP: success, every error path, the queue, and shutdown."""

from __future__ import annotations

import base64
import io
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from PIL import Image

import fcnxs
from fcnxs.apps.service import Limits, create_app
from fcnxs.cli import main
from fcnxs.inference.segmenter import Segmenter
from fcnxs.inference.tta import TTA
from helpers import png_header, serving


def _png_bytes(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()


def _post(url: str, data: bytes, name: str = "photo.png", **params) -> httpx.Response:
    files = {"image": (name, data, "application/octet-stream")}
    return httpx.post(f"{url}/v1/segment", files=files, params=params, timeout=120)


class HeldSegmenter(Segmenter):
    """The real segmenter, but each inference waits until the test releases it, so that
    a test can hold requests in flight."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.release = threading.Event()

    def labels_batch(self, images):
        assert self.release.wait(60)
        return super().labels_batch(images)


@pytest.fixture(scope="module")
def segmenter(fcn8s_model) -> Segmenter:
    return Segmenter(fcn8s_model)


@pytest.fixture(scope="module")
def server(segmenter):
    with serving(
        create_app(segmenter, Limits(max_upload_bytes=300_000, max_pixels=250_000))
    ) as url:
        yield url


def test_segment_returns_the_models_mask_as_a_palette_png(server, segmenter, rng):
    rgb = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    response = _post(server, _png_bytes(rgb))
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    mask = Image.open(io.BytesIO(response.content))
    assert mask.mode == "P" and mask.size == (53, 37)
    expected = fcnxs.segment(segmenter.model, rgb)
    assert np.array_equal(np.asarray(mask), expected)


@pytest.mark.slow
def test_a_service_with_tta_answers_what_its_segmenter_gives(fcn8s_model, rng):
    segmenter = Segmenter(fcn8s_model, tta=TTA(flip=True, scales=(0.5, 1.0)))
    rgb = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    with serving(create_app(segmenter)) as url:
        assert httpx.get(f"{url}/healthz").json()["tta"] == {"flip": True, "scales": [0.5, 1.0]}
        response = _post(url, _png_bytes(rgb))
    assert response.status_code == 200
    mask = np.asarray(Image.open(io.BytesIO(response.content)))
    assert np.array_equal(mask, segmenter.labels(rgb))
    assert not np.array_equal(mask, fcnxs.segment(fcn8s_model, rgb))


def test_json_gives_class_shares_and_the_overlay(server, segmenter, rng):
    rgb = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    response = _post(server, _png_bytes(rgb), format="json", overlay="true")
    assert response.status_code == 200
    body = response.json()
    assert (body["width"], body["height"]) == (60, 40)
    labels = fcnxs.segment(segmenter.model, rgb)
    config = segmenter.model.config
    for entry in body["classes"]:
        assert entry["pixels"] == int((labels == entry["index"]).sum())
        assert entry["name"] == config.class_names[entry["index"]]
        assert tuple(entry["color"]) == config.colors[entry["index"]]
    assert sum(e["pixels"] for e in body["classes"]) == labels.size
    assert abs(sum(e["share"] for e in body["classes"]) - 1) < 1e-9
    header, data = body["overlay"].split(",", 1)
    assert header == "data:image/jpeg;base64"
    width, height = Image.open(io.BytesIO(base64.b64decode(data))).size
    assert height >= 40 and width > 60  # a small image: its legend beside it


def test_healthz_and_the_page(server, segmenter):
    assert httpx.head(f"{server}/healthz").status_code == 200
    assert httpx.get(f"{server}/docs").status_code == 404  # Swagger UI needs a CDN
    assert httpx.get(f"{server}/openapi.json").json()["info"]["title"] == "fcnxs"
    health = httpx.get(f"{server}/healthz").json()
    assert health["status"] == "ok"
    assert health["classes"] == list(segmenter.model.config.class_names)
    assert health["tta"] == {"flip": False, "scales": [1.0]}
    page = httpx.get(server)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'id="file"' in page.text and "v1/segment" in page.text


@pytest.mark.parametrize(
    ("case", "status", "words"),
    [
        ("not an image", 400, "not an image file"),
        ("truncated", 400, "truncated"),
        ("empty", 400, "photo.png: empty upload"),
        ("ten billion pixels", 413, "limit of 250000 (raise it with the server's --max-pixels)"),
        ("too many pixels", 413, "decompression-bomb limit"),
        ("too many bytes", 413, "exceeds the limit of 300000 bytes"),
        ("no image field", 400, "image"),
        ("bad format", 400, "format"),
    ],
)
def test_bad_requests_get_a_json_error(server, rng, case, status, words):
    good = _png_bytes(rng.integers(0, 256, (30, 30, 3), dtype=np.uint8))
    if case == "not an image":
        response = _post(server, b"hello, not a picture", name="notes.txt")
    elif case == "truncated":
        response = _post(server, good[: len(good) // 2])
    elif case == "empty":
        response = _post(server, b"")
    elif case == "ten billion pixels":
        response = _post(server, png_header(100_000, 100_000))
    elif case == "too many pixels":
        big = np.zeros((600, 500, 3), np.uint8)  # 300 000 pixels, compresses to a few KB
        response = _post(server, _png_bytes(big))
    elif case == "too many bytes":
        response = _post(server, rng.bytes(400_000))
    elif case == "no image field":
        response = httpx.post(f"{server}/v1/segment", files={"photo": ("a.png", good)})
    else:
        response = _post(server, good, format="tiff")
    assert response.status_code == status
    assert words in response.json()["error"]


def test_a_streamed_body_over_the_limit_is_cut_off_with_413(server):
    def chunks():
        yield (
            b'--abc\r\nContent-Disposition: form-data; name="image"; filename="big.png"\r\n'
            b"Content-Type: application/octet-stream\r\n\r\n"
        )
        for _ in range(40):
            yield b"x" * 10_000  # 400 kB of file, sent without a Content-Length

    response = httpx.post(
        f"{server}/v1/segment",
        content=chunks(),
        headers={"content-type": "multipart/form-data; boundary=abc"},
    )
    assert response.status_code == 413
    assert "exceeds the limit" in response.json()["error"]


@pytest.mark.slow
def test_twenty_concurrent_requests_are_all_answered_with_their_own_mask(segmenter, rng):
    images = [rng.integers(0, 256, (32 + 4 * i, 48, 3), dtype=np.uint8) for i in range(4)]
    expected = [fcnxs.segment(segmenter.model, rgb) for rgb in images]
    app = create_app(segmenter, Limits(workers=1, queue=32))
    with serving(app) as url, ThreadPoolExecutor(20) as pool:
        responses = list(pool.map(lambda i: _post(url, _png_bytes(images[i % 4])), range(20)))
    for i, response in enumerate(responses):
        assert response.status_code == 200, response.text
        mask = np.asarray(Image.open(io.BytesIO(response.content)))
        # A size seen before runs on its image-dependent window only (rounding-level
        # differences, so a near-tie may flip); another image's mask would be far off.
        assert mask.shape == expected[i % 4].shape
        assert (mask == expected[i % 4]).mean() > 0.995


def test_a_full_queue_answers_503_and_shutdown_finishes_what_is_running(fcn8s_model, rng):
    held = HeldSegmenter(fcn8s_model)
    png = _png_bytes(rng.integers(0, 256, (30, 30, 3), dtype=np.uint8))
    with ThreadPoolExecutor(2) as pool:
        with serving(create_app(held, Limits(workers=1, queue=1))) as url:
            first = pool.submit(_post, url, png)
            second = pool.submit(_post, url, png)
            deadline = time.monotonic() + 30
            while httpx.get(f"{url}/healthz").json()["in_flight"] < 2:
                assert time.monotonic() < deadline, "the two requests never arrived"
                time.sleep(0.05)
            refused = _post(url, png)
            assert refused.status_code == 503
            assert refused.headers["retry-after"] == "1"
            assert "busy" in refused.json()["error"]
            # Leaving the block shuts the server down while both requests are held; the
            # graceful shutdown must still answer them.
            threading.Timer(0.5, held.release.set).start()
        assert first.result().status_code == 200
        assert second.result().status_code == 200


def test_serve_command_errors_are_one_line(tmp_path, capsys, model_file):
    assert main(["serve", "--model", str(tmp_path / "missing.safetensors")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing.safetensors" in err[0]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--model", model_file, "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"cannot listen on 127.0.0.1:{port}" in err[0]
