"""Shared figure helpers."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def new_figure(width: float = 6.4, height: float = 4.8, **kwargs):
    """A pyplot-free Figure (Agg canvas), safe in threads and headless runs."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), **kwargs)
    FigureCanvasAgg(fig)
    return fig


def maybe_save(fig, path: str | os.PathLike | None, dpi: int = 100):
    """Save ``fig`` to ``path`` (parents created) when a path is given; return the figure."""
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return fig


def load_image(item, size: int | None = None) -> np.ndarray:
    """An RGB uint8 array from a path or an array (H×W, H×W×1/3/4; uint8 or float in [0, 1])."""
    from PIL import Image

    if isinstance(item, (str, os.PathLike)):
        path = Path(item)
        if not path.is_file():
            raise FileNotFoundError(f"image file not found: {path}")
        img = Image.open(path).convert("RGB")
    else:
        arr = np.asarray(item)
        if arr.ndim == 3 and arr.shape[-1] == 1:
            arr = arr[..., 0]
        if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (3, 4)):
            raise ValueError(f"an image must be H×W or H×W×{{1,3,4}}; got shape {arr.shape}")
        if arr.dtype != np.uint8:
            arr = np.asarray(arr, dtype=np.float64)
            if arr.max(initial=0) > 1.0 + 1e-6 or arr.min(initial=0) < -1e-6:
                arr = np.clip(arr, 0, 255) / 255.0
            arr = (np.clip(arr, 0, 1) * 255).round().astype(np.uint8)
        img = Image.fromarray(arr).convert("RGB")
    if size is not None:
        img = img.resize((size, size))
    return np.asarray(img)


def class_colours(n: int):
    """``n`` distinct colours (tab10/tab20, then a sampled hsv map)."""
    import matplotlib

    if n <= 10:
        return [matplotlib.colormaps["tab10"](i) for i in range(n)]
    if n <= 20:
        return [matplotlib.colormaps["tab20"](i) for i in range(n)]
    cmap = matplotlib.colormaps["hsv"]
    return [cmap(i / n) for i in range(n)]
