"""``fcnxs serve --model MODEL``: a model over HTTP, with a page to try it in a browser."""

from __future__ import annotations

import argparse
import socket

from fcnxs.cli.common import add_engine_arguments, add_model_arguments, open_segmenter
from fcnxs.cli.options import NON_NEGATIVE, PORT, POSITIVE, real
from fcnxs.core.errors import FcnxsError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "serve",
        help="serve a model over HTTP, with a page to try it",
        description="POST /v1/segment (multipart field 'image'; ?format=png|json), "
        "GET /healthz, GET / (a page to drop an image on). The model is loaded once. "
        "Needs the serve extra: pip install 'fcnxs[serve]'.",
    )
    add_model_arguments(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: local)")
    p.add_argument("--port", type=PORT, default=8000)
    p.add_argument(
        "--max-upload-mb", type=real(0, open_low=True), default=20.0, help="largest request body"
    )
    p.add_argument("--max-pixels", type=POSITIVE, default=40_000_000, help="largest image, pixels")
    p.add_argument("--workers", type=POSITIVE, default=1, help="inferences at once")
    p.add_argument(
        "--queue", type=NON_NEGATIVE, default=16, help="requests that may wait; then 503"
    )
    add_engine_arguments(p, batches=False)  # one request, one image
    p.set_defaults(run=run)


def check_address(host: str, port: int) -> None:
    """Fail with one line if the server could not listen on ``host:port``."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as exc:
        raise FcnxsError(f"cannot listen on {host}:{port} ({exc.strerror or exc})") from None


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from fcnxs.apps.service import Limits, create_app
    except ImportError:
        raise FcnxsError("serve needs FastAPI and uvicorn: pip install 'fcnxs[serve]'") from None
    check_address(args.host, args.port)  # before minutes of model loading, not after
    segmenter = open_segmenter(args)
    limits = Limits(
        max_upload_bytes=int(args.max_upload_mb * (1 << 20)),
        max_pixels=args.max_pixels,
        workers=args.workers,
        queue=args.queue,
    )
    app = create_app(segmenter, limits)
    print(f"fcnxs: serving {args.model} on http://{args.host}:{args.port}/", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, timeout_graceful_shutdown=30)
    return 0
