"""Up-front checks of image files before a pipeline uses them.

:func:`probe_image` is the cheap check (header, JPEG end marker, PNG chunk
CRCs; anything else fully decoded), or with ``decode=True`` the full decode of
:func:`itemrec.data.images.read_image`. A cheap pass cannot see damaged JPEG
scan data, so the tf.data pipeline decodes with the same :func:`read_image`
and skips (and reports) a file that fails there; see :mod:`itemrec.data.pipeline`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from itemrec.data.images import DEFAULT_MAX_PIXELS, DEFAULT_WORKERS, BadImageError, read_image

_CHEAP = {"JPEG": ("RGB", "L"), "PNG": ("RGB", "L", "P")}


def _cheap_ok(path: Path, max_pixels: int) -> tuple[bool | None, str]:
    """``(True, "")`` when the header check passes, ``(False, reason)`` when it fails, ``(None, "")``
    when the file needs a full decode to tell."""
    try:
        if path.stat().st_size == 0:
            return False, "zero-byte file"
        if not path.is_file():
            return False, "not a regular file"
        with Image.open(path) as im:
            w, h = im.size
            if w * h > max_pixels:
                return False, f"too many pixels: {w}x{h} = {w * h} > max_pixels={max_pixels}"
            fmt = im.format or ""
            if im.mode not in _CHEAP.get(fmt, ()):
                return None, ""
            if fmt == "PNG":
                im.verify()
    except OSError as exc:
        if isinstance(exc, Image.UnidentifiedImageError):
            return False, "not an image (unrecognised format)"
        if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError)):
            return False, f"cannot access file ({exc.strerror or exc})"
        return None, ""  # e.g. a PNG that fails verify: let the full decode decide
    except (SyntaxError, ValueError, EOFError, Image.DecompressionBombError):
        return None, ""
    if fmt == "JPEG":
        with open(path, "rb") as fh:
            fh.seek(max(0, path.stat().st_size - 64))
            if not fh.read().rstrip(b"\x00\r\n \t").endswith(b"\xff\xd9"):
                return None, ""
    return True, ""


def probe_image(
    path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS, decode: bool = False
) -> tuple[bool, bool, str]:
    """Check one file: ``(ok, decoded, reason)``.

    Args:
        path: the file.
        max_pixels: the largest ``width * height`` accepted.
        decode: always decode fully with :func:`~itemrec.data.images.read_image` (catches damaged
            scan data, which the cheap check cannot see).

    Returns:
        ``ok``: the file passed; ``decoded``: it was fully decoded to tell (every file with
        ``decode=True``; otherwise the formats and modes the cheap check does not cover:
        CMYK, 16-bit, alpha, GIF, BMP, TIFF, WebP); ``reason``: why not ``ok`` (else ``""``).
        The cheap check reads the header only, plus the JPEG end marker or the PNG chunk CRCs.
    """
    path = Path(path)
    if not decode:
        ok, reason = _cheap_ok(path, max_pixels)
        if ok is not None:
            return ok, False, reason
    try:
        read_image(path, max_pixels=max_pixels)
    except BadImageError as exc:
        return False, True, exc.reason
    return True, True, ""


def validate_files(
    paths: Sequence[str | os.PathLike],
    max_pixels: int = DEFAULT_MAX_PIXELS,
    workers: int = DEFAULT_WORKERS,
    progress: bool = False,
    decode: bool = False,
) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """Probe many files in parallel threads (see :func:`probe_image`).

    Args:
        paths: the image files.
        max_pixels: the largest ``width * height`` accepted.
        workers: probing threads (default ``min(8, cpu_count)``).
        progress: a progress bar.
        decode: decode every file fully (see :func:`probe_image`).

    Returns:
        ``(keep_indices (n_ok,) int64, skipped [(path, reason)])``, both in input order.
    """
    from concurrent.futures import ThreadPoolExecutor

    paths = [str(p) for p in paths]
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = pool.map(lambda p: probe_image(p, max_pixels, decode), paths, chunksize=32)
        if progress:
            from tqdm.auto import tqdm

            results = tqdm(results, total=len(paths), desc="checking images", unit="img")
        results = list(results)
    keep = np.array([i for i, r in enumerate(results) if r[0]], dtype=np.int64)
    skipped = [(paths[i], r[2]) for i, r in enumerate(results) if not r[0]]
    return keep, skipped
