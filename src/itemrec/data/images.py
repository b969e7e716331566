"""Robust image reading with Pillow.

:func:`read_image` turns any JPEG/PNG/GIF/BMP file into an ``uint8`` ``H×W×3``
RGB array, whatever its mode (grayscale, RGBA composited on white, palette,
CMYK, 16-bit), honouring the EXIF orientation tag. Every failure (zero-byte,
truncated, not an image, too many pixels, unreadable path) raises
:class:`BadImageError` naming the file and the reason.

:func:`fit_image` resizes preserving the aspect ratio, either letterboxing
("pad") or centre cropping ("crop"), and :func:`load_images` reads a list of
files, skipping (or, with ``strict``, raising on) the bad ones while returning
the indices it kept so labels stay aligned.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

DEFAULT_MAX_PIXELS = 50_000_000
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".bmp")

# read_image checks the pixel count itself (``max_pixels``) from the header
# before decoding, so Pillow's own global warning is redundant noise; its hard
# error (over 2x Image.MAX_IMAGE_PIXELS) still applies and becomes a BadImageError.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


class BadImageError(ValueError):
    """A file that cannot be read as an image; ``.path`` and ``.reason`` say which and why."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"bad image {self.path}: {reason}")


def _to_rgb(im: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB (alpha composited on white)."""
    mode = im.mode
    if mode == "RGB":
        return im
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        mode = im.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        arr = np.asarray(im, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") else max(float(arr.max()), 1.0)
        if mode == "I" and arr.max() <= 255:
            top = 255.0
        arr8 = np.clip(np.rint(arr * (255.0 / top)), 0, 255).astype(np.uint8)
        return Image.fromarray(arr8, "L").convert("RGB")
    if mode == "F":
        arr = np.asarray(im, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        arr8 = np.zeros(arr.shape, np.uint8) if hi <= lo else np.rint((arr - lo) * 255.0 / (hi - lo)).astype(np.uint8)
        return Image.fromarray(arr8, "L").convert("RGB")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode == "1":
        return im.convert("L").convert("RGB")
    return im.convert("RGB")  # L, CMYK, YCbCr, LAB, HSV


def read_image(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read an image file as an ``uint8`` ``(H, W, 3)`` RGB array.

    The pixel count (from the header, before decoding) must not exceed
    ``max_pixels``; animated GIFs give their first frame; the EXIF orientation
    is applied. Raises :class:`BadImageError` with a reason on any failure.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise BadImageError(path, f"cannot access file ({exc.strerror or exc})") from exc
    if not path.is_file():
        raise BadImageError(path, "not a regular file")
    if size == 0:
        raise BadImageError(path, "zero-byte file")
    try:
        with Image.open(path) as im:
            w, h = im.size
            if w * h > max_pixels:
                raise BadImageError(path, f"too many pixels: {w}x{h} = {w * h} > max_pixels={max_pixels}")
            im.seek(0)
            im.load()
            im = ImageOps.exif_transpose(im) or im
            rgb = _to_rgb(im)
            arr = np.asarray(rgb, dtype=np.uint8)
    except BadImageError:
        raise
    except Image.UnidentifiedImageError as exc:
        raise BadImageError(path, "not an image (unrecognised format)") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise BadImageError(path, f"decompression bomb: {exc}") from exc
    except PermissionError as exc:
        raise BadImageError(path, f"permission denied ({exc.strerror})") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        reason = str(exc) or type(exc).__name__
        if "truncated" in reason.lower() or isinstance(exc, EOFError):
            reason = f"truncated file ({reason})"
        else:
            reason = f"cannot decode ({reason})"
        raise BadImageError(path, reason) from exc
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise BadImageError(path, f"decoded to unexpected shape {arr.shape}")
    return np.ascontiguousarray(arr)


def _size_pair(size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        h = w = int(size)
    else:
        h, w = (int(s) for s in size)
    if h <= 0 or w <= 0:
        raise ValueError(f"size must be positive, got {size!r}")
    return h, w


def fit_image(
    img: np.ndarray, size: int | tuple[int, int], mode: str = "pad", fill: int = 0
) -> np.ndarray:
    """Aspect-preserving resize of an ``(H, W, 3)`` uint8 image to ``size`` (``S`` or ``(H, W)``).

    ``mode="pad"``: scale by ``min(S_h/H, S_w/W)`` and centre on a ``fill``
    canvas (letterbox). ``mode="crop"``: scale by ``max(S_h/H, S_w/W)`` and
    keep the centre. Bilinear (bicubic-free, antialiased by Pillow when shrinking).
    """
    if mode not in ("pad", "crop"):
        raise ValueError(f"fit_image mode must be 'pad' or 'crop', got {mode!r}")
    img = np.asarray(img)
    if img.ndim != 3 or img.shape[2] != 3 or img.shape[0] == 0 or img.shape[1] == 0:
        raise ValueError(f"fit_image expects an (H, W, 3) image, got shape {img.shape}")
    th, tw = _size_pair(size)
    h, w = img.shape[:2]
    scale = min(th / h, tw / w) if mode == "pad" else max(th / h, tw / w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    if mode == "pad":
        nh, nw = min(nh, th), min(nw, tw)
    else:
        nh, nw = max(nh, th), max(nw, tw)
    pil = Image.fromarray(img.astype(np.uint8, copy=False))
    resized = np.asarray(pil.resize((nw, nh), Image.BILINEAR)) if (nh, nw) != (h, w) else img
    if mode == "pad":
        out = np.full((th, tw, 3), fill, dtype=np.uint8)
        y0, x0 = (th - nh) // 2, (tw - nw) // 2
        out[y0 : y0 + nh, x0 : x0 + nw] = resized
        return out
    y0, x0 = (nh - th) // 2, (nw - tw) // 2
    return np.ascontiguousarray(resized[y0 : y0 + th, x0 : x0 + tw])


def load_images(
    paths: Sequence[str | os.PathLike],
    size: int | tuple[int, int],
    mode: str = "pad",
    strict: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]]]:
    """Read and fit many images.

    Returns ``(images (N, S, S, 3) uint8, keep_indices (N,) int64, skipped)``
    where ``keep_indices[i]`` is the position in ``paths`` of ``images[i]``
    (index your labels with it) and ``skipped`` lists ``(path, reason)`` for
    the files left out. With ``strict=True`` the first bad file raises
    :class:`BadImageError` instead.
    """
    th, tw = _size_pair(size)
    paths = list(paths)
    out = np.empty((len(paths), th, tw, 3), dtype=np.uint8)
    keep: list[int] = []
    skipped: list[tuple[str, str]] = []
    iterator = enumerate(paths)
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, total=len(paths), desc="reading images", unit="img")
    for i, p in iterator:
        try:
            img = read_image(p, max_pixels=max_pixels)
        except BadImageError as exc:
            if strict:
                raise
            skipped.append((str(p), exc.reason))
            continue
        out[len(keep)] = fit_image(img, (th, tw), mode)
        keep.append(i)
    return out[: len(keep)].copy() if len(keep) < len(paths) else out, np.asarray(keep, dtype=np.int64), skipped


# -- up-front validation for the tf.data pipeline ------------------------------------

_TF_SAFE_MODES = {"JPEG": ("RGB", "L"), "PNG": ("RGB", "L", "P")}


def probe_image(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[bool, bool, str]:
    """Cheap check of one file: ``(ok, tf_safe, reason)``.

    Reads the header only, plus the JPEG end marker or the PNG chunk CRCs
    (no pixel decoding). ``tf_safe`` means ``tf.io.decode_image`` gives the
    same result as :func:`read_image`: an RGB or grayscale JPEG without EXIF
    rotation that ends with its EOI marker, or an 8-bit RGB/gray/palette PNG
    without transparency whose chunks verify. Every other file that Pillow
    opens (CMYK, 16-bit, alpha, EXIF-rotated, GIF, BMP, …) is fully decoded
    here with :func:`read_image` (these are rare) and, if that works, marked
    ``ok`` but not ``tf_safe`` so the pipeline decodes it with Pillow.
    """
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            return False, False, "zero-byte file"
        if not path.is_file():
            return False, False, "not a regular file"
        with Image.open(path) as im:
            w, h = im.size
            if w * h > max_pixels:
                return False, False, f"too many pixels: {w}x{h} = {w * h} > max_pixels={max_pixels}"
            fmt, mode = im.format, im.mode
            fast = mode in _TF_SAFE_MODES.get(fmt or "", ()) and "transparency" not in im.info
            if fast and fmt == "JPEG":
                fast = im.getexif().get(0x0112, 1) == 1
            if fast and fmt == "PNG":
                im.verify()
    except OSError as exc:
        if isinstance(exc, Image.UnidentifiedImageError):
            return False, False, "not an image (unrecognised format)"
        if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError)):
            return False, False, f"cannot access file ({exc.strerror or exc})"
        fast = False  # e.g. a PNG that fails verify: let the full decode decide
    except (SyntaxError, ValueError, EOFError, Image.DecompressionBombError):
        fast = False
    if fast and fmt == "JPEG":
        with open(path, "rb") as fh:
            fh.seek(max(0, path.stat().st_size - 64))
            fast = fh.read().rstrip(b"\x00\r\n \t").endswith(b"\xff\xd9")
    if fast:
        return True, True, ""
    try:
        read_image(path, max_pixels=max_pixels)
    except BadImageError as exc:
        return False, False, exc.reason
    return True, False, ""


def validate_files(
    paths: Sequence[str | os.PathLike], max_pixels: int = DEFAULT_MAX_PIXELS, workers: int = 8, progress: bool = False
) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]]]:
    """Probe many files in parallel threads (see :func:`probe_image`).

    Returns ``(keep_indices, tf_safe (len(keep),) bool, skipped [(path, reason)])``.
    """
    from concurrent.futures import ThreadPoolExecutor

    paths = [str(p) for p in paths]
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = pool.map(lambda p: probe_image(p, max_pixels), paths, chunksize=32)
        if progress:
            from tqdm.auto import tqdm

            results = tqdm(results, total=len(paths), desc="checking images", unit="img")
        results = list(results)
    keep = np.array([i for i, r in enumerate(results) if r[0]], dtype=np.int64)
    fast = np.array([results[i][1] for i in keep], dtype=bool)
    skipped = [(paths[i], r[2]) for i, r in enumerate(results) if not r[0]]
    return keep, fast, skipped
