"""HTTP recognition service over a gallery, on the standard library's ``ThreadingHTTPServer``.

Why the standard library: the API is five JSON routes; ``http.server`` plus
``email`` (multipart) needs no new dependency, runs one thread per request, and
the heavy work (embedding, FAISS) releases the GIL. Put a reverse proxy (TLS)
in front of it for anything beyond a trusted network; it binds 127.0.0.1 by
default and refuses a non-loopback address without a token.

Routes (JSON in and out; errors are ``{"error": {"status", "message"}}``):

=========================  =====================================================
``GET /health``            status and gallery summary
``GET /items``             enrolled items
``POST /recognize?k=5``    one image as the raw body (``image/*`` or
                           ``application/octet-stream``) or multipart field(s);
                           answers top-k matches and ``unknown``
``POST /items``            enrol: multipart (``item_id``, ``name``,
                           ``attributes`` JSON, image files) or JSON
                           ``{"item_id", "name", "attributes", "images": [base64]}``
``DELETE /items/{id}``     remove an item
=========================  =====================================================

Writes need ``Authorization: Bearer TOKEN`` (401 without, 403 wrong; with no
token configured, writes are disabled); reads too when ``auth_reads``. Bodies
over ``max_upload_bytes`` get 413 before they are read, images over
``max_pixels`` 413, undecodable images 422, non-images 415, malformed requests 400.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import json
import threading
from dataclasses import dataclass
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np

DEFAULT_MAX_UPLOAD = 10 * 1024 * 1024
DEFAULT_MAX_PIXELS = 25_000_000


class HTTPError(Exception):
    """An answer other than 200: ``status`` and a message for the client."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


@dataclass
class ServiceConfig:
    token: str | None = None
    auth_reads: bool = False
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD
    max_pixels: int = DEFAULT_MAX_PIXELS
    default_k: int = 5
    max_k: int = 100


class RecognitionService:
    """The request logic, independent of HTTP plumbing (a gallery + its embedder + the policy)."""

    def __init__(self, gallery: Any, embedder: Any, config: ServiceConfig | None = None) -> None:
        self.gallery = gallery
        self.embedder = embedder
        self.config = config or ServiceConfig()
        embedder.max_pixels = self.config.max_pixels
        if gallery.embedder is None:
            gallery.attach(embedder)  # refuses a model that does not match the gallery
        self.lock = threading.Lock()  # one gallery access at a time (index mutation vs search)
        embedder.embed_arrays(np.zeros((1, *embedder.image_size, 3), np.uint8))  # build the predict function once

    # -- auth ---------------------------------------------------------------------
    def authorize(self, header: str | None, write: bool) -> None:
        token = self.config.token
        if not write and not self.config.auth_reads:
            return
        if token is None:
            raise HTTPError(403, "writes are disabled: the server was started without --token")
        if not header or not header.startswith("Bearer "):
            raise HTTPError(401, "missing bearer token (send 'Authorization: Bearer TOKEN')", {"WWW-Authenticate": "Bearer"})
        if not hmac.compare_digest(header[len("Bearer ") :].strip().encode(), token.encode()):
            raise HTTPError(403, "invalid token")

    # -- images -------------------------------------------------------------------
    def embed_uploads(self, files: list[tuple[str, bytes]]) -> np.ndarray:
        from itemrec.data.images import BadImageError

        if not files:
            raise HTTPError(400, "no image in the request")
        for name, data in files:
            if not data:
                raise HTTPError(400, f"{name}: empty upload")
        try:
            emb, _, _ = self.embedder.embed_files([d for _, d in files], strict=True, names=[n for n, _ in files])
        except BadImageError as exc:
            reason = exc.reason
            if reason.startswith("too many pixels") or reason.startswith("decompression bomb"):
                raise HTTPError(413, f"{exc.path}: {reason}") from exc
            if reason.startswith("not an image"):
                raise HTTPError(415, f"{exc.path}: {reason}; send a JPEG, PNG, GIF or BMP") from exc
            raise HTTPError(422, f"{exc.path}: {reason}") from exc
        return emb

    # -- routes ---------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        with self.lock:
            return {"status": "ok", "gallery": self.gallery.describe(), "model": self.embedder.fingerprint_id}

    def list_items(self) -> dict[str, Any]:
        with self.lock:
            frame = self.gallery.items()
        return {"items": json.loads(frame.to_json(orient="records"))}

    def recognize(self, files: list[tuple[str, bytes]], k: int) -> dict[str, Any]:
        emb = self.embed_uploads(files)
        with self.lock:
            results = self.gallery.query(vectors=emb, k=k)
        out = [r.to_dict() for r in results]
        return {"results": out, **out[0]} if len(out) == 1 else {"results": out}

    def enroll(self, item_id: str, name: str | None, attributes: dict | None, files: list[tuple[str, bytes]]) -> dict[str, Any]:
        if not item_id:
            raise HTTPError(400, "item_id is required")
        emb = self.embed_uploads(files)
        with self.lock:
            res = self.gallery.enroll(item_id, name, vectors=emb, attributes=attributes)
        return {"item_id": res.item_id, "n_vectors": res.n_vectors, "generation": res.generation}

    def remove(self, item_id: str) -> dict[str, Any]:
        from itemrec.gallery import ItemNotFoundError

        with self.lock:
            try:
                n = self.gallery.remove(item_id)
            except ItemNotFoundError as exc:
                raise HTTPError(404, str(exc)) from exc
        return {"item_id": item_id, "removed_vectors": n}


def _parse_multipart(content_type: str, body: bytes) -> tuple[dict[str, str], list[tuple[str, bytes]]]:
    """(text fields, [(filename, bytes)]) of a multipart/form-data body."""
    msg = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
    if not msg.is_multipart():
        raise HTTPError(400, "malformed multipart body")
    fields: dict[str, str] = {}
    files: list[tuple[str, bytes]] = []
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        filename = part.get_filename()
        payload = part.get_payload(decode=True) or b""
        if filename is not None or (part.get_content_type() != "text/plain" and name not in (None, "item_id", "name", "attributes")):
            files.append((filename or name or f"part {len(files)}", payload))
        elif name:
            fields[name] = payload.decode("utf-8", "replace")
    return fields, files


class Handler(BaseHTTPRequestHandler):
    server_version = "itemrec"
    protocol_version = "HTTP/1.1"

    @property
    def service(self) -> RecognitionService:
        return self.server.service  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        if getattr(self.server, "verbose", False):
            super().log_message(format, *args)

    def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        length = self.headers.get("Content-Length")
        if length is None:
            raise HTTPError(411, "Content-Length required")
        try:
            n = int(length)
        except ValueError as exc:
            raise HTTPError(400, f"bad Content-Length {length!r}") from exc
        limit = self.service.config.max_upload_bytes
        if n > limit:
            self.close_connection = True  # do not read (or wait for) the oversized body
            raise HTTPError(413, f"upload of {n} bytes exceeds the limit of {limit} bytes")
        return self.rfile.read(n)

    def _files(self, body: bytes) -> tuple[dict[str, str], list[tuple[str, bytes]]]:
        ctype = self.headers.get("Content-Type", "")
        main = ctype.split(";")[0].strip().lower()
        if main == "multipart/form-data":
            return _parse_multipart(ctype, body)
        if main == "application/json":
            try:
                doc = json.loads(body or b"{}")
                images = doc.get("images", [])
                if isinstance(images, str):
                    images = [images]
                files = [(f"images[{i}]", base64.b64decode(s, validate=True)) for i, s in enumerate(images)]
            except (json.JSONDecodeError, AttributeError, binascii.Error, TypeError) as exc:
                raise HTTPError(400, f"bad JSON body ({exc}); expected {{'images': [base64, ...]}}") from exc
            attrs = doc.get("attributes")
            fields = {k: doc[k] for k in ("item_id", "name") if doc.get(k) is not None}
            if attrs is not None:
                fields["attributes"] = json.dumps(attrs)
            return {k: str(v) for k, v in fields.items()}, files
        if main.startswith("image/") or main in ("application/octet-stream", ""):
            return {}, [("body", body)]
        raise HTTPError(415, f"unsupported Content-Type {ctype!r}; send an image, multipart/form-data or JSON")

    def _dispatch(self, method: str) -> None:
        try:
            url = urlsplit(self.path)
            route = url.path.rstrip("/") or "/"
            query = parse_qs(url.query)
            write = method in ("POST", "DELETE") and route != "/recognize"
            self.service.authorize(self.headers.get("Authorization"), write)
            if method == "GET" and route == "/health":
                return self._send(200, self.service.health())
            if method == "GET" and route == "/items":
                return self._send(200, self.service.list_items())
            if method == "POST" and route == "/recognize":
                k = self._k(query)
                _, files = self._files(self._body())
                return self._send(200, self.service.recognize(files, k))
            if method == "POST" and route == "/items":
                fields, files = self._files(self._body())
                attrs = None
                if "attributes" in fields:
                    try:
                        attrs = json.loads(fields["attributes"])
                    except json.JSONDecodeError as exc:
                        raise HTTPError(400, f"attributes must be JSON ({exc})") from exc
                    if not isinstance(attrs, dict):
                        raise HTTPError(400, "attributes must be a JSON object")
                return self._send(200, self.service.enroll(fields.get("item_id", ""), fields.get("name"), attrs, files))
            if method == "DELETE" and route.startswith("/items/"):
                return self._send(200, self.service.remove(unquote(route[len("/items/") :])))
            if route in ("/health", "/items", "/recognize") or route.startswith("/items/"):
                raise HTTPError(405, f"{method} not allowed on {route}")
            raise HTTPError(404, f"no route {route}")
        except HTTPError as exc:
            self._send(exc.status, {"error": {"status": exc.status, "message": exc.message}}, exc.headers)
        except Exception as exc:  # noqa: BLE001 - answer 500 rather than drop the connection
            from itemrec.gallery import GalleryError

            status = 400 if isinstance(exc, (GalleryError, ValueError)) else 500
            self._send(status, {"error": {"status": status, "message": f"{type(exc).__name__}: {exc}"}})

    def _k(self, query: dict[str, list[str]]) -> int:
        raw = query.get("k", [str(self.service.config.default_k)])[0]
        try:
            k = int(raw)
        except ValueError as exc:
            raise HTTPError(400, f"k must be an integer, got {raw!r}") from exc
        if not 1 <= k <= self.service.config.max_k:
            raise HTTPError(400, f"k must lie in 1..{self.service.config.max_k}, got {k}")
        return k

    def do_GET(self) -> None:  # noqa: N802
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")


def make_server(service: RecognitionService, host: str = "127.0.0.1", port: int = 8765, verbose: bool = False) -> ThreadingHTTPServer:
    """A bound (not yet serving) threaded HTTP server; ``port=0`` picks a free port (see ``server_address``)."""
    if not _is_loopback(host) and service.config.token is None:
        raise ValueError(f"refusing to listen on {host} without a token; pass --token or bind 127.0.0.1")
    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    server.service = service  # type: ignore[attr-defined]
    server.verbose = verbose  # type: ignore[attr-defined]
    return server


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
