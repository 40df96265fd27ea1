"""``fcnxs serve``: a model over HTTP, with a page to try it (FastAPI; the ``serve`` extra).

The model is loaded once, before the app is built. Inference holds both cores, so requests
pass an admission gate: at most ``workers`` run at once and at most ``queue`` wait; the
next one is told 503 at once rather than left hanging. Uploads are bounded before they are
read whole, and what a request sends lives in memory or in Starlette's spooled temporary
files, never anywhere else on disk.

Endpoints: ``POST /v1/segment`` (multipart field ``image``; ``format=png`` a palette PNG of
class indices, ``json`` the classes found with their pixel shares, ``overlay=true`` adds
the overlay as a data URL), ``GET``/``HEAD /healthz``, ``GET /``, the page, and
``GET /openapi.json``, the schema.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from importlib import resources

import numpy as np
from fastapi import FastAPI, File, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException

from fcnxs.core.errors import FcnxsError
from fcnxs.data.images import TooManyPixels, decode_image, label_image
from fcnxs.inference.file_pipeline import segment_all
from fcnxs.inference.outputs import overlay_image
from fcnxs.inference.segmenter import Segmenter

SEGMENT_PATH = "/v1/segment"


@dataclass(frozen=True)
class Limits:
    max_upload_bytes: int = 20 << 20
    max_pixels: int = 40_000_000
    workers: int = 1
    """Inferences at once; one already uses every core of a CPU."""
    queue: int = 16
    """Requests that may wait for a worker before the next is refused with 503."""


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class Gate:
    """Admission control: ``workers`` slots, ``queue`` places to wait, then refusal."""

    def __init__(self, workers: int, queue: int) -> None:
        self._slots = asyncio.Semaphore(workers)
        self._capacity = workers + queue
        self.admitted = 0

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self.admitted >= self._capacity:
            raise HTTPException(
                503,
                "the server is busy: every worker and queue place is taken",
                headers={"Retry-After": "1"},
            )
        self.admitted += 1
        try:
            async with self._slots:
                yield
        finally:
            self.admitted -= 1


class BodyLimit:
    """ASGI middleware: a segment request whose body exceeds ``limit`` bytes gets 413,
    whether it says so in Content-Length or streams more than that."""

    def __init__(self, app, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] != SEGMENT_PATH:
            await self.app(scope, receive, send)
            return
        message = f"the upload exceeds the limit of {self.limit} bytes"
        length = dict(scope["headers"]).get(b"content-length", b"0")
        if length.isdigit() and int(length) > self.limit:
            await _error(413, message)(scope, receive, send)
            return
        received = 0

        async def counted_receive():
            nonlocal received
            chunk = await receive()
            received += len(chunk.get("body", b""))
            if received > self.limit:
                raise HTTPException(413, message)  # FastAPI lets HTTPException through
            return chunk

        await self.app(scope, counted_receive, send)


def class_shares(labels: np.ndarray, names, colors) -> list[dict]:
    """The classes present, most pixels first: index, name, colour, pixels, share."""
    counts = np.bincount(labels.ravel(), minlength=len(names))
    total = max(int(labels.size), 1)
    found = [int(c) for c in np.argsort(-counts, kind="stable") if counts[c] > 0]
    return [
        {
            "index": c,
            "name": names[c],
            "color": list(colors[c]),
            "pixels": int(counts[c]),
            "share": int(counts[c]) / total,
        }
        for c in found
    ]


def _png(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _jpeg_data_url(image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=88)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def create_app(segmenter: Segmenter, limits: Limits | None = None) -> FastAPI:
    """The service around a loaded model."""
    limits = limits or Limits()
    config = segmenter.model.config
    gate = Gate(limits.workers, limits.queue)
    page = resources.files("fcnxs.apps").joinpath("service_page.html").read_text(encoding="utf-8")

    # No /docs: Swagger UI loads its scripts from a CDN and is blank offline; the schema
    # is served as /openapi.json.
    app = FastAPI(title="fcnxs", version="1", docs_url=None, redoc_url=None)
    app.add_middleware(BodyLimit, limit=limits.max_upload_bytes)

    @app.exception_handler(HTTPException)
    async def _refused(request: Request, exc: HTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail), exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        where = {".".join(str(p) for p in e["loc"]): e["msg"] for e in exc.errors()}
        return _error(400, "; ".join(f"{k}: {v}" for k, v in where.items()))

    def answer(upload: UploadFile, format: str, overlay: bool) -> Response:
        """Decode, segment and encode one upload (in a worker thread: all of it blocks)."""
        name = upload.filename or "upload"
        if not upload.file.read(1):
            raise HTTPException(400, f"{name}: empty upload (the file has no bytes)")
        upload.file.seek(0)
        limit = "the server's --max-pixels"
        (outcome,) = segment_all(
            segmenter,
            [upload.file],
            read=lambda file: decode_image(file, name, limits.max_pixels, limit),
        )
        if isinstance(outcome, FcnxsError):
            raise HTTPException(413 if isinstance(outcome, TooManyPixels) else 400, str(outcome))
        rgb, labels = outcome
        if format == "png":
            return Response(_png(label_image(labels, config.colors)), media_type="image/png")
        body = {
            "width": int(labels.shape[1]),
            "height": int(labels.shape[0]),
            "classes": class_shares(labels, config.class_names, config.colors),
        }
        if overlay:
            picture = overlay_image(rgb, labels, config.colors, config.class_names)
            body["overlay"] = _jpeg_data_url(picture)
        return JSONResponse(body)

    @app.post(SEGMENT_PATH)
    async def segment(
        image: UploadFile = File(..., description="the image file"),  # noqa: B008
        format: str = Query("png", pattern="^(png|json)$"),
        overlay: bool = Query(False, description="json: add the overlay as a data URL"),
    ) -> Response:
        async with gate.slot():
            return await run_in_threadpool(answer, image, format, overlay)

    @app.api_route("/healthz", methods=["GET", "HEAD"])
    async def healthz() -> dict:
        return {
            "status": "ok",
            "arch": config.arch,
            "classes": list(config.class_names),
            "tta": {"flip": segmenter.tta.flip, "scales": list(segmenter.tta.scales)},
            "in_flight": gate.admitted,
        }

    @app.get("/", response_class=HTMLResponse)
    async def index() -> str:
        return page

    return app
