"""An embedded synthetic retail catalogue: products, catalogue shots and shelf-like photos.

No download, fully deterministic for a given ``seed``. Each product has a
packaging shape (box, can, bottle, bag/pouch, jar, gable-top carton), a body
and accent colour, a printed pattern (stripes, diagonal stripes, dots, band,
checks, chevrons), a logo (circle, triangle, diamond, star, ring) and a short
printed name. Products come in *families* of one to three flavour variants that
share shape, colours and pattern and differ only in accent colour, logo or
name, so that recognising them is possible but not trivial.

Each product gets one clean **catalogue** image (centred on white) and
``photos_per_product`` **photos**: the product sprite is warped by a random
perspective / rotation / scale / shift (OpenCV ``warpPerspective``), pasted on
a cluttered shelf background (gradient, coloured blocks, parts of other
products), then lit (gain, colour cast, gamma, illumination gradient), partly
occluded, blurred and given sensor noise.

Speed: sprites are drawn once per product with Pillow at twice the output
size; a photo then costs one warp and a few array operations (thousands of
64 px photos per second on one core; ``bench``-free check in the tests).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SHAPES = ("box", "can", "bottle", "bag", "jar", "carton")
PATTERNS = ("stripes", "diagonal", "dots", "band", "checks", "chevrons")
LOGOS = ("circle", "triangle", "diamond", "star", "ring")
_SYLLABLES = ("ka", "lo", "mi", "zu", "ra", "ve", "to", "sa", "ni", "po", "ce", "du", "fa", "gi", "ho", "ju")


@dataclass
class ProductSpec:
    """What a synthetic product looks like (drawn by :func:`itemrec.data.synthetic_draw.draw_sprite`).

    Attributes:
        name: ``p<index>_<brand>_<variant>_<shape>``, unique.
        family: the family index; variants of a family share shape, colours and pattern.
        shape: one of :data:`SHAPES`.
        body: the package's main colour, RGB 0..255.
        second: the pattern colour, RGB 0..255.
        accent: the logo, text and lid colour, RGB 0..255 (differs between variants).
        pattern: one of :data:`PATTERNS`.
        n_stripes: the pattern's repeat count (2..7).
        logo: one of :data:`LOGOS`.
        logo_pos: the logo centre as fractions (x, y) of the body's width and height.
        text: the printed brand name (upper case, at most 6 letters).
        aspect: width / height of the body.
        height: the body's height as a fraction of the sprite canvas.
    """

    name: str
    family: int
    shape: str
    body: tuple[int, int, int]
    second: tuple[int, int, int]
    accent: tuple[int, int, int]
    pattern: str
    n_stripes: int
    logo: str
    logo_pos: tuple[float, float]
    text: str
    aspect: float  # width / height of the body
    height: float  # fraction of the sprite canvas


@dataclass
class SyntheticCatalogue:
    """A rendered catalogue (:func:`render_catalogue`).

    Attributes:
        photos: (N, S, S, 3) uint8 shelf-like photos, product by product.
        labels: (N,) int64 product index of each photo.
        catalogue: (n_products, S, S, 3) uint8, one clean image per product on white
            (label = index).
        names: the product names (:attr:`ProductSpec.name`), label = index.
        specs: the :class:`ProductSpec` of each product.
    """

    photos: np.ndarray
    labels: np.ndarray
    catalogue: np.ndarray
    names: list[str]
    specs: list[ProductSpec] = field(default_factory=list, repr=False)


def _hsv_colour(rng: np.random.Generator, h: float | None = None, s: float | None = None, v: float | None = None) -> tuple[int, int, int]:
    import colorsys

    h = rng.uniform(0, 1) if h is None else h % 1.0
    s = rng.uniform(0.45, 1.0) if s is None else s
    v = rng.uniform(0.35, 1.0) if v is None else v
    r, g, b = colorsys.hsv_to_rgb(h, s, v)
    return int(r * 255), int(g * 255), int(b * 255)


def make_specs(n_products: int, seed: int = 0) -> list[ProductSpec]:
    """Product specifications: families of 1–3 variants sharing shape, colours and pattern.

    Variants differ in accent colour (hues a third of the colour wheel apart), sometimes
    logo and stripe count, and name. Deterministic in ``seed``.

    Args:
        n_products: how many products (≥ 1); the last family may be cut short.
        seed: the random seed.

    Returns:
        ``n_products`` :class:`ProductSpec`, in index order.

    Raises:
        ValueError: ``n_products`` < 1.
    """
    if n_products < 1:
        raise ValueError(f"n_products must be >= 1, got {n_products}")
    rng = np.random.default_rng([seed, 7919])
    specs: list[ProductSpec] = []
    family = 0
    while len(specs) < n_products:
        n_var = int(rng.choice([1, 2, 3], p=[0.3, 0.4, 0.3]))
        hue = rng.uniform(0, 1)
        shape = str(rng.choice(SHAPES))
        body = _hsv_colour(rng, h=hue)
        second = _hsv_colour(rng, h=hue + rng.choice([0.5, 0.33, -0.33, 0.08]), v=rng.uniform(0.6, 1.0))
        pattern = str(rng.choice(PATTERNS))
        n_stripes = int(rng.integers(2, 6))
        aspect = {"box": rng.uniform(0.55, 0.9), "can": rng.uniform(0.5, 0.7), "bottle": rng.uniform(0.3, 0.42),
                  "bag": rng.uniform(0.65, 0.9), "jar": rng.uniform(0.7, 0.95), "carton": rng.uniform(0.45, 0.6)}[shape]
        height = rng.uniform(0.7, 0.9)
        brand = "".join(rng.choice(_SYLLABLES, size=int(rng.integers(2, 4)))).capitalize()
        logo = str(rng.choice(LOGOS))
        logo_pos = (float(rng.uniform(0.3, 0.7)), float(rng.uniform(0.25, 0.45)))
        accent_hue = rng.uniform(0, 1)
        variants = rng.permutation(["Original", "Lime", "Berry", "Light", "Extra", "Mint", "Cocoa", "Spicy"])
        for v in range(n_var):
            if len(specs) >= n_products:
                break
            vr = np.random.default_rng([seed, family, v, 31])
            variant = str(variants[v])
            # variants of a family get accent hues a third of the wheel apart
            accent = _hsv_colour(vr, h=accent_hue + v / 3 + vr.uniform(-0.04, 0.04), s=vr.uniform(0.6, 1.0), v=vr.uniform(0.55, 1.0))
            v_logo = logo if (v == 0 or vr.uniform() < 0.5) else str(vr.choice(LOGOS))
            idx = len(specs)
            specs.append(
                ProductSpec(
                    name=f"p{idx:03d}_{brand.lower()}_{variant.lower()}_{shape}",
                    family=family,
                    shape=shape,
                    body=body,
                    second=second,
                    accent=accent,
                    pattern=pattern,
                    n_stripes=n_stripes + (v if pattern in ("stripes", "diagonal", "chevrons") and vr.uniform() < 0.5 else 0),
                    logo=v_logo,
                    logo_pos=logo_pos,
                    text=brand.upper()[:6],
                    aspect=float(aspect),
                    height=float(height),
                )
            )
        family += 1
    return specs


def _resize(img: np.ndarray, size: int) -> np.ndarray:
    import cv2

    return cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)


def _composite(rgb_bg: np.ndarray, rgba: np.ndarray) -> np.ndarray:
    a = rgba[..., 3:4].astype(np.float32) / 255.0
    return rgb_bg.astype(np.float32) * (1 - a) + rgba[..., :3].astype(np.float32) * a


def _background(rng: np.random.Generator, S: int, sprites: list[np.ndarray], own: int) -> np.ndarray:
    """A shelf-like cluttered background: gradient, shelf edges, blocks, parts of other products."""
    import cv2

    c0 = np.array(_hsv_colour(rng, s=rng.uniform(0, 0.4), v=rng.uniform(0.3, 0.95)), np.float32)
    c1 = c0 * rng.uniform(0.6, 1.2)
    t = np.linspace(0, 1, S, dtype=np.float32)[:, None, None]
    bg = np.broadcast_to(c0 * (1 - t) + c1 * t, (S, S, 3)).copy()
    for _ in range(int(rng.integers(0, 4))):  # shelf edges / price rails
        y = int(rng.integers(0, S))
        cv2.rectangle(bg, (0, y), (S, y + int(rng.integers(1, max(2, S // 12)))), [float(x) for x in _hsv_colour(rng)], -1)
    for _ in range(int(rng.integers(1, 5))):  # coloured blocks (other packaging)
        x, y = (int(v) for v in rng.integers(-S // 4, S, size=2))
        ww, hh = (int(v) for v in rng.integers(S // 8, S // 2, size=2))
        cv2.rectangle(bg, (x, y), (x + ww, y + hh), [float(v) for v in _hsv_colour(rng)], -1)
    if len(sprites) > 1 and rng.uniform() < 0.7:  # a neighbouring product, cut by the frame
        other = int(rng.integers(0, len(sprites) - 1))
        other += other >= own
        spr = _resize(sprites[other], S)
        dx = int(rng.choice([-1, 1]) * rng.uniform(0.55, 0.8) * S)
        M = np.float32([[1, 0, dx], [0, 1, rng.uniform(-0.1, 0.1) * S]])
        spr = cv2.warpAffine(spr, M, (S, S), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0, 0))
        bg = _composite(bg, spr)
    return bg


def _photo(rng: np.random.Generator, sprite: np.ndarray, S: int, sprites: list[np.ndarray], own: int) -> np.ndarray:
    import cv2

    R = sprite.shape[0]
    bg = _background(rng, S, sprites, own)
    # geometry: scale, rotation, shift and a perspective jitter of the corners
    scale = rng.uniform(0.75, 1.15) * S / R
    angle = rng.normal(0, 8)
    shift = rng.uniform(-0.1, 0.1, size=2) * S
    A = cv2.getRotationMatrix2D((R / 2, R / 2), angle, scale)
    A[:, 2] += np.array([S / 2 - R / 2, S / 2 - R / 2]) + shift
    src = np.float32([[0, 0], [R, 0], [R, R], [0, R]])
    dst = (np.hstack([src, np.ones((4, 1), np.float32)]) @ A.T).astype(np.float32)
    dst += rng.uniform(-0.07, 0.07, size=(4, 2)).astype(np.float32) * S
    H = cv2.getPerspectiveTransform(src, dst)
    warped = cv2.warpPerspective(sprite, H, (S, S), flags=cv2.INTER_AREA if scale < 0.6 else cv2.INTER_LINEAR, borderValue=(0, 0, 0, 0))
    img = _composite(bg, warped)
    # partial occlusion (a hand, a price tag, another package)
    if rng.uniform() < 0.35:
        ow, oh = (int(v) for v in rng.uniform(0.15, 0.4, size=2) * S)
        ox = int(rng.choice([rng.uniform(0, 0.2), rng.uniform(0.6, 0.85)]) * S)
        oy = int(rng.uniform(0, 1 - oh / S) * S)
        col = [float(v) for v in _hsv_colour(rng, s=rng.uniform(0, 0.7))]
        if rng.uniform() < 0.5:
            cv2.rectangle(img, (ox, oy), (ox + ow, oy + oh), col, -1)
        else:
            cv2.ellipse(img, (ox + ow // 2, oy + oh // 2), (ow // 2, oh // 2), float(rng.uniform(0, 180)), 0, 360, col, -1)
    # lighting: gain, colour cast, gamma, illumination gradient
    gain = rng.uniform(0.65, 1.3) * rng.uniform(0.9, 1.1, size=3)
    gx, gy = rng.uniform(-0.35, 0.35, size=2)
    lin = np.linspace(-0.5, 0.5, S, dtype=np.float32)
    illum = 1 + gx * lin[None, :] + gy * lin[:, None]
    img = img * gain.astype(np.float32) * illum[..., None] + rng.uniform(-20, 20)
    img = 255.0 * (np.clip(img, 0, 255) / 255.0) ** rng.uniform(0.75, 1.35)
    # optics and sensor
    sigma = rng.uniform(0, 1.3) * S / 64
    if sigma > 0.3:
        img = cv2.GaussianBlur(img, (0, 0), sigma)
    img = img + rng.normal(0, rng.uniform(0, 6), size=img.shape).astype(np.float32)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def render_catalogue(n_products: int = 20, photos_per_product: int = 10, image_size: int = 64, seed: int = 0) -> SyntheticCatalogue:
    """Render ``n_products`` products, their catalogue images and their photos (in memory).

    Photos are ordered product by product (labels ``0,0,…,1,1,…``). The same
    arguments always give the same arrays.

    Args:
        n_products: how many products (≥ 1).
        photos_per_product: photos per product (≥ 0).
        image_size: side S of the square images in pixels (≥ 16).
        seed: the random seed.

    Returns:
        The :class:`SyntheticCatalogue`.

    Raises:
        ValueError: ``n_products`` < 1, ``photos_per_product`` < 0 or ``image_size`` < 16.
    """
    if photos_per_product < 0:
        raise ValueError(f"photos_per_product must be >= 0, got {photos_per_product}")
    if image_size < 16:
        raise ValueError(f"image_size must be >= 16 pixels, got {image_size}")
    S = int(image_size)
    R = max(128, 2 * S)
    from itemrec.data.synthetic_draw import draw_sprite

    specs = make_specs(n_products, seed)
    sprites = [draw_sprite(sp, R) for sp in specs]
    small = [_resize(s, S) for s in sprites]
    catalogue = np.stack([np.clip(_composite(np.full((S, S, 3), 255, np.float32), s) + 0.5, 0, 255).astype(np.uint8) for s in small])
    photos = np.empty((n_products * photos_per_product, S, S, 3), np.uint8)
    labels = np.repeat(np.arange(n_products, dtype=np.int64), photos_per_product)
    k = 0
    for i, spr in enumerate(sprites):
        rng = np.random.default_rng([seed, i, 104729])
        for _ in range(photos_per_product):
            photos[k] = _photo(rng, spr, S, small, i)
            k += 1
    return SyntheticCatalogue(photos, labels, catalogue, [s.name for s in specs], specs)


def write_catalogue(
    out_dir: str | os.PathLike,
    n_products: int = 20,
    photos_per_product: int = 10,
    image_size: int = 96,
    seed: int = 0,
    quality: int = 92,
):
    """Write the catalogue as JPEGs and return it as an :class:`~itemrec.data.records.ImageDataset`.

    Layout: ``out_dir/photos/<name>/<name>_<k>.jpg`` (folder per class) and
    ``out_dir/catalogue/<name>.jpg`` (the representatives). Same seed →
    byte-identical files.

    Args:
        out_dir: the folder to write into (created; ``~`` expanded).
        n_products: how many products (≥ 1).
        photos_per_product: photos per product (≥ 0).
        image_size: side S of the square images in pixels (≥ 16; default 96).
        seed: the random seed.
        quality: JPEG quality, 1..95.

    Returns:
        The :class:`ImageDataset` named ``synthetic``, absolute paths, one representative
        per class.

    Raises:
        ValueError: as :func:`render_catalogue`.
    """
    import pandas as pd
    from PIL import Image

    from itemrec.data.records import ImageDataset

    cat = render_catalogue(n_products, photos_per_product, image_size, seed)
    out = Path(out_dir).expanduser().resolve()
    (out / "catalogue").mkdir(parents=True, exist_ok=True)
    reps: dict[int, str] = {}
    for i, name in enumerate(cat.names):
        p = out / "catalogue" / f"{name}.jpg"
        Image.fromarray(cat.catalogue[i]).save(p, quality=quality)
        reps[i] = str(p)
    rows = []
    counters = np.zeros(n_products, int)
    for img, lab in zip(cat.photos, cat.labels):
        name = cat.names[lab]
        folder = out / "photos" / name
        folder.mkdir(parents=True, exist_ok=True)
        p = folder / f"{name}_{counters[lab]:04d}.jpg"
        counters[lab] += 1
        Image.fromarray(img).save(p, quality=quality)
        rows.append((str(p), int(lab), name))
    frame = pd.DataFrame(rows, columns=["path", "label", "class_name"])
    return ImageDataset(frame, list(cat.names), reps, name="synthetic")
