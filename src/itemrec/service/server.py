"""Run the app under uvicorn: our own listening socket, timeouts, graceful shutdown.

* ``TCP_NODELAY`` on every connection, so a response's body does not wait for the
  client's delayed ACK of its headers (~40 ms per keep-alive request otherwise).
* The socket is bound and listening (backlog ``backlog``, default 2048, capped by the
  kernel's ``somaxconn``) before the URL is printed, so a burst of connections queues
  instead of being reset.
* uvicorn's httptools protocol with a **request read deadline**: a connection must
  deliver a whole request (headers and body) within ``request_timeout`` seconds of its
  first byte, and a new connection must send one within that time, else it gets
  ``408`` (if it sent part of a request) and is closed. Idle keep-alive connections
  close after ``keep_alive`` seconds (uvicorn's ``timeout_keep_alive``).
* SIGTERM or SIGINT: uvicorn stops accepting, finishes the requests in flight (at most
  ``graceful_timeout`` seconds), then the caller closes the service and the gallery.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from itemrec.service.limits import error_body


def _timed_protocol(request_timeout: float) -> type:
    """An ``HttpToolsProtocol`` subclass that closes connections which do not deliver a request in time."""

    class TimedHttpToolsProtocol(HttpToolsProtocol):
        _deadline: asyncio.TimerHandle | None = None
        _partial = False

        def _arm(self) -> None:
            if self._deadline is None:
                self._deadline = self.loop.call_later(request_timeout, self._on_deadline)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            sock = transport.get_extra_info("socket")
            if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
                # headers and body go out in two writes: without this the body waits for a delayed ACK (~40 ms)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self.cycle is None or self.cycle.response_complete:  # a new request, or the rest of a refused body
                self._partial = True
                self._arm()
            super().data_received(data)

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._partial = False
            self._disarm()
            if self.cycle.response_complete:  # a refused body fully drained: back to waiting
                self._arm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if self.cycle is not None and self.cycle.more_body:  # answered before the body arrived: bound the drain
                self._arm()

        def _on_deadline(self) -> None:
            self._deadline = None
            if self.transport.is_closing():
                return
            cycle = self.cycle
            waiting = cycle is None or cycle.response_complete
            if waiting and not self._partial:
                self.transport.close()  # nothing asked: just close
                return
            if cycle is not None and not cycle.response_complete:
                cycle.disconnected = True  # the app's receive() sees a disconnect, its send() is dropped
                cycle.message_event.set()
                if cycle.response_started:
                    self.transport.close()
                    return
            body = error_body(408, f"request not received within {request_timeout:g} s")
            self.transport.write(b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
                                 b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body))
            self.transport.close()

    return TimedHttpToolsProtocol


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback name or address.

    Args:
        host: a host name or an IPv4/IPv6 address.

    Returns:
        True for ``"localhost"`` and loopback addresses (127.0.0.0/8, ::1); False for any
        other name or address.
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """A listening TCP socket on ``host:port`` (``SO_REUSEADDR``, inheritable).

    Args:
        host: the address to bind (IPv6 when it contains ``:``).
        port: the TCP port (0: a free one, read it from ``sock.getsockname()``).
        backlog: the listen queue length (capped by the kernel's ``somaxconn``; default 2048).

    Returns:
        The bound, listening socket.

    Raises:
        OSError: the address cannot be bound (in use, not local, ...); the socket is closed first.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto IPPROTO_TCP (not 0): asyncio sets TCP_NODELAY only on sockets that say they are TCP
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def make_server(app: Any, request_timeout: float = 10.0, keep_alive: int = 5, graceful_timeout: int = 10,
                max_connections: int | None = 1000, verbose: bool = False) -> Any:
    """A ``uvicorn.Server`` for ``app`` (run it with ``server.run(sockets=[bind(...)])``).

    Args:
        app: the ASGI app (:func:`itemrec.service.app.create_app`).
        request_timeout: seconds a connection has to deliver a whole request.
        keep_alive: seconds an idle keep-alive connection stays open.
        graceful_timeout: seconds requests in flight get at SIGTERM.
        max_connections: connections served at once; more get 503 (None: no cap).
        verbose: log every request.

    Returns:
        The server, not yet running.
    """
    import uvicorn

    config = uvicorn.Config(
        app, http=_timed_protocol(request_timeout), lifespan="off", timeout_keep_alive=keep_alive,
        timeout_graceful_shutdown=graceful_timeout, limit_concurrency=max_connections,
        log_level="info" if verbose else "warning", access_log=verbose, server_header=False,
    )
    return uvicorn.Server(config)
