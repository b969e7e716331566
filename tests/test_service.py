"""The HTTP service: a real `itemrec serve` process on 127.0.0.1 (free port) and a real client."""

from __future__ import annotations

import base64
import io
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

keras = pytest.importorskip("keras")
requests = pytest.importorskip("requests")

from itemrec.embedder import ImageEmbedder  # noqa: E402
from itemrec.gallery import Gallery  # noqa: E402

SIZE = 16
TOKEN = "s3cret-token"
MAX_UPLOAD = 20_000  # bytes (the server gets --max-upload-mb as MiB)


def tiny_model() -> "keras.Model":
    keras.utils.set_random_seed(0)
    inp = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inp)
    x = keras.layers.Conv2D(8, 3)(x)
    x = keras.layers.Flatten()(x)
    out = keras.layers.Dense(16)(x)
    return keras.Model(inp, out, name="tiny_service_model")


def png(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("service")
    model_path = ImageEmbedder(tiny_model(), SIZE).save(tmp / "model.keras")
    embedder = ImageEmbedder.load(model_path)  # what the server will load
    rng = np.random.default_rng(0)
    images = {f"item{i}": rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8) for i in range(4)}
    stranger = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    g = Gallery.create(tmp / "gallery", embedder)
    for item, img in images.items():
        g.enroll(item, item.upper(), images=img, attributes={"shelf": item[-1]})
    # threshold halfway between the stranger's best similarity and an exact match (1.0)
    s_stranger = g.query(images=stranger, k=1)[0].matches[0].similarity
    assert s_stranger < 0.9, s_stranger  # the tiny model does tell these images apart
    g.set_threshold((1.0 + s_stranger) / 2)
    g.close()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "itemrec", "serve", str(tmp / "gallery"), "--model", str(model_path),
           "--port", "0", "--token", TOKEN, "--max-upload-mb", str(MAX_UPLOAD / 2**20), "--max-pixels", "5000"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    line = proc.stdout.readline()
    if "serving" not in line:
        proc.kill()
        pytest.fail(f"server did not start: {line!r} {proc.stderr.read()[-3000:]}")
    url = line.strip().rsplit(" ", 1)[1]
    assert url.startswith("http://127.0.0.1:")
    yield {"url": url, "images": images, "stranger": stranger, "proc": proc}
    proc.terminate()  # SIGTERM: the server shuts down and saves its index
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:  # a very busy machine: do not leave it behind
        proc.kill()
        proc.wait()


def auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_health_items_and_recognise_round_trip(server):
    url, images = server["url"], server["images"]
    health = requests.get(f"{url}/health", timeout=10).json()
    assert health["status"] == "ok" and health["gallery"]["items"] == 4 and health["gallery"]["dim"] == 16
    items = requests.get(f"{url}/items", timeout=10).json()["items"]
    assert sorted(i["item_id"] for i in items) == ["item0", "item1", "item2", "item3"]
    # raw body upload
    r = requests.post(f"{url}/recognize?k=2", data=png(images["item2"]), headers={"Content-Type": "image/png"}, timeout=30)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["item_id"] == "item2" and not body["unknown"] and len(body["matches"]) == 2
    assert body["matches"][0]["similarity"] == pytest.approx(1.0, abs=1e-4)
    assert body["matches"][0]["name"] == "ITEM2" and body["matches"][0]["attributes"] == {"shelf": "2"}
    # multipart upload of a never-enrolled image: unknown
    r = requests.post(f"{url}/recognize", files={"image": ("q.png", png(server["stranger"]), "image/png")}, timeout=30)
    assert r.status_code == 200 and r.json()["unknown"] and r.json()["item_id"] is None


def test_writes_need_the_token(server):
    url = server["url"]
    files = {"image": ("a.png", png(server["stranger"]), "image/png")}
    r = requests.post(f"{url}/items", files=files, data={"item_id": "new"}, timeout=10)
    assert r.status_code == 401 and r.headers["WWW-Authenticate"] == "Bearer"
    r = requests.post(f"{url}/items", files=files, data={"item_id": "new"}, headers=auth("wrong"), timeout=10)
    assert r.status_code == 403 and r.json()["error"]["message"] == "invalid token"
    assert requests.delete(f"{url}/items/item0", timeout=10).status_code == 401
    assert requests.get(f"{url}/items", timeout=10).json()["items"][0]["item_id"] == "item0"  # nothing changed


def test_size_and_pixel_limits(server):
    url = server["url"]
    r = requests.post(f"{url}/recognize", data=b"\0" * (MAX_UPLOAD + 1), headers={"Content-Type": "image/png"}, timeout=10)
    assert r.status_code == 413 and "exceeds the limit" in r.json()["error"]["message"]
    big = np.zeros((100, 100, 3), np.uint8)  # 10,000 px > --max-pixels 5000, but a small PNG
    r = requests.post(f"{url}/recognize", data=png(big), headers={"Content-Type": "image/png"}, timeout=10)
    assert r.status_code == 413 and "too many pixels" in r.json()["error"]["message"]


def test_bad_requests_and_bad_images(server):
    url = server["url"]
    good = png(server["images"]["item1"])
    cases = [
        (dict(data=b"", headers={"Content-Type": "image/png"}), 400, "empty upload"),
        (dict(data=b"hello, not an image", headers={"Content-Type": "image/jpeg"}), 415, "not an image"),
        (dict(data=good[: len(good) // 2], headers={"Content-Type": "image/png"}), 422, "body"),
        (dict(data=b"x", headers={"Content-Type": "text/plain"}), 415, "Content-Type"),
    ]
    for kwargs, status, text in cases:
        r = requests.post(f"{url}/recognize", timeout=10, **kwargs)
        assert r.status_code == status, (kwargs.get("headers"), r.text)
        assert text in r.json()["error"]["message"]
    assert requests.post(f"{url}/recognize?k=abc", data=good, timeout=10).status_code == 400
    assert requests.post(f"{url}/recognize?k=0", data=good, timeout=10).status_code == 400
    r = requests.post(f"{url}/items", json={"item_id": "x", "images": ["***"]}, headers=auth(), timeout=10)
    assert r.status_code == 400 and "base64" in r.json()["error"]["message"]
    assert requests.get(f"{url}/nowhere", timeout=10).status_code == 404
    assert requests.delete(f"{url}/items/never-enrolled", headers=auth(), timeout=10).status_code == 404


def test_enrol_recognise_delete_and_concurrent_requests(server):
    url, stranger = server["url"], server["stranger"]
    r = requests.post(f"{url}/items", headers=auth(), timeout=30,
                      files=[("image", ("s.png", png(stranger), "image/png"))],
                      data={"item_id": "stranger", "name": "Stranger", "attributes": '{"aisle": 7}'})
    assert r.status_code == 200, r.text
    assert r.json()["n_vectors"] == 1
    other = np.random.default_rng(9).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    r = requests.post(f"{url}/items", headers=auth(), timeout=30,
                      json={"item_id": "json-item", "name": "J", "images": [base64.b64encode(png(other)).decode()]})
    assert r.status_code == 200, r.text

    def recognise(item_img):
        item, img = item_img
        resp = requests.post(f"{url}/recognize", data=png(img), headers={"Content-Type": "image/png"}, timeout=60)
        return item, resp.status_code, resp.json().get("item_id")

    work = [*server["images"].items(), ("stranger", stranger), ("json-item", other)] * 4
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(recognise, work))
    assert all(code == 200 and got == item for item, code, got in answers), answers
    match = requests.post(f"{url}/recognize", data=png(stranger), timeout=30).json()["matches"][0]
    assert match["attributes"] == {"aisle": 7}

    r = requests.delete(f"{url}/items/stranger", headers=auth(), timeout=10)
    assert r.status_code == 200 and r.json()["removed_vectors"] == 1
    r = requests.post(f"{url}/recognize", data=png(stranger), timeout=30).json()
    assert r["unknown"] and r["matches"][0]["item_id"] != "stranger"
    assert requests.delete(f"{url}/items/stranger", headers=auth(), timeout=10).status_code == 404
