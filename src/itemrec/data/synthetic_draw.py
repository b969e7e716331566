"""Pillow drawing of the synthetic products (see :mod:`itemrec.data.synthetic`).

A product sprite is drawn once per product on a transparent ``R×R`` canvas:
the package outline as a mask, the printed pattern, a white label panel with
the brand text, the logo, caps/lids, cylindrical shading for round packages
and a dark outline.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from itemrec.data.synthetic import ProductSpec


def _body_mask(spec: ProductSpec, R: int):
    """Pillow ``L`` mask of the package outline on an R×R canvas, and its bounding box."""
    from PIL import Image, ImageDraw

    mask = Image.new("L", (R, R), 0)
    d = ImageDraw.Draw(mask)
    h = spec.height * R
    w = min(spec.aspect * h, 0.92 * R)
    x0, x1 = (R - w) / 2, (R + w) / 2
    y0, y1 = (R - h) / 2, (R + h) / 2
    if spec.shape == "box":
        d.rectangle([x0, y0, x1, y1], fill=255)
    elif spec.shape == "can":
        e = 0.12 * w
        d.rectangle([x0, y0 + e / 2, x1, y1 - e / 2], fill=255)
        d.ellipse([x0, y0, x1, y0 + e], fill=255)
        d.ellipse([x0, y1 - e, x1, y1], fill=255)
    elif spec.shape == "bottle":
        neck_w, shoulder = 0.4 * w, y0 + 0.3 * h
        cx = R / 2
        d.rectangle([cx - neck_w / 2, y0, cx + neck_w / 2, y0 + 0.18 * h], fill=255)
        d.polygon([(cx - neck_w / 2, y0 + 0.15 * h), (cx + neck_w / 2, y0 + 0.15 * h), (x1, shoulder), (x0, shoulder)], fill=255)
        d.rounded_rectangle([x0, shoulder - 1, x1, y1], radius=0.15 * w, fill=255)
    elif spec.shape == "bag":
        n = 7
        top = [(x0 + (x1 - x0) * i / (n - 1), y0 + (0.03 * h if i % 2 else 0)) for i in range(n)]
        d.polygon(top + [(x1 - 0.04 * w, y1 - 0.1 * h), (R / 2, y1), (x0 + 0.04 * w, y1 - 0.1 * h)], fill=255)
    elif spec.shape == "jar":
        lid = 0.14 * h
        d.rounded_rectangle([x0 + 0.08 * w, y0, x1 - 0.08 * w, y0 + lid], radius=0.03 * w, fill=255)
        d.rounded_rectangle([x0, y0 + lid * 0.9, x1, y1], radius=0.22 * w, fill=255)
    elif spec.shape == "carton":
        roof = 0.18 * h
        d.polygon([(x0, y0 + roof), (R / 2, y0 + 0.02 * h), (x1, y0 + roof)], fill=255)
        d.rectangle([R / 2 - 0.06 * w, y0, R / 2 + 0.06 * w, y0 + 0.06 * h], fill=255)
        d.rectangle([x0, y0 + roof, x1, y1], fill=255)
    else:  # pragma: no cover - SHAPES is closed
        raise ValueError(f"unknown shape {spec.shape!r}")
    return mask, (x0, y0, x1, y1)


def _draw_logo(d, kind: str, cx: float, cy: float, r: float, colour) -> None:
    if kind == "circle":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
    elif kind == "ring":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], outline=colour, width=max(2, int(r * 0.35)))
    elif kind == "triangle":
        d.polygon([(cx, cy - r), (cx + r, cy + r * 0.8), (cx - r, cy + r * 0.8)], fill=colour)
    elif kind == "diamond":
        d.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=colour)
    else:  # star
        pts = []
        for k in range(10):
            a = -np.pi / 2 + k * np.pi / 5
            rr = r if k % 2 == 0 else r * 0.45
            pts.append((cx + rr * np.cos(a), cy + rr * np.sin(a)))
        d.polygon(pts, fill=colour)


def draw_sprite(spec: ProductSpec, R: int) -> np.ndarray:
    """RGBA uint8 (R, R, 4) sprite of the product on a transparent canvas.

    Args:
        spec: what to draw.
        R: the canvas side in pixels (the renderer uses ``max(128, 2 S)``).

    Returns:
        (R, R, 4) uint8: shaded RGB, alpha 255 inside the package outline and 0 outside.
    """
    from PIL import Image, ImageDraw, ImageFont

    mask, (x0, y0, x1, y1) = _body_mask(spec, R)
    w, h = x1 - x0, y1 - y0
    art = Image.new("RGB", (R, R), spec.body)
    d = ImageDraw.Draw(art)
    n = spec.n_stripes
    if spec.pattern == "stripes":
        step = h / (2 * n)
        for i in range(n):
            yy = y0 + (2 * i + 1) * step
            d.rectangle([0, yy, R, yy + step * 0.8], fill=spec.second)
    elif spec.pattern == "diagonal":
        step = R / n
        for i in range(-n, 2 * n):
            xx = i * step
            d.polygon([(xx, 0), (xx + step * 0.45, 0), (xx + step * 0.45 + R * 0.6, R), (xx + R * 0.6, R)], fill=spec.second)
    elif spec.pattern == "dots":
        rr = w / (3.5 * n)
        for i in range(n + 1):
            for j in range(2 * n):
                cx = x0 + (i + 0.5 * (j % 2)) * w / n
                cy = y0 + (j + 0.5) * h / (2 * n)
                d.ellipse([cx - rr, cy - rr, cx + rr, cy + rr], fill=spec.second)
    elif spec.pattern == "band":
        d.rectangle([0, y0 + 0.55 * h, R, y0 + 0.8 * h], fill=spec.second)
        d.rectangle([0, y0 + 0.83 * h, R, y0 + 0.86 * h], fill=spec.accent)
    elif spec.pattern == "checks":
        cs = w / n
        for i in range(int(np.ceil(R / cs)) + 1):
            for j in range(int(np.ceil(R / cs)) + 1):
                if (i + j) % 2:
                    d.rectangle([x0 + (i - 1) * cs, y0 + (j - 1) * cs, x0 + i * cs, y0 + j * cs], fill=spec.second)
    else:  # chevrons
        step = h / (n + 1)
        for i in range(n + 1):
            yy = y0 + i * step + step * 0.3
            d.line([(x0, yy), (R / 2, yy + step * 0.5), (x1, yy)], fill=spec.second, width=max(2, int(step * 0.3)))
    # label panel with the printed name and the logo
    lx0, lx1 = x0 + 0.12 * w, x1 - 0.12 * w
    ly0, ly1 = y0 + 0.42 * h, y0 + 0.56 * h
    if spec.shape in ("bottle",):
        ly0, ly1 = y0 + 0.5 * h, y0 + 0.68 * h
    d.rectangle([lx0, ly0, lx1, ly1], fill=(245, 245, 240))
    font = ImageFont.load_default(size=max(6, int((ly1 - ly0) * 0.7)))
    tw = d.textlength(spec.text, font=font)
    d.text(((lx0 + lx1) / 2 - tw / 2, ly0 + (ly1 - ly0) * 0.1), spec.text, fill=spec.accent if sum(spec.accent) < 600 else (20, 20, 20), font=font)
    _draw_logo(d, spec.logo, x0 + spec.logo_pos[0] * w, y0 + spec.logo_pos[1] * h, 0.16 * w, spec.accent)
    # caps / lids in the accent colour
    if spec.shape == "bottle":
        d.rectangle([R / 2 - 0.2 * w, y0, R / 2 + 0.2 * w, y0 + 0.08 * h], fill=spec.accent)
    elif spec.shape == "jar":
        d.rectangle([0, y0, R, y0 + 0.13 * h], fill=spec.accent)
    rgb = np.asarray(art, dtype=np.float32)
    # cylindrical shading for round packages, flat light falloff for the rest
    xs = (np.arange(R, dtype=np.float32) - R / 2) / max(w / 2, 1)
    if spec.shape in ("can", "bottle", "jar"):
        shade = 0.55 + 0.45 * np.sqrt(np.clip(1 - xs**2, 0, 1)) + 0.15 * np.exp(-((xs + 0.4) ** 2) / 0.02)
    else:
        shade = 1.0 - 0.12 * np.abs(xs)
    rgb = np.clip(rgb * shade[None, :, None], 0, 255)
    alpha = np.asarray(mask, dtype=np.uint8)
    # dark outline so that white-ish packages separate from backgrounds
    import cv2

    edge = cv2.morphologyEx(alpha, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
    rgb[edge] *= 0.5
    return np.dstack([rgb.astype(np.uint8), alpha])
