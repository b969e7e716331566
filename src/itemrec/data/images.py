"""One decode path for every image: training, embedding, gallery and service (Pillow).

:func:`read_image` turns any JPEG/PNG/GIF/BMP/TIFF/WebP file (a path, or the
encoded bytes of an upload with :func:`decode_image`) into an ``uint8``
``H×W×3`` RGB array, whatever its mode (grayscale, palette, CMYK, 16-bit),
honouring the EXIF orientation (JPEG APP1, PNG ``eXIf``, TIFF, WebP) and the
transparency policy: **transparent pixels are white**, for an alpha channel
(composited on white), a palette ``tRNS`` and a greyscale or truecolour ``tRNS``
colour key alike. Pillow decodes the whole file, so damaged scan data fails
here rather than later. Every failure (zero-byte, truncated, damaged, not an
image, too many pixels, unreadable path) raises :class:`BadImageError` naming
the file and the reason.

:func:`fit_image` resizes preserving the aspect ratio, either letterboxing
("pad") or centre cropping ("crop"), and :func:`load_images` reads a list of
files in parallel threads (Pillow releases the GIL while decoding), skipping
(or, with ``strict``, raising on) the bad ones while returning the indices it
kept so labels stay aligned. The tf.data pipeline (:mod:`itemrec.data.pipeline`)
calls the same :func:`read_image` and :func:`fit_image`, so the pixels agree exactly.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

DEFAULT_MAX_PIXELS = 50_000_000
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".tif", ".tiff", ".webp")
DEFAULT_WORKERS = min(8, os.cpu_count() or 1)

# read_image checks the pixel count itself (``max_pixels``) from the header
# before decoding, so Pillow's own global warning is redundant noise; its hard
# error (over 2x Image.MAX_IMAGE_PIXELS) still applies and becomes a BadImageError.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


class BadImageError(ValueError):
    """A file that cannot be read as an image; ``.path`` and ``.reason`` say which and why.

    A ``ValueError``, so callers that treat bad input generically still catch it.

    Args:
        path: the file (or the name of an upload).
        reason: why it failed (``"zero-byte file"``, ``"not an image (unrecognised format)"``,
            ``"too many pixels: ..."``, ``"decompression bomb: ..."``, ...).
    """

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"bad image {self.path}: {reason}")


def _colour_key_mask(im: Image.Image, raw16: np.ndarray | None) -> np.ndarray | None:
    """``(H, W)`` bool mask of the pixels equal to a ``tRNS`` colour key (non-palette modes), or None.

    The key is stored at the file's bit depth: 1/2/4-bit greys are scaled to the
    0..255 that Pillow decodes them to; 16-bit greys compare with the 16-bit
    samples; a 16-bit truecolour key compares with ``raw16``, the 16-bit samples
    (Pillow itself keeps only the high byte of each).
    """
    key = im.info.get("transparency")
    if key is None or im.mode in ("P", "PA") or isinstance(key, bytes):
        return None
    if isinstance(key, tuple):
        if raw16 is not None:
            return np.all(raw16 == np.asarray(key, np.uint16), axis=-1)
        arr = np.asarray(im.convert("RGB"))
        return np.all(arr == np.asarray(key, np.uint8), axis=-1)
    arr = np.asarray(im)
    if im.mode == "1":
        return arr == bool(key)
    if im.mode == "L":
        bits = getattr(im, "_itemrec_bits", 8)
        key = key * (255 // (2**bits - 1))
    return arr == key


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


def _png_depth(im: Image.Image) -> tuple[int, bool]:
    """``(grey bit depth, is 16-bit truecolour)`` of a PNG from its decoder tile (before loading)."""
    args = im.tile[0].args if im.format == "PNG" and im.tile else ""
    raw = args if isinstance(args, str) else (args[0] if args and isinstance(args[0], str) else "")
    bits = {"L;2": 2, "L;4": 4, "1": 1}.get(raw, 8)
    return bits, raw in ("RGB;16B", "RGBA;16B")


def _raw_rgb16(data: bytes) -> np.ndarray | None:
    """16-bit RGB samples of a PNG (OpenCV decodes them unchanged; Pillow keeps 8 bits)."""
    import cv2

    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None or arr.ndim != 3 or arr.dtype != np.uint16:
        return None
    return np.ascontiguousarray(arr[..., 2::-1])  # BGR -> RGB


_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}  # EXIF orientation -> the operation that makes the stored pixels upright (as ImageOps.exif_transpose)


def _pixels(im: Image.Image, name: str, max_pixels: int, data: bytes | None, path: Path | None) -> Image.Image:
    """Decode an opened image to upright 8-bit RGB: size check, first frame, transparency, orientation."""
    w, h = im.size
    if w * h > max_pixels:
        raise BadImageError(name, f"too many pixels: {w}x{h} = {w * h} > max_pixels={max_pixels}")
    im.seek(0)
    bits, rgb16 = _png_depth(im)
    im.load()
    raw16 = None
    if rgb16 and isinstance(im.info.get("transparency"), tuple):
        raw16 = _raw_rgb16(data if data is not None else Path(path).read_bytes())
    im._itemrec_bits = bits  # type: ignore[attr-defined]
    mask = _colour_key_mask(im, raw16)
    rgb = _to_rgb(im)
    if mask is not None and mask.shape == (h, w) and mask.any():
        arr = np.array(rgb, dtype=np.uint8)
        arr[mask] = 255
        rgb = Image.fromarray(arr)
    orientation = im.getexif().get(0x0112, 1)
    if orientation in _TRANSPOSE:
        rgb = rgb.transpose(_TRANSPOSE[orientation])
    return rgb


def _decode(source: str | Path | io.BytesIO, name: str, max_pixels: int, data: bytes | None,
            fit: tuple[tuple[int, int], str] | None = None) -> np.ndarray:
    """:func:`_pixels` of an opened ``source`` as an array (fitted to ``fit = (size, mode)`` if given),
    with every failure turned into a :class:`BadImageError`."""
    try:
        with Image.open(source) as im:
            rgb = _pixels(im, name, max_pixels, data, None if data is not None else Path(source))
            if 0 in rgb.size:
                raise BadImageError(name, f"decoded to an empty image {rgb.size}")
            arr = np.asarray(rgb, dtype=np.uint8) if fit is None else _fit_pil(rgb, *fit)
    except BadImageError:
        raise
    except Image.UnidentifiedImageError as exc:
        raise BadImageError(name, "not an image (unrecognised format)") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise BadImageError(name, f"decompression bomb: {exc}") from exc
    except PermissionError as exc:
        raise BadImageError(name, f"permission denied ({exc.strerror})") from exc
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as exc:
        reason = str(exc) or type(exc).__name__
        if "truncated" in reason.lower() or isinstance(exc, EOFError):
            reason = f"truncated file ({reason})"
        else:
            reason = f"cannot decode ({reason})"
        raise BadImageError(name, reason) from exc
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise BadImageError(name, f"decoded to unexpected shape {arr.shape}")
    return np.ascontiguousarray(arr)


def _checked_path(path: str | os.PathLike) -> Path:
    import stat

    path = Path(path)
    try:
        st = path.stat()
    except OSError as exc:
        raise BadImageError(path, f"cannot access file ({exc.strerror or exc})") from exc
    if not stat.S_ISREG(st.st_mode):
        raise BadImageError(path, "not a regular file")
    if st.st_size == 0:
        raise BadImageError(path, "zero-byte file")
    return path


def read_image(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read an image file as an ``uint8`` ``(H, W, 3)`` RGB array (see the module docstring).

    Args:
        path: the file.
        max_pixels: the largest ``width * height`` accepted, checked from the header before decoding.

    Returns:
        ``(H, W, 3)`` uint8 RGB, upright (EXIF orientation applied), transparent pixels white;
        the first frame of an animation.

    Raises:
        BadImageError: the file is missing, not a regular file, empty, not an image, too large,
            truncated or damaged (``.reason`` says which).
    """
    path = _checked_path(path)
    return _decode(path, str(path), max_pixels, None)


def decode_image(data: bytes, name: str = "upload", max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """:func:`read_image` of an encoded file held in memory (an upload); errors name ``name``.

    Args:
        data: the encoded file (JPEG, PNG, ...).
        name: what error messages call it.
        max_pixels: as in :func:`read_image`.

    Returns:
        ``(H, W, 3)`` uint8 RGB, exactly what :func:`read_image` gives for the same bytes on disk.

    Raises:
        BadImageError: as :func:`read_image` (``"zero-byte file"`` for empty ``data``).
    """
    data = bytes(data)
    if not data:
        raise BadImageError(name, "zero-byte file")
    return _decode(io.BytesIO(data), name, max_pixels, data)


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
    keep the centre. Bilinear (antialiased by Pillow when shrinking).

    Args:
        img: (H, W, 3) image, H, W ≥ 1 (cast to uint8).
        size: S for a square output, or (S_h, S_w), in pixels.
        mode: ``"pad"`` (default) or ``"crop"``.
        fill: the letterbox colour, 0..255 (grey level of all three channels; default black).

    Returns:
        (S_h, S_w, 3) uint8, a new array.

    Raises:
        ValueError: unknown ``mode``, an image that is not (H, W, 3) or is empty, or a
            non-positive size.
    """
    if mode not in ("pad", "crop"):
        raise ValueError(f"fit_image mode must be 'pad' or 'crop', got {mode!r}")
    img = np.asarray(img)
    if img.ndim != 3 or img.shape[2] != 3 or img.shape[0] == 0 or img.shape[1] == 0:
        raise ValueError(f"fit_image expects an (H, W, 3) image, got shape {img.shape}")
    return _fit_pil(Image.fromarray(img.astype(np.uint8, copy=False)), _size_pair(size), mode, fill)


def _fit_pil(pil: Image.Image, size: tuple[int, int], mode: str = "pad", fill: int = 0) -> np.ndarray:
    """:func:`fit_image` of an RGB Pillow image (no round trip through numpy before resizing)."""
    th, tw = size
    w, h = pil.size
    scale = min(th / h, tw / w) if mode == "pad" else max(th / h, tw / w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    if mode == "pad":
        nh, nw = min(nh, th), min(nw, tw)
    else:
        nh, nw = max(nh, th), max(nw, tw)
    resized = np.asarray(pil.resize((nw, nh), Image.BILINEAR) if (nh, nw) != (h, w) else pil, dtype=np.uint8)
    if mode == "pad":
        if (nh, nw) == (th, tw):
            return np.array(resized)
        out = np.full((th, tw, 3), fill, dtype=np.uint8)
        y0, x0 = (th - nh) // 2, (tw - nw) // 2
        out[y0 : y0 + nh, x0 : x0 + nw] = resized
        return out
    y0, x0 = (nh - th) // 2, (nw - tw) // 2
    return resized[y0 : y0 + th, x0 : x0 + tw].copy()


def read_fitted(path: str | os.PathLike, size: int | tuple[int, int], mode: str = "pad",
                max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """``fit_image(read_image(path), size, mode)``: the one decode + fit every consumer uses.

    Args:
        path: the image file.
        size: S or (S_h, S_w) in pixels.
        mode: ``"pad"`` or ``"crop"`` (see :func:`fit_image`).
        max_pixels: the largest ``width * height`` accepted (checked from the header).

    Returns:
        ``(S_h, S_w, 3)`` uint8, pixel for pixel what ``fit_image(read_image(path), size, mode)`` gives.

    Raises:
        BadImageError: as :func:`read_image`.
        ValueError: a bad ``size`` or ``mode``.
    """
    if mode not in ("pad", "crop"):
        raise ValueError(f"fit_image mode must be 'pad' or 'crop', got {mode!r}")
    path = _checked_path(path)
    return _decode(path, str(path), max_pixels, None, (_size_pair(size), mode))


def load_images(
    paths: Sequence[str | os.PathLike],
    size: int | tuple[int, int],
    mode: str = "pad",
    strict: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    progress: bool = False,
    workers: int = DEFAULT_WORKERS,
) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]]]:
    """Read and fit many images (:func:`read_fitted`) in ``workers`` parallel threads.

    Args:
        paths: the image files.
        size: S or (S_h, S_w) in pixels.
        mode: ``"pad"`` or ``"crop"``.
        strict: raise on the first bad file (in input order) instead of skipping it.
        max_pixels: the largest ``width * height`` accepted per image.
        progress: a progress bar.
        workers: decoding threads (default ``min(8, cpu_count)``; Pillow releases the GIL).

    Returns:
        ``(images, keep_indices, skipped)``: (M, S_h, S_w, 3) uint8 images of the M readable
        files, (M,) int64 ``keep_indices`` where ``keep_indices[i]`` is the position in
        ``paths`` of ``images[i]`` (index your labels with it), and ``(path, reason)`` for
        each file left out, in input order.

    Raises:
        BadImageError: with ``strict=True``, the first bad file.
        ValueError: a bad ``size`` or ``mode``.
    """
    from concurrent.futures import ThreadPoolExecutor

    th, tw = _size_pair(size)
    paths = list(paths)
    out = np.empty((len(paths), th, tw, 3), dtype=np.uint8)
    keep: list[int] = []
    skipped: list[tuple[str, str]] = []

    def one(p: str | os.PathLike) -> np.ndarray | BadImageError:
        try:
            return read_fitted(p, (th, tw), mode, max_pixels)
        except BadImageError as exc:
            return exc

    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(paths) or 1))) as pool:
        results = pool.map(one, paths)
        if progress:
            from tqdm.auto import tqdm

            results = tqdm(results, total=len(paths), desc="reading images", unit="img")
        for i, (p, res) in enumerate(zip(paths, results)):
            if isinstance(res, BadImageError):
                if strict:
                    raise res
                skipped.append((str(p), res.reason))
                continue
            out[len(keep)] = res
            keep.append(i)
    return out[: len(keep)].copy() if len(keep) < len(paths) else out, np.asarray(keep, dtype=np.int64), skipped


__all__ = [
    "BadImageError", "DEFAULT_MAX_PIXELS", "IMAGE_SUFFIXES", "decode_image", "fit_image", "load_images",
    "read_fitted", "read_image",
]
