"""Helpers for the service tests: a tiny offline model, a small gallery, a real `itemrec serve` process."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image


def png(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def tiny_model(size: int, dim: int = 16):
    """A small random-weight CNN (no download): raw RGB 0..255 in, ``dim`` floats out."""
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((size, size, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inp)
    x = keras.layers.Conv2D(8, 3)(x)
    x = keras.layers.Flatten()(x)
    out = keras.layers.Dense(dim)(x)
    return keras.Model(inp, out, name="tiny_service_model")


def start_server(gallery: Path, model: Path, *args: str) -> tuple[subprocess.Popen, str]:
    """Start ``itemrec serve`` on a free loopback port; ``(process, base URL)``.

    Its stderr goes to ``<gallery>.stderr.log`` (``server_log(proc)``), never to an unread pipe
    that could fill up and block the server.
    """
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "itemrec", "serve", str(gallery), "--model", str(model), "--port", "0", *args]
    log = Path(f"{gallery}.stderr.log")
    with open(log, "w") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=env)
    proc.log_path = log  # type: ignore[attr-defined]
    line = proc.stdout.readline()
    if "serving" not in line:
        proc.kill()
        proc.wait()
        raise RuntimeError(f"server did not start: {line!r} {server_log(proc)[-3000:]}")
    url = line.strip().rsplit(" ", 1)[1]
    return proc, url


def server_log(proc: subprocess.Popen) -> str:
    """What the server wrote to stderr so far."""
    return Path(proc.log_path).read_text()  # type: ignore[attr-defined]


def stop_server(proc: subprocess.Popen, timeout: float = 60) -> int:
    """SIGTERM, wait; kill if it does not stop (a very busy machine). Returns the exit code."""
    proc.terminate()
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise
