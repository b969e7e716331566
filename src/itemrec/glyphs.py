"""Non-digit images drawn like MNIST digits: letters rendered from fonts, normalised as MNIST was.

MNIST (LeCun, Bottou, Bengio & Haffner, "Gradient-based learning applied to
document recognition", Proc. IEEE 1998; yann.lecun.com/exdb/mnist) took each
NIST digit, scaled it with anti-aliasing so that its bounding box fits a
20×20 box (aspect ratio kept), and centred it in a 28×28 field by its centre
of mass. :func:`mnist_normalize` does the same to any ink-on-black image:

1. crop to the bounding box of the pixels brighter than ``threshold``;
2. resize (Lanczos, anti-aliased) so the longer side is ``box`` pixels;
3. place it in a ``size × size`` black field so that its centre of mass
   ``(Σ_i i·I_i / Σ I, Σ_j j·I_j / Σ I)`` (row, column pixel indices) lands on
   the pixel ``(size // 2, size // 2)``, rounded to whole pixels. On the
   10,000 MNIST test digits the centre of mass is 13.99 ± 0.29 (row) and
   14.01 ± 0.29 (column), the spread of a whole-pixel shift, and the longer
   bounding-box side is 20 for over 99 % of them. The shift is clipped so
   that the glyph stays inside the field.

:func:`render_glyph` draws one character with a FreeType font (Pillow's own
scalable default font, ``ImageFont.load_default(size=...)``, or any
TrueType/OpenType file, e.g. under ``/usr/share/fonts``), white on black,
and normalises it. Everything is deterministic for a given Pillow/FreeType.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: Letters that are easily read as digits (O/0, I/l/1, S/5, Z/2, B/8, G/b/6, g/q/9):
#: left out of :data:`LETTERS` so "not a digit" means clearly not a digit.
DIGIT_LIKE = "BGIOSZbgiloqsz"
#: The default characters of :func:`render_glyphs`: ASCII letters minus :data:`DIGIT_LIKE`.
LETTERS = "".join(c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz" if c not in DIGIT_LIKE)
DEFAULT_FONT = "default"  # the name :func:`render_glyphs` records for Pillow's default font
FONT_SUFFIXES = (".ttf", ".otf")


@dataclass
class GlyphSet:
    """Rendered glyphs: ``images[i]`` is ``chars[i]`` in font ``fonts[i]``.

    Attributes:
        images: (N, size, size) uint8, ink bright on black (28 × 28 by default).
        chars: the character of each image.
        fonts: the font of each image (:data:`DEFAULT_FONT` or a font file's name).
    """

    images: np.ndarray
    chars: list[str]
    fonts: list[str]

    def __len__(self) -> int:
        return len(self.images)

    def as_rgb(self) -> np.ndarray:
        """The glyphs as RGB images, for models that take three channels.

        Returns:
            ``(N, H, W, 3)`` uint8: the grey image repeated on three channels.
        """
        return np.repeat(self.images[..., None], 3, axis=-1)


def center_of_mass(img: np.ndarray) -> tuple[float, float]:
    """Intensity-weighted mean (row, column) pixel index ``(Σ i·I / Σ I, Σ j·I / Σ I)``.

    Args:
        img: 2-D image with non-negative intensities.

    Returns:
        ``(row, column)`` in pixels, 0-based.

    Raises:
        ValueError: ``img`` is not 2-D, or holds no ink (sums to ≤ 0).
    """
    a = np.asarray(img, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"center_of_mass needs a 2-D image; got shape {a.shape}")
    total = a.sum()
    if total <= 0:
        raise ValueError("center_of_mass of an image without ink (all zero)")
    rows = np.arange(a.shape[0], dtype=np.float64)
    cols = np.arange(a.shape[1], dtype=np.float64)
    return float(a.sum(axis=1) @ rows / total), float(a.sum(axis=0) @ cols / total)


def mnist_normalize(img: np.ndarray, box: int = 20, size: int = 28, threshold: int = 0) -> np.ndarray:
    """Scale and centre an ink-on-black image the way MNIST digits were (module docstring).

    Args:
        img: 2-D array, background 0 and ink bright (uint8, or float in 0..255; clipped).
        box: the longer side of the ink's bounding box after scaling, 1..size (default 20).
        size: side of the square output field (default 28).
        threshold: pixels ``> threshold`` count as ink for the bounding box.

    Returns:
        ``(size, size)`` uint8, its centre of mass on pixel ``(size // 2, size // 2)`` to
        within a whole pixel (unless the shift had to be clipped to keep the glyph inside).

    Raises:
        ValueError: ``img`` is not 2-D, ``box`` is outside 1..size, or no pixel is above
            ``threshold``.
    """
    from PIL import Image

    a = np.asarray(img)
    if a.ndim != 2:
        raise ValueError(f"mnist_normalize needs a 2-D grey image (ink bright on 0); got shape {a.shape}")
    if not 0 < box <= size:
        raise ValueError(f"box must lie in 1..size ({size}); got {box}")
    a = np.clip(a.astype(np.float64), 0, 255)
    ink = a > threshold
    if not ink.any():
        raise ValueError(f"image of shape {a.shape} has no ink (no pixel above {threshold})")
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    crop = a[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    h, w = crop.shape
    scale = box / max(h, w)
    nh, nw = max(1, int(round(h * scale))), max(1, int(round(w * scale)))
    pil = Image.fromarray(np.rint(crop).astype(np.uint8), "L")
    small = np.asarray(pil.resize((nw, nh), Image.LANCZOS), dtype=np.float64)
    if small.sum() <= 0:  # a hairline that vanished in the resize
        small = np.asarray(pil.resize((nw, nh), Image.BOX), dtype=np.float64)
    cy, cx = center_of_mass(small)
    centre = size // 2
    y0 = int(np.clip(np.floor(centre - cy + 0.5), 0, size - nh))
    x0 = int(np.clip(np.floor(centre - cx + 0.5), 0, size - nw))
    out = np.zeros((size, size), dtype=np.uint8)
    out[y0 : y0 + nh, x0 : x0 + nw] = np.clip(np.rint(small), 0, 255).astype(np.uint8)
    return out


def find_fonts(root: str | os.PathLike = "/usr/share/fonts") -> list[Path]:
    """Every ``.ttf``/``.otf`` file under ``root`` (any case), sorted.

    Args:
        root: the folder searched recursively (default ``/usr/share/fonts``).

    Returns:
        The font files; ``[]`` when the folder is absent.
    """
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in FONT_SUFFIXES)


@functools.lru_cache(maxsize=64)
def _font(font: str | None, font_size: int):
    from PIL import ImageFont

    if font is None or font == DEFAULT_FONT:
        f = ImageFont.load_default(size=font_size)
        if not isinstance(f, ImageFont.FreeTypeFont):
            raise RuntimeError("Pillow's default font is a fixed-size bitmap here (Pillow < 10.1 or no FreeType); pass a TTF file")
        return f
    path = Path(font)
    if not path.is_file():
        raise FileNotFoundError(f"font file not found: {path}")
    try:
        return ImageFont.truetype(str(path), font_size)
    except OSError as exc:
        raise ValueError(f"cannot load font {path}: {exc}") from exc


def render_glyph(
    char: str,
    font: str | os.PathLike | None = None,
    font_size: int = 96,
    stroke_width: int = 0,
    box: int = 20,
    size: int = 28,
) -> np.ndarray:
    """``char`` drawn white on black with ``font`` (None: Pillow's default font), MNIST-normalised.

    The character is drawn at ``font_size`` pixels (``stroke_width`` thickens
    it, in those pixels) and then scaled down to the ``box`` by
    :func:`mnist_normalize`, so strokes come out about
    ``stroke · box / glyph height`` pixels wide.

    Args:
        char: one character.
        font: a TrueType/OpenType file, ``None`` or :data:`DEFAULT_FONT` for Pillow's
            scalable default font.
        font_size: the drawing size in pixels (≥ 8; default 96).
        stroke_width: extra stroke width in drawing pixels.
        box: the normalised glyph's longer side in output pixels.
        size: the output side in pixels.

    Returns:
        ``(size, size)`` uint8, ink bright.

    Raises:
        ValueError: ``char`` is not one character, ``font_size`` < 8, the font cannot be
            loaded, or the character draws no ink in it.
        FileNotFoundError: the font file does not exist.
        RuntimeError: Pillow's default font is a fixed-size bitmap here (Pillow < 10.1 or no
            FreeType).
    """
    from PIL import Image, ImageDraw

    if not isinstance(char, str) or len(char) != 1:
        raise ValueError(f"render_glyph draws one character; got {char!r}")
    if font_size < 8:
        raise ValueError(f"font_size must be at least 8 pixels; got {font_size}")
    f = _font(None if font is None else os.fspath(font), int(font_size))
    side = 3 * int(font_size) + 2 * int(stroke_width)
    canvas = Image.new("L", (side, side), 0)
    ImageDraw.Draw(canvas).text(
        (side / 2, side / 2), char, fill=255, font=f, anchor="mm", stroke_width=int(stroke_width), stroke_fill=255
    )
    arr = np.asarray(canvas)
    if not arr.any():
        raise ValueError(f"character {char!r} draws no ink with font {font or DEFAULT_FONT}")
    return mnist_normalize(arr, box=box, size=size)


def render_glyphs(
    chars: str | Sequence[str] = LETTERS,
    fonts: Sequence[str | os.PathLike | None] | None = None,
    font_size: int = 96,
    stroke_width: int = 0,
    box: int = 20,
    size: int = 28,
) -> GlyphSet:
    """Every character of ``chars`` in every font: ``len(chars) × len(fonts)`` MNIST-like images.

    Order: font by font, characters in the given order.

    Args:
        chars: the characters (default :data:`LETTERS`: ASCII letters that do not look like
            digits).
        fonts: font files (``None`` entries: Pillow's default font); ``None`` means Pillow's
            default font followed by :func:`find_fonts` (the system's fonts, if any).
        font_size: the drawing size in pixels.
        stroke_width: extra stroke width in drawing pixels.
        box: the normalised glyph's longer side in output pixels.
        size: the output side in pixels.

    Returns:
        The :class:`GlyphSet`.

    Raises:
        ValueError: no character or no font; a character a font draws without ink (a space),
            naming both; from :func:`render_glyph`.
        FileNotFoundError: a font file does not exist.
        RuntimeError: as :func:`render_glyph`.
    """
    if fonts is None:
        fonts = [None, *find_fonts()]
    if len(chars) == 0 or len(fonts) == 0:
        raise ValueError("render_glyphs needs at least one character and one font")
    images, names, out_fonts = [], [], []
    for font in fonts:
        name = DEFAULT_FONT if font is None else Path(font).name
        for ch in chars:
            images.append(render_glyph(ch, font, font_size, stroke_width, box, size))
            names.append(ch)
            out_fonts.append(name)
    return GlyphSet(np.stack(images), names, out_fonts)
