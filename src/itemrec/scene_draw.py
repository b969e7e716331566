"""Drawing a clustered shelf scene: one colour per product cluster, saved to a file."""

from __future__ import annotations

import colorsys
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:  # pragma: no cover
    from itemrec.scene_boxes import Region

NOISE_COLOR = (128, 128, 128)

# Qualitative colours, most distinct first: Sasha Trubetskoy's "20 simple
# distinct colours" (grey, white and black left out), then matplotlib's tab10
# and Dark2 (greys left out), so noise (grey) is never mistaken for a cluster.
_QUALITATIVE = (
    "#e6194b #3cb44b #ffe119 #4363d8 #f58231 #911eb4 #42d4f4 #f032e6 #bfef45 #fabed4 "
    "#469990 #dcbeff #9a6324 #fffac8 #800000 #aaffc3 #808000 #ffd8b1 #000075 "
    "#1f77b4 #ff7f0e #2ca02c #d62728 #9467bd #8c564b #e377c2 #bcbd22 #17becf "
    "#1b9e77 #d95f02 #7570b3 #e7298a #66a61e #e6ab02 #a6761d"
).split()


def palette(n: int) -> list[tuple[int, int, int]]:
    """``n`` distinct RGB colours: 35 qualitative ones, then golden-angle hues (never grey).

    The qualitative ones are Sasha Trubetskoy's 20 distinct colours (less grey, white and
    black), matplotlib's tab10 and Dark2 (less greys), so noise grey is never a cluster's.

    Args:
        n: how many colours (≥ 0).

    Returns:
        ``n`` (R, G, B) tuples of ints 0..255, distinct.

    Raises:
        ValueError: ``n`` < 0.
    """
    if n < 0:
        raise ValueError(f"palette size must be >= 0, got {n}")
    colours = [tuple(int(h[i : i + 2], 16) for i in (1, 3, 5)) for h in _QUALITATIVE]
    seen = set(colours)
    i = 0
    while len(colours) < n:
        hue = (i * 0.618033988749895) % 1.0
        sat, val = (0.9, 0.95) if (i // 7) % 2 == 0 else (0.6, 0.75)
        rgb = tuple(int(round(255 * c)) for c in colorsys.hsv_to_rgb(hue, sat, val))
        i += 1
        if rgb not in seen and rgb != NOISE_COLOR:
            seen.add(rgb)
            colours.append(rgb)
    return [tuple(c) for c in colours[:n]]  # type: ignore[misc]


def draw_overlay(
    image: np.ndarray,
    boxes: pd.DataFrame | Mapping,
    labels: np.ndarray,
    regions: Mapping[int, list["Region"]],
    out_path: str | os.PathLike,
    alpha: float = 0.35,
    max_side: int | None = None,
    jpeg_quality: int = 85,
) -> np.ndarray:
    """Draw the clusters on ``image`` and save the picture to ``out_path``; return it (RGB uint8).

    Cluster ``c`` gets ``palette(n)[c]`` for: a translucent fill of its
    regions (``alpha``), the region outlines, its boxes, and a filled label
    tag ``#c`` on each region. Noise boxes (label ``-1``) are thin grey
    outlines. Line widths and text scale with the image size.

    Args:
        image: (H, W, 3) uint8 RGB.
        boxes: the N boxes (DataFrame or mapping), pixels.
        labels: (N,) integer cluster id per box, ``-1`` = noise.
        regions: cluster -> regions, as :func:`itemrec.scene.aggregate_clusters` gives them.
        out_path: the file to write; its suffix picks the format (.jpg, .jpeg, .png, .bmp,
            .webp, .tif, .tiff); parents are created.
        alpha: the fill's opacity in [0, 1].
        max_side: scale the longer side down to this many pixels before saving (``None``:
            full size).
        jpeg_quality: JPEG quality, 0..100.

    Returns:
        The saved picture, (H', W', 3) uint8 RGB.

    Raises:
        ValueError: a bad image, boxes or labels; ``alpha`` outside [0, 1]; a cluster with
            boxes but no regions; an unknown suffix.
        OSError: OpenCV could not write the file.
    """
    import cv2

    from itemrec.scene_boxes import _check_image, _check_labels, clip_boxes

    image = _check_image(image)
    h, w = image.shape[:2]
    clipped = clip_boxes(boxes, image.shape)
    labels = _check_labels(labels, len(clipped))
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    clusters = sorted(set(labels[labels >= 0].tolist()) | {int(c) for c in regions})
    missing = [c for c in set(labels[labels >= 0].tolist()) if c not in regions]
    if missing:
        raise ValueError(f"clusters {sorted(missing)[:10]} have boxes but no regions; run aggregate_clusters on the same labels")
    n_colours = (max(clusters) + 1) if clusters else 0
    colours = palette(n_colours)

    out = image.copy()
    thick = max(2, int(round(max(h, w) / 400)))
    thin = max(1, thick // 3)
    # 1. translucent fill of every region
    for c in clusters:
        colour = np.array(colours[c], dtype=np.float32)
        for reg in regions.get(c, []):
            x1, y1, x2, y2 = reg.bbox
            patch = out[y1:y2, x1:x2]
            blended = (1.0 - alpha) * patch[reg.mask].astype(np.float32) + alpha * colour
            patch[reg.mask] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    # 2. boxes: clusters in their colour, noise thin grey
    for r, lab in zip(clipped.itertuples(index=False), labels.tolist()):
        colour = NOISE_COLOR if lab < 0 else colours[lab]
        cv2.rectangle(out, (r.x1, r.y1), (r.x2 - 1, r.y2 - 1), colour, thin if lab < 0 else max(1, thick // 2))
    # 3. region outlines and label tags
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, max(0.5, max(h, w) / 1400)
    text_th = max(1, int(round(scale * 2)))
    for c in clusters:
        colour = colours[c]
        for reg in regions.get(c, []):
            cv2.drawContours(out, [reg.contour], -1, colour, thick)
        for reg in regions.get(c, []):
            text = f"#{c}"
            (tw, th), base = cv2.getTextSize(text, font, scale, text_th)
            x1, y1 = reg.bbox[0], reg.bbox[1]
            tx2, ty2 = min(w, x1 + tw + 2 * thick), min(h, y1 + th + base + 2 * thick)
            cv2.rectangle(out, (x1, y1), (tx2, ty2), colour, -1)
            lum = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]
            ink = (0, 0, 0) if lum > 140 else (255, 255, 255)
            cv2.putText(out, text, (x1 + thick, y1 + thick + th), font, scale, ink, text_th, cv2.LINE_AA)

    if max_side is not None and max(h, w) > max_side:
        f = max_side / max(h, w)
        out = cv2.resize(out, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
    path = Path(out_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if suffix in (".jpg", ".jpeg") else []
    if suffix not in (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"):
        raise ValueError(f"overlay path {path} must end in .jpg, .jpeg, .png, .bmp, .webp or .tif")
    if not cv2.imwrite(str(path), cv2.cvtColor(out, cv2.COLOR_RGB2BGR), params):
        raise OSError(f"could not write the overlay to {path}")
    return out
