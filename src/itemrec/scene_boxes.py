"""Boxes and regions of a shelf scene: the types and checks shared by :mod:`itemrec.scene`
(clustering) and :mod:`itemrec.scene_draw` (drawing), so neither imports the other's layer back."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

BOX_COLUMNS = ("id", "x1", "y1", "x2", "y2")


@dataclass
class Region:
    """One connected region of a cluster on the image.

    Attributes:
        cluster: the cluster id the region belongs to.
        bbox: ``(x1, y1, x2, y2)`` in image pixels, ``x2``/``y2`` exclusive.
        mask: bool (y2 - y1, x2 - x1) mask of the region within ``bbox``.
        contour: an OpenCV ``(K, 1, 2)`` int32 polygon in image coordinates.
        box_ids: the boxes whose centre lies in the region.
        area: the region's area in pixels.
    """

    cluster: int
    bbox: tuple[int, int, int, int]
    mask: np.ndarray
    contour: np.ndarray
    box_ids: list[str]
    area: int


# ----------------------------------------------------------------------------- boxes
def read_boxes_json(path: str | os.PathLike) -> pd.DataFrame:
    """Boxes from a ``{id: {x1, x2, y1, y2}}`` JSON file as a DataFrame ``[id, x1, y1, x2, y2]``.

    Args:
        path: the JSON file (pixel coordinates).

    Returns:
        The boxes, as :func:`boxes_frame` normalises them.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file cannot be read or parsed, or a box is malformed.
        TypeError: the JSON is not an object (from :func:`boxes_frame`).
    """
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise  # the CLI and callers report a missing file as such
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read boxes file {path}: {exc}") from exc
    return boxes_frame(raw, source=str(path))


def boxes_frame(boxes: pd.DataFrame | Mapping[str, Mapping[str, float]], source: str = "boxes") -> pd.DataFrame:
    """Normalise boxes to a DataFrame ``[id, x1, y1, x2, y2]`` (ids as str, coordinates as float).

    Args:
        boxes: a DataFrame with those columns (others dropped) or a
            ``{id: {x1, x2, y1, y2}}`` mapping, pixel coordinates.
        source: what error messages call the boxes.

    Returns:
        A new DataFrame with a fresh index.

    Raises:
        ValueError: a missing column or key, a non-numeric or non-finite coordinate, or a
            duplicate id (the message names the box).
        TypeError: ``boxes`` is neither a DataFrame nor a mapping.
    """
    if isinstance(boxes, pd.DataFrame):
        missing = [c for c in BOX_COLUMNS if c not in boxes.columns]
        if missing:
            raise ValueError(f"{source}: box table lacks columns {missing}; needs {list(BOX_COLUMNS)}")
        frame = boxes[list(BOX_COLUMNS)].copy()
    elif isinstance(boxes, Mapping):
        rows = []
        for box_id, box in boxes.items():
            if not isinstance(box, Mapping):
                raise ValueError(f"{source}: box {box_id!r} is not an object with x1, x2, y1, y2")
            lacking = [k for k in ("x1", "y1", "x2", "y2") if k not in box]
            if lacking:
                raise ValueError(f"{source}: box {box_id!r} lacks {lacking}")
            rows.append({"id": box_id, **{k: box[k] for k in ("x1", "y1", "x2", "y2")}})
        frame = pd.DataFrame(rows, columns=list(BOX_COLUMNS))
    else:
        raise TypeError(f"{source}: boxes must be a DataFrame or a {{id: {{x1, x2, y1, y2}}}} mapping")
    frame["id"] = frame["id"].astype(str)
    for col in ("x1", "y1", "x2", "y2"):
        values = pd.to_numeric(frame[col], errors="coerce")
        bad = frame["id"][values.isna() | ~np.isfinite(values.fillna(0))].tolist()
        if bad:
            raise ValueError(f"{source}: box {bad[0]!r} has a non-numeric {col}")
        frame[col] = values.astype(float)
    dup = frame["id"][frame["id"].duplicated()].tolist()
    if dup:
        raise ValueError(f"{source}: duplicate box id {dup[0]!r}")
    return frame.reset_index(drop=True)


def clip_boxes(boxes: pd.DataFrame | Mapping, image_shape: tuple[int, ...], pad: int = 0) -> pd.DataFrame:
    """Integer pixel boxes grown by ``pad`` pixels and clipped to the image.

    Coordinates are rounded outwards (``floor`` for x1/y1, ``ceil`` for x2/y2); ``x2``/``y2``
    are exclusive.

    Args:
        boxes: a DataFrame or mapping (see :func:`boxes_frame`).
        image_shape: the image's ``(H, W, ...)``.
        pad: pixels added on every side (≥ 0).

    Returns:
        The boxes with int coordinates inside ``[0, W] × [0, H]``.

    Raises:
        ValueError: ``pad`` < 0, a box is empty or inverted (``x2 <= x1`` or ``y2 <= y1``) or
            lies wholly outside the image (the message names it); from :func:`boxes_frame`.
        TypeError: from :func:`boxes_frame`.
    """
    frame = boxes_frame(boxes)
    if pad < 0:
        raise ValueError(f"pad must be >= 0, got {pad}")
    h, w = int(image_shape[0]), int(image_shape[1])
    out = frame.copy()
    for row in frame.itertuples(index=False):
        if row.x2 <= row.x1 or row.y2 <= row.y1:
            raise ValueError(
                f"box {row.id!r} is empty or inverted: x1={row.x1:g}, x2={row.x2:g}, y1={row.y1:g}, y2={row.y2:g}"
            )
    x1 = np.clip(np.floor(frame["x1"].to_numpy()) - pad, 0, w).astype(int)
    y1 = np.clip(np.floor(frame["y1"].to_numpy()) - pad, 0, h).astype(int)
    x2 = np.clip(np.ceil(frame["x2"].to_numpy()) + pad, 0, w).astype(int)
    y2 = np.clip(np.ceil(frame["y2"].to_numpy()) + pad, 0, h).astype(int)
    outside = np.flatnonzero((x2 <= x1) | (y2 <= y1))
    if outside.size:
        i = outside[0]
        raise ValueError(
            f"box {frame['id'][i]!r} lies outside the {w}x{h} image: "
            f"x1={frame['x1'][i]:g}, x2={frame['x2'][i]:g}, y1={frame['y1'][i]:g}, y2={frame['y2'][i]:g}"
        )
    out["x1"], out["y1"], out["x2"], out["y2"] = x1, y1, x2, y2
    return out


def crop_boxes(image: np.ndarray, boxes: pd.DataFrame | Mapping, pad: int = 0) -> list[np.ndarray]:
    """The image under each box (grown by ``pad`` px, clipped to the image), in box order.

    Args:
        image: (H, W, 3) uint8.
        boxes: a DataFrame or mapping (see :func:`boxes_frame`).
        pad: pixels added on every side (≥ 0).

    Returns:
        One (h, w, 3) uint8 copy per box.

    Raises:
        ValueError: an image that is not (H, W, 3) uint8, or from :func:`clip_boxes`.
        TypeError: from :func:`boxes_frame`.
    """
    image = _check_image(image)
    clipped = clip_boxes(boxes, image.shape, pad)
    return [
        image[r.y1 : r.y2, r.x1 : r.x2].copy()
        for r in clipped.itertuples(index=False)
    ]


def fit_crops(crops: list[np.ndarray], size: int, mode: str = "pad") -> np.ndarray:
    """Crops resized to ``(N, size, size, 3)`` uint8.

    Args:
        crops: (h, w, 3) uint8 images.
        size: the output side S in pixels.
        mode: ``"pad"`` (letterbox, aspect kept; :func:`itemrec.data.images.fit_image`),
            ``"crop"`` (centre crop, aspect kept) or ``"stretch"`` (OpenCV area resize to
            S × S, aspect not kept).

    Returns:
        (N, S, S, 3) uint8.

    Raises:
        ValueError: an unknown ``mode``, or a crop that is not (h, w, 3).
    """
    if mode not in ("pad", "crop", "stretch"):
        raise ValueError(f"crop mode must be 'pad', 'crop' or 'stretch', got {mode!r}")
    out = np.empty((len(crops), size, size, 3), dtype=np.uint8)
    if mode == "stretch":
        import cv2

        for i, c in enumerate(crops):
            out[i] = cv2.resize(c, (size, size), interpolation=cv2.INTER_AREA)
        return out
    from itemrec.data.images import fit_image

    for i, c in enumerate(crops):
        out[i] = fit_image(c, size, mode=mode)
    return out


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"expected an (H, W, 3) image, got shape {image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"expected an uint8 image, got dtype {image.dtype}")
    return image


def _check_labels(labels: np.ndarray, n: int) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.shape != (n,):
        raise ValueError(f"labels must have one entry per box: got shape {labels.shape} for {n} boxes")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integers (cluster ids, -1 = noise), got dtype {labels.dtype}")
    return labels.astype(np.int64)
