"""Notebook plumbing: small PNGs for the README (modes: :mod:`.presets`; ``results.json``: :mod:`.results_io`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np


def save_figure_png(fig: Any, path: str | os.PathLike, dpi: int = 80) -> Path:
    """Save a matplotlib figure as a small PNG (``dpi`` 80 by default); return the path.

    Args:
        fig: a ``matplotlib.figure.Figure`` (saved with ``bbox_inches="tight"``; not closed).
        path: the ``.png`` file to write; its folder is created.
        dpi: dots per inch (80 keeps README images small).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: ``path`` does not end in ``.png``.
    """
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"{path}: expected a .png path")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path


def save_image_png(image: np.ndarray | str | os.PathLike, path: str | os.PathLike, max_side: int = 640, colors: int = 128) -> Path:
    """A photo (array or file) as a small PNG: long side at most ``max_side``, palette of ``colors`` colours.

    The image is shrunk (Lanczos, aspect kept; never enlarged) and quantised by median cut
    without dithering.

    Args:
        image: an image file's path (read and converted to RGB), or a uint8 array (H, W) or
            (H, W, 3) (other dtypes are cast to uint8, so floats in [0, 1] become black).
        path: the ``.png`` file to write; its folder is created.
        max_side: the longest side in pixels after shrinking.
        colors: palette size, 1 to 256.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: ``path`` does not end in ``.png``; an (H, W, 4) RGBA array (PIL's median
            cut cannot quantise RGBA).
        FileNotFoundError: ``image`` names a file that does not exist.
    """

    from PIL import Image

    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"{path}: expected a .png path")
    im = Image.open(image).convert("RGB") if isinstance(image, (str, os.PathLike)) else Image.fromarray(np.asarray(image, np.uint8))
    scale = max_side / max(im.size)
    if scale < 1:
        im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.LANCZOS)
    path.parent.mkdir(parents=True, exist_ok=True)
    im.quantize(colors=int(colors), method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(path, optimize=True)
    return path
