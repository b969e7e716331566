"""``itemrec serve GALLERY --model MODEL.keras``: the HTTP recognition service (see :mod:`itemrec.service`)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import Any

from itemrec.cli import CLIError


def register(subparsers: Any) -> None:
    """Add the ``serve`` command to the ``itemrec`` parser.

    Args:
        subparsers: the top-level parser's ``add_subparsers()`` action.
    """
    p = subparsers.add_parser(
        "serve",
        help="serve recognition over HTTP (JSON API and a web page)",
        description="Serve the web page at /, GET /health, GET /items, GET /items/ID/thumbnail, POST /recognize, "
                    "POST /items, DELETE /items/ID over HTTP (FastAPI on uvicorn; OpenAPI page at /docs).",
    )
    p.add_argument("gallery", help="gallery folder")
    p.add_argument("--model", required=True, help="embedding model (.keras) the gallery was built with")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1, loopback only)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 picks a free one)")
    p.add_argument("--token", default=os.environ.get("ITEMREC_TOKEN"),
                   help="bearer token for writes (default $ITEMREC_TOKEN; without one, writes are disabled)")
    p.add_argument("--auth-reads", action="store_true", help="require the token for reads too")
    p.add_argument("--max-upload-mb", type=float, default=10.0, help="largest request body in MiB (default 10)")
    p.add_argument("--max-pixels", type=int, default=25_000_000, help="largest image in pixels (default 25e6)")
    p.add_argument("--max-images", type=int, default=16, help="most images in one request (default 16)")
    p.add_argument("--request-timeout", type=float, default=10.0,
                   help="seconds a connection has to send a whole request (default 10; then 408)")
    p.add_argument("--backlog", type=int, default=2048, help="listen backlog for connection bursts (default 2048)")
    p.add_argument("--max-connections", type=int, default=1000, help="connections served at once; more get 503 (default 1000)")
    p.add_argument("--verbose", action="store_true", help="log every request")
    p.set_defaults(handler=_serve)


def _check_args(args: argparse.Namespace) -> None:
    from itemrec.service.server import is_loopback

    if args.auth_reads and not args.token:
        raise CLIError("--auth-reads needs --token (or ITEMREC_TOKEN)")
    if not is_loopback(args.host) and not args.token:
        raise CLIError(f"refusing to listen on {args.host} without a token; pass --token or bind 127.0.0.1")
    for name in ("max_upload_mb", "max_pixels", "max_images", "request_timeout", "backlog", "max_connections"):
        if getattr(args, name) <= 0:
            raise CLIError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")


def _serve(args: argparse.Namespace) -> int:
    _check_args(args)
    from itemrec.embedder import ImageEmbedder
    from itemrec.gallery import Gallery, GalleryError
    from itemrec.service import RecognitionService, ServiceConfig
    from itemrec.service.app import create_app
    from itemrec.service.server import bind, make_server

    try:
        embedder = ImageEmbedder.load(args.model)  # the shared loader: exit 2 with a message on a wrong file
        gallery = Gallery.open(args.gallery, embedder=embedder)
    except (GalleryError, ValueError) as exc:
        raise CLIError(str(exc)) from exc
    config = ServiceConfig(token=args.token, auth_reads=args.auth_reads, max_images=args.max_images,
                           max_upload_bytes=int(args.max_upload_mb * 1024 * 1024), max_pixels=args.max_pixels)
    service = None
    try:
        service = RecognitionService(gallery, embedder, config)
        try:
            sock = bind(args.host, args.port, args.backlog)
        except OSError as exc:
            raise CLIError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from exc
        server = make_server(create_app(service), request_timeout=args.request_timeout,
                             max_connections=args.max_connections, verbose=args.verbose)
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        print(f"itemrec: serving {args.gallery} on http://{shown}:{port}", flush=True)
        # uvicorn handles SIGTERM/SIGINT (graceful shutdown), then restores these handlers and
        # re-raises the signal: ours just lets the code below close the service and the gallery.
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda signum, frame: None)
        server.run(sockets=[sock])  # returns after SIGTERM/SIGINT and a graceful shutdown
    finally:
        if service is not None:
            service.close()
        gallery.close()
    print("itemrec: server stopped", file=sys.stderr)
    return 0
