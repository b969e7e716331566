"""Request body limits as a pure ASGI middleware, before any route reads a byte.

* ``Content-Length`` that is not a non-negative integer: 400.
* ``Content-Length`` over the limit: 413 at once, without reading the body. The
  connection stays open: uvicorn discards the rest of the body as it arrives
  (bounded by the server's request read timeout), so a client that sends its whole
  body before reading gets the 413 rather than a reset.
* A body without ``Content-Length`` (chunked) is counted as it streams in; the request
  gets 413 as soon as it passes the limit.
"""

from __future__ import annotations

import json
from typing import Any

Scope = dict[str, Any]


class BodyTooLarge(Exception):
    """Raised inside ``receive`` when a streamed body passes the limit."""


def error_body(status: int, message: str) -> bytes:
    """The service's JSON error shape: ``{"error": {"status", "message"}}``.

    Args:
        status: the HTTP status code.
        message: what went wrong, for a person.

    Returns:
        The encoded UTF-8 JSON body.
    """
    return json.dumps({"error": {"status": status, "message": message}}).encode()


async def send_error(send: Any, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """Send a complete JSON error response on a raw ASGI ``send``.

    Args:
        send: the ASGI send callable.
        status: the HTTP status code.
        message: what went wrong.
        headers: extra ``(name, value)`` byte headers after ``content-type`` and ``content-length``.
    """
    body = error_body(status, message)
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


class BodyLimitMiddleware:
    """Refuse bodies over ``limit`` bytes (see the module docstring).

    Args:
        app: the ASGI app to wrap.
        get_limit: a callable giving the limit in bytes, read per request, so the service
            config stays the one place it is set.
    """

    def __init__(self, app: Any, get_limit: Any) -> None:
        self.app = app
        self.get_limit = get_limit

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = int(self.get_limit())
        lengths = [v for k, v in scope["headers"] if k == b"content-length"]
        if lengths:
            raw = lengths[0].decode("latin-1").strip()
            if len(set(lengths)) > 1 or not raw.isdigit():
                await send_error(send, 400, f"bad Content-Length {raw!r}: expected one non-negative integer")
                return
            if int(raw) > limit:
                await send_error(send, 413, f"upload of {int(raw)} bytes exceeds the limit of {limit} bytes")
                return
        started = False
        received = 0

        async def limited_receive() -> dict[str, Any]:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge()
            return message

        async def tracking_send(message: dict[str, Any]) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await send_error(send, 413, f"upload exceeds the limit of {limit} bytes")
