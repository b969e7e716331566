"""The service under abuse, through real sockets against a real `itemrec serve` process.

Each case is one the stdlib server failed: a negative Content-Length hung, an 11 MiB body
got a broken pipe instead of 413, stalled connections were held forever, one request could
carry 1,000 images, a burst of 200 connections was reset, SIGTERM after abuse did not stop it.
"""

from __future__ import annotations

import base64
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import numpy as np
import pytest

keras = pytest.importorskip("keras")
requests = pytest.importorskip("requests")

from itemrec.embedder import ImageEmbedder  # noqa: E402
from itemrec.gallery import Gallery  # noqa: E402
from service_helpers import png, server_log, start_server, stop_server, tiny_model  # noqa: E402

SIZE = 16
TOKEN = "limits-token"
MAX_IMAGES = 3
REQUEST_TIMEOUT = 1.5  # seconds (--request-timeout)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("service_limits")
    model_path = ImageEmbedder(tiny_model(SIZE), SIZE).save(tmp / "model.keras")
    embedder = ImageEmbedder.load(model_path)
    rng = np.random.default_rng(1)
    images = {f"item{i}": rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8) for i in range(3)}
    g = Gallery.create(tmp / "gallery", embedder)
    for item, img in images.items():
        g.enroll(item, item.upper(), images=img)
    photo = tmp / "smooth.png"  # enrolled from a file: its thumbnail comes from the source path
    ramp = np.arange(SIZE, dtype=np.uint8) * 15
    smooth = np.stack(np.broadcast_arrays(ramp[None, :], ramp[:, None], np.uint8(128)), -1).astype(np.uint8)
    photo.write_bytes(png(smooth))
    g.enroll("from-file", "From file", paths=[photo])
    g.close()
    proc, url = start_server(tmp / "gallery", model_path, "--token", TOKEN, "--max-images", str(MAX_IMAGES),
                             "--request-timeout", str(REQUEST_TIMEOUT), "--max-upload-mb", "10")
    yield {"url": url, "images": images, "proc": proc, "smooth": smooth}
    if proc.poll() is None:
        stop_server(proc)


def _addr(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname, parts.port


def _raw(url: str, request: bytes, timeout: float = 10) -> bytes:
    """Send raw bytes on a fresh connection; everything the server answers until it closes or goes quiet."""
    with socket.create_connection(_addr(url), timeout=timeout) as s:
        s.sendall(request)
        chunks = []
        try:
            while chunk := s.recv(65536):
                chunks.append(chunk)
                if b"\r\n\r\n" in b"".join(chunks) and b"connection: close" not in b"".join(chunks).lower():
                    break
        except TimeoutError:
            pass
    return b"".join(chunks)


def test_negative_or_bad_content_length_answers_400(server):
    for value in (b"-5", b"abc"):
        # a hung server sends nothing before _raw's socket timeout, and the reply is empty
        reply = _raw(server["url"], b"POST /recognize HTTP/1.1\r\nHost: x\r\nContent-Length: " + value + b"\r\n\r\n")
        assert reply.startswith(b"HTTP/1.1 400"), reply[:200]


def test_every_connection_gets_tcp_nodelay():
    """Headers and body are two writes; without TCP_NODELAY the body waited ~40 ms for the client's
    delayed ACK on every keep-alive request. Checked as the socket option on the server's side of
    real connections, served in this process by the same uvicorn server and protocol as
    ``itemrec serve`` (the latency itself is measured in ``bench/bench_service.py``)."""
    import threading

    from itemrec.service.server import bind, make_server

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    server = make_server(app)
    sock = bind("127.0.0.1", 0)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        for _ in range(2000):  # until it serves (a hang-stopper, not a speed bound)
            if server.started:
                break
            time.sleep(0.01)
        assert server.started
        clients = [socket.create_connection(sock.getsockname(), timeout=10) for _ in range(3)]
        for c in clients:
            c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            reply = b""
            while not reply.endswith(b"ok"):  # answered (headers, then the body): the connection is made
                chunk = c.recv(65536)
                assert chunk, reply
                reply += chunk
        conns = list(server.server_state.connections)
        assert len(conns) == 3
        for proto in conns:
            served = proto.transport.get_extra_info("socket")
            assert served.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        for c in clients:
            c.close()
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def test_an_11_mib_body_gets_the_413(server):
    body = b"\0" * (11 * 1024 * 1024)  # over the 10 MiB limit, far beyond the socket buffers
    r = requests.post(f"{server['url']}/recognize", data=body, headers={"Content-Type": "image/png"}, timeout=60)
    assert r.status_code == 413
    assert r.json()["error"] == {"status": 413, "message": f"upload of {len(body)} bytes exceeds the limit of {10 * 2**20} bytes"}
    # the same connection keeps working: the server discarded the refused body
    with requests.Session() as s:
        assert s.post(f"{server['url']}/recognize", data=body, timeout=60).status_code == 413
        assert s.get(f"{server['url']}/health", timeout=10).status_code == 200


def test_images_per_request_are_capped(server):
    url, img = server["url"], png(server["images"]["item1"])
    files = [("image", (f"{i}.png", img, "image/png")) for i in range(MAX_IMAGES + 1)]
    r = requests.post(f"{url}/recognize", files=files, timeout=30)
    assert r.status_code == 413 and f"the limit is {MAX_IMAGES}" in r.json()["error"]["message"]
    r = requests.post(f"{url}/recognize", files=files[:MAX_IMAGES], timeout=30)
    assert r.status_code == 200 and len(r.json()["results"]) == MAX_IMAGES
    assert all(res["item_id"] == "item1" for res in r.json()["results"])
    r = requests.post(f"{url}/recognize", json={"images": [base64.b64encode(img).decode()]}, timeout=30)
    assert r.status_code == 200 and r.json()["item_id"] == "item1"  # JSON bodies need no item_id to recognise
    r = requests.post(f"{url}/items", json={"images": [base64.b64encode(img).decode()]},
                      headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    assert r.status_code == 400 and r.json()["error"]["message"] == "item_id is required"
    doc = {"item_id": "many", "images": [base64.b64encode(img).decode()] * (MAX_IMAGES + 1)}
    r = requests.post(f"{url}/items", json=doc, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    assert r.status_code == 413 and "the limit is 3" in r.json()["error"]["message"]


def test_stalled_connections_are_closed(server):
    url = server["url"]
    silent = [socket.create_connection(_addr(url), timeout=10) for _ in range(20)]
    partial = [socket.create_connection(_addr(url), timeout=10) for _ in range(20)]
    for s in partial:
        s.sendall(b"POST /recognize HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123")  # body never finished
    assert requests.get(f"{url}/health", timeout=10).status_code == 200  # still serving others
    time.sleep(REQUEST_TIMEOUT + 1.0)
    for s in silent:
        assert s.recv(1024) == b""  # closed by the server
        s.close()
    for s in partial:
        reply = s.recv(4096)
        assert reply.startswith(b"HTTP/1.1 408") and b'"status": 408' in reply, reply[:200]
        s.close()


def test_a_burst_of_200_connections_is_served(server):
    url, img = server["url"], png(server["images"]["item2"])

    def one(i: int) -> tuple[int, str | None]:
        if i % 2:
            return requests.get(f"{url}/health", timeout=120).status_code, None
        r = requests.post(f"{url}/recognize", data=img, headers={"Content-Type": "image/png"}, timeout=120)
        return r.status_code, r.json().get("item_id")

    with ThreadPoolExecutor(200) as pool:
        answers = list(pool.map(one, range(200)))
    assert [a for a in answers if a[0] != 200] == []
    assert {a[1] for a in answers[::2]} == {"item2"}


def test_thumbnails_error_shape_and_openapi(server):
    url = server["url"]
    r = requests.get(f"{url}/items/from-file/thumbnail", timeout=10)
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    from io import BytesIO

    from PIL import Image

    thumb = np.asarray(Image.open(BytesIO(r.content)).convert("RGB")).astype(int)
    assert thumb.shape == (SIZE, SIZE, 3)  # never enlarged
    assert np.abs(thumb - server["smooth"]).mean() < 6  # the enrolled photo, through JPEG q85
    assert np.abs(thumb - server["images"]["item1"]).mean() > 40  # not another one
    r = requests.get(f"{url}/items/item1/thumbnail", timeout=10)  # enrolled from an array: no photo on record
    assert r.status_code == 404 and r.json()["error"]["message"] == "item 'item1' has no photo on record"
    assert requests.get(f"{url}/items/nobody/thumbnail", timeout=10).json() == {
        "error": {"status": 404, "message": "item 'nobody' is not enrolled"}}
    r = requests.put(f"{url}/health", timeout=10)
    assert r.json() == {"error": {"status": 405, "message": "PUT not allowed on /health"}}
    assert requests.get(f"{url}/docs", timeout=10).status_code == 200
    spec = requests.get(f"{url}/openapi.json", timeout=10).json()
    assert {"/health", "/items", "/recognize", "/items/{item_id}", "/items/{item_id}/thumbnail"} <= set(spec["paths"])
    assert "RecognizeResponse" in spec["components"]["schemas"]


def test_sigterm_after_abuse_stops_promptly(server):
    """Last in this module: stalled and half-sent connections open, then SIGTERM."""
    url, proc = server["url"], server["proc"]
    held = [socket.create_connection(_addr(url), timeout=10) for _ in range(30)]
    for s in held[:15]:
        s.sendall(b"POST /items HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\nabc")
    assert stop_server(proc, timeout=30) == 0  # stopped by itself: stop_server kills only after 30 s
    log = server_log(proc)
    assert "server stopped" in log and "Traceback" not in log
    for s in held:
        s.close()
