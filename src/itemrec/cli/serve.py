"""``itemrec serve GALLERY --model MODEL.keras``: the HTTP recognition service (see :mod:`itemrec.service`)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import Any

from itemrec.cli import CLIError


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "serve",
        help="serve recognition over HTTP (JSON API)",
        description="Serve GET /health, GET /items, POST /recognize, POST /items, DELETE /items/ID over HTTP.",
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
    p.add_argument("--verbose", action="store_true", help="log every request")
    p.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace) -> int:
    from itemrec.embedder import ImageEmbedder
    from itemrec.gallery import Gallery, GalleryError
    from itemrec.service import RecognitionService, ServiceConfig, make_server

    if args.auth_reads and not args.token:
        raise CLIError("--auth-reads needs --token (or ITEMREC_TOKEN)")
    try:
        embedder = ImageEmbedder.load(args.model)
        gallery = Gallery.open(args.gallery, embedder=embedder)
    except (GalleryError, ValueError) as exc:
        raise CLIError(str(exc)) from exc
    config = ServiceConfig(token=args.token, auth_reads=args.auth_reads,
                           max_upload_bytes=int(args.max_upload_mb * 1024 * 1024), max_pixels=args.max_pixels)
    try:
        server = make_server(RecognitionService(gallery, embedder, config), args.host, args.port, args.verbose)
    except (ValueError, OSError) as exc:
        raise CLIError(str(exc)) from exc
    def stop(signum: int, frame: Any) -> None:  # SIGTERM: shut down like Ctrl-C (index file saved)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    host, port = server.server_address[:2]
    print(f"itemrec: serving {args.gallery} on http://{host}:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        gallery.close()
    print("itemrec: server stopped", file=sys.stderr)
    return 0
