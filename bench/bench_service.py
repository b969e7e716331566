"""Loopback load test of ``itemrec serve``: 1, 32 and 200 concurrent clients, side by side with the bare embedder.

A real server process (MobileNetV2 at ``--size`` px, local ImageNet weights when
``ITEMREC_WEIGHTS`` has them, else random weights: timings do not depend on the values)
serves a gallery of synthetic products. For each level, that many asyncio clients open
their connections at once (a burst) and send ``POST /recognize`` (one JPEG photo, raw
body) back to back on keep-alive connections for ``--seconds`` (at most 10). Counted:
answers by status, connection resets and other errors, latency p50/p99, throughput.

In the same run, before the load: the bare embedder's batch-1 rate (the same model,
``ImageEmbedder.embed_arrays`` on one fitted image, in this process while the server is
idle), which ``/recognize`` throughput is compared with (target >= 0.8x; the server batches
the forward passes of concurrent requests). Also ``GET /health`` latency on a fresh
connection per request vs one keep-alive connection (the stdlib server added ~40 ms on
keep-alive).

    nice python bench/bench_service.py [--size 96] [--seconds 8] [--levels 1,32,200]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def build(tmp: Path, size: int) -> tuple[Path, Path, bytes]:
    """(model path, gallery path, one query JPEG): MobileNetV2 embedder, 50 synthetic products enrolled."""
    import keras

    from itemrec import settings
    from itemrec.data.synthetic import write_catalogue
    from itemrec.embedder import ImageEmbedder
    from itemrec.gallery import Gallery
    from itemrec.models import attach_head, build_backbone

    try:
        weights = str(settings.local_weights())
    except settings.DataNotFoundError:
        weights = None
    keras.utils.set_random_seed(0)
    model = attach_head(build_backbone("mobilenet_v2", size, weights), None, preprocess="mobilenet_v2", name="bench_embedder")
    model_path = ImageEmbedder(model, size).save(tmp / "model.keras")
    ds = write_catalogue(tmp / "cat", n_products=50, photos_per_product=2, image_size=size, seed=0)
    g = Gallery.create(tmp / "gallery", ImageEmbedder.load(model_path))
    for p in sorted((tmp / "cat" / "catalogue").glob("*.jpg")):
        g.enroll(p.stem, paths=[p])
    g.close()
    print(f"model: MobileNetV2 {size} px, weights={'local ImageNet' if weights else 'random'}; gallery: 50 items")
    return model_path, tmp / "gallery", Path(ds.paths[1]).read_bytes()


def bare_rate(model_path: Path, jpeg: bytes, seconds: float = 4.0) -> float:
    """Images/s of the bare embedder, batch 1, on an already decoded and fitted image."""
    from PIL import Image

    from itemrec.data.images import fit_image
    from itemrec.embedder import ImageEmbedder

    e = ImageEmbedder.load(model_path)
    img = fit_image(np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB")), e.image_size)[None]
    for _ in range(5):
        e.embed_arrays(img)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        e.embed_arrays(img)
        n += 1
    return n / (time.perf_counter() - t0)


async def _request(reader, writer, head: bytes, body: bytes) -> int:
    writer.write(head + body)
    await writer.drain()
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionResetError("closed by the server")
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    await reader.readexactly(length)
    return int(status_line.split()[1])


async def _client(host: str, port: int, head: bytes, body: bytes, deadline: float, out: dict) -> None:
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 30)
    except (ConnectionError, OSError, asyncio.TimeoutError) as exc:
        out["resets" if isinstance(exc, ConnectionError) else "errors"] += 1
        return
    try:
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            status = await asyncio.wait_for(_request(reader, writer, head, body), 60)
            out["latency"].append(time.perf_counter() - t0)
            out["status"][status] = out["status"].get(status, 0) + 1
    except (ConnectionError, asyncio.IncompleteReadError) as exc:
        out["resets"] += 1
        out["why"].append(type(exc).__name__)
    except (OSError, asyncio.TimeoutError, ValueError) as exc:
        out["errors"] += 1
        out["why"].append(type(exc).__name__)
    finally:
        writer.close()


async def load(host: str, port: int, path: str, body: bytes, clients: int, seconds: float) -> dict:
    method = b"POST" if body else b"GET"
    head = (b"%s %s HTTP/1.1\r\nHost: %s\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n"
            % (method, path.encode(), host.encode(), len(body)))
    out = {"latency": [], "status": {}, "resets": 0, "errors": 0, "why": []}
    t0 = time.perf_counter()
    await asyncio.gather(*(_client(host, port, head, body, t0 + seconds, out) for _ in range(clients)))
    out["wall"] = time.perf_counter() - t0
    return out


def health_latency(host: str, port: int, n: int = 100) -> tuple[float, float]:
    """p50 ms of GET /health: a fresh connection each, and one keep-alive connection."""
    import http.client

    fresh, kept = [], []
    for _ in range(n):
        t0 = time.perf_counter()
        c = http.client.HTTPConnection(host, port, timeout=10)
        c.request("GET", "/health")
        c.getresponse().read()
        c.close()
        fresh.append(time.perf_counter() - t0)
    c = http.client.HTTPConnection(host, port, timeout=10)
    for _ in range(n):
        t0 = time.perf_counter()
        c.request("GET", "/health")
        c.getresponse().read()
        kept.append(time.perf_counter() - t0)
    c.close()
    return 1000 * float(np.median(fresh)), 1000 * float(np.median(kept))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--seconds", type=float, default=8.0, help="per level, at most 10")
    parser.add_argument("--levels", default="1,32,200")
    args = parser.parse_args()
    seconds = min(args.seconds, 10.0)
    levels = [int(v) for v in args.levels.split(",")]
    print(f"bench_service: {os.cpu_count()} CPU threads visible (may be shared); {seconds:g} s per level")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        model_path, gallery, jpeg = build(tmp, args.size)
        bare = bare_rate(model_path, jpeg)
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
        log = open(tmp / "server.log", "w")
        proc = subprocess.Popen([sys.executable, "-m", "itemrec", "serve", str(gallery), "--model", str(model_path),
                                 "--port", "0"], stdout=subprocess.PIPE, stderr=log, text=True, env=env)
        try:
            url = proc.stdout.readline().strip().rsplit(" ", 1)[-1]
            host, port = url[len("http://"):].rsplit(":", 1)
            port = int(port)
            fresh, kept = health_latency(host, port)
            print(f"GET /health p50: fresh connection {fresh:.1f} ms, keep-alive {kept:.1f} ms")
            print(f"bare embedder, batch 1 (this process, server idle): {bare:7.1f} img/s")
            print(f"{'clients':>7} {'answers':>8} {'non-200':>8} {'resets':>7} {'errors':>7} {'p50 ms':>8} {'p99 ms':>8} "
                  f"{'req/s':>7} {'vs bare':>8}")
            asyncio.run(load(host, port, "/recognize", jpeg, 4, 2.0))  # warm-up
            for clients in levels:
                r = asyncio.run(load(host, port, "/recognize", jpeg, clients, seconds))
                lat = np.asarray(r["latency"]) * 1000
                ok = r["status"].get(200, 0)
                rate = ok / r["wall"]
                p50, p99 = (np.percentile(lat, 50), np.percentile(lat, 99)) if len(lat) else (float("nan"),) * 2
                print(f"{clients:7d} {ok:8d} {sum(r['status'].values()) - ok:8d} {r['resets']:7d} {r['errors']:7d} "
                      f"{p50:8.1f} {p99:8.1f} {rate:7.1f} {rate / bare:7.2f}x" + (f"  ({set(r['why'])})" if r["why"] else ""))
            print("target: 0 resets/errors at 200 clients; /recognize throughput >= 0.8x the bare batch-1 rate")
        finally:
            proc.terminate()
            proc.wait(60)
            log.close()


if __name__ == "__main__":
    main()
