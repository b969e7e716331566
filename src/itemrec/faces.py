"""Face crops for face retrieval, and leave-one-out nearest-neighbour retrieval precision.

Detection uses OpenCV's bundled frontal-face Haar cascade
(``cv2.data.haarcascades + "haarcascade_frontalface_default.xml"``): the
boosted cascade of Haar-like features of Viola & Jones, "Rapid object
detection using a boosted cascade of simple features" (CVPR 2001), with
Lienhart & Maydt's extended feature set (ICIP 2002). It runs on the grey
image at every scale ``scale_factor**k`` and keeps windows confirmed by at
least ``min_neighbors`` overlapping detections.

:func:`crop_face` keeps the **largest** detection (by area: in portrait
photos the subject is the biggest face, and the false positives the cascade
makes on hair or clothing are small), grows it by ``margin`` of its side on
every side into a square, and resizes it. When no face is found it falls
back to the central square of the image and says so (``detected=False``),
so every photo keeps one row and its label.

:func:`loo_retrieval` scores embeddings by leave-one-out nearest-neighbour
retrieval: every image queries all the others; precision@k is the fraction
of its k nearest neighbours (cosine distance) showing the same person,
averaged over queries (precision@1 is then the leave-one-out 1-NN accuracy).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HAAR_FRONTAL_FACE = "haarcascade_frontalface_default.xml"
#: Other places a cascade file may be (Debian/Ubuntu ``opencv-data``), after ``cv2.data.haarcascades``.
CASCADE_DIRS = ("/usr/share/opencv4/haarcascades", "/usr/share/opencv/haarcascades")


@dataclass
class FaceCrop:
    """One photo's face crop: ``box`` = (x, y, w, h) of the detected face in the photo, or None.

    Attributes:
        image: (size, size, 3) uint8 RGB crop.
        detected: whether a face was found (False: ``image`` is the photo's central square).
        box: ``(x, y, w, h)`` in pixels of the largest detected face in the photo, or ``None``.
        crop_box: ``(x1, y1, x2, y2)`` in pixels of the square cut from the photo (``x2``, ``y2``
            exclusive), before resizing to ``size``.
        n_faces: faces the cascade found in the photo (0 when none; only the largest is kept).
    """

    image: np.ndarray
    detected: bool
    box: tuple[int, int, int, int] | None
    crop_box: tuple[int, int, int, int]  # (x1, y1, x2, y2) cut from the photo
    n_faces: int


@dataclass
class FaceCrops:
    """Crops of many photos: ``images[i]`` comes from ``paths[i]``; ``detected[i]`` False = centre crop.

    Made by :func:`crop_faces`; M photos were read out of the N requested.

    Attributes:
        images: (M, size, size, 3) uint8 RGB crops.
        detected: (M,) bool, a face was found (False: the central square was used).
        boxes: (M, 4) int64 ``(x, y, w, h)`` in pixels of the largest face; ``-1`` where none was found.
        n_faces: (M,) int64 faces found in each photo.
        paths: the M paths read, in request order.
        keep: (M,) int64 positions of those photos among the N requested paths (unreadable
            files are left out).
        skipped: ``(path, reason)`` of each unreadable file.
    """

    images: np.ndarray
    detected: np.ndarray
    boxes: np.ndarray  # (N, 4) x, y, w, h of the face; -1 where none was found
    n_faces: np.ndarray
    paths: list[str]
    keep: np.ndarray  # positions in the requested paths (unreadable files are left out)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def detection_rate(self) -> float:
        """Fraction of photos where a face was detected (0 for none)."""
        return float(np.mean(self.detected)) if len(self.detected) else 0.0


@dataclass
class LooRetrieval:
    """Leave-one-out nearest-neighbour retrieval (see module docstring).

    Attributes:
        precision_at_k: ``{k: mean over queries of (same-label neighbours among the k nearest) / k}``,
            each in ``[0, 1]``.
        per_class_precision_at_1: ``{label: precision@1 of that label's queries}`` (labels as
            Python ints when they are integers, else as stored).
        neighbours: (N, max k) int indices of each query's nearest neighbours by cosine
            distance, nearest first (itself excluded; ties by index).
        predicted: (N,) the label of each query's nearest neighbour (the 1-NN prediction).
    """

    precision_at_k: dict[int, float]
    per_class_precision_at_1: dict[int, float]
    neighbours: np.ndarray
    predicted: np.ndarray  # label of each query's nearest neighbour

    @property
    def precision_at_1(self) -> float:
        """Leave-one-out 1-NN accuracy (``precision_at_k[1]``)."""
        return self.precision_at_k[1]


def cascade_path(filename: str = HAAR_FRONTAL_FACE) -> Path:
    """Path of an OpenCV Haar cascade: ``cv2.data.haarcascades`` first, then :data:`CASCADE_DIRS`.

    Args:
        filename: the cascade's file name.

    Returns:
        Its path.

    Raises:
        FileNotFoundError: in none of the directories (OpenCV 5 wheels no longer ship them).
    """
    import cv2

    dirs = []
    data = getattr(cv2, "data", None)
    if data is not None and getattr(data, "haarcascades", None):
        dirs.append(Path(data.haarcascades))
    dirs.extend(Path(d) for d in CASCADE_DIRS)
    for d in dirs:
        if (d / filename).is_file():
            return d / filename
    raise FileNotFoundError(
        f"Haar cascade {filename!r} not found in {[str(d) for d in dirs]}. OpenCV 5 wheels no longer ship "
        f"them: install opencv-python-headless 4.x (see requirements.txt) or Debian's opencv-data."
    )


@functools.lru_cache(maxsize=4)
def _cascade(path: str):
    import cv2

    if not hasattr(cv2, "CascadeClassifier"):
        raise RuntimeError(
            f"this OpenCV ({cv2.__version__}) has no CascadeClassifier (removed in OpenCV 5); "
            "install opencv-python-headless 4.x as pinned in requirements.txt"
        )
    cascade = cv2.CascadeClassifier(path)
    if cascade.empty():
        raise ValueError(f"cannot load the Haar cascade {path}")
    return cascade


def _check_rgb(image: np.ndarray, what: str = "image") -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or min(image.shape[:2]) < 1:
        raise ValueError(f"{what} must be an (H, W, 3) RGB array; got shape {image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"{what} must be uint8; got {image.dtype}")
    return image


def detect_faces(
    image: np.ndarray,
    scale_factor: float = 1.1,
    min_neighbors: int = 5,
    min_size_fraction: float = 0.1,
    cascade: str | os.PathLike | None = None,
    equalize: bool = False,
) -> np.ndarray:
    """Faces in an RGB uint8 image as ``(K, 4)`` int ``(x, y, w, h)``, largest first.

    ``min_size_fraction`` sets the smallest face searched for, as a fraction of
    the shorter image side (at least 20 px, the cascade's own window is 24).
    ``equalize`` histogram-equalises the grey image first (on the celebrity
    photos it found fewer faces: 106 of 118 against 110 without).

    Args:
        image: (H, W, 3) uint8 RGB.
        scale_factor: > 1, the scale step of the detection pyramid.
        min_neighbors: overlapping detections needed to keep a window.
        min_size_fraction: smallest face, as a fraction of the shorter side.
        cascade: path of a cascade file (default: :func:`cascade_path`).
        equalize: histogram-equalise first.

    Returns:
        (K, 4) int64 boxes, largest area first (ties by position).

    Raises:
        ValueError: not an RGB uint8 image, ``scale_factor <= 1`` or an unloadable cascade.
        FileNotFoundError: no cascade file found.
        RuntimeError: this OpenCV has no ``CascadeClassifier`` (OpenCV 5).
    """
    import cv2

    image = _check_rgb(image)
    if scale_factor <= 1.0:
        raise ValueError(f"scale_factor must be > 1; got {scale_factor}")
    detector = _cascade(str(cascade_path() if cascade is None else Path(cascade)))
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    if equalize:
        grey = cv2.equalizeHist(grey)
    side = max(20, int(round(min_size_fraction * min(image.shape[:2]))))
    found = detector.detectMultiScale(grey, scaleFactor=scale_factor, minNeighbors=int(min_neighbors), minSize=(side, side))
    boxes = np.asarray(found, dtype=np.int64).reshape(-1, 4)
    if len(boxes) == 0:
        return boxes
    order = np.lexsort((boxes[:, 1], boxes[:, 0], -(boxes[:, 2] * boxes[:, 3])))  # area desc, then position
    return boxes[order]


def square_box(x: int, y: int, w: int, h: int, margin: float, width: int, height: int) -> tuple[int, int, int, int]:
    """The square ``(x1, y1, x2, y2)`` of side ``max(w, h)·(1 + 2·margin)`` centred on the box,
    moved inside the ``width × height`` image where it fits, else clipped to it.

    Args:
        x, y, w, h: the face box.
        margin: added on every side, as a fraction of the box side (≥ 0).
        width, height: the image size.

    Returns:
        ``(x1, y1, x2, y2)``.

    Raises:
        ValueError: negative ``margin``.
    """
    if margin < 0:
        raise ValueError(f"margin must be >= 0; got {margin}")
    side = max(1, min(int(round(max(w, h) * (1 + 2 * margin))), width, height))
    cx, cy = x + w / 2.0, y + h / 2.0
    x1 = int(round(cx - side / 2.0))
    y1 = int(round(cy - side / 2.0))
    x1 = min(max(x1, 0), width - side)
    y1 = min(max(y1, 0), height - side)
    return x1, y1, x1 + side, y1 + side


def center_box(width: int, height: int) -> tuple[int, int, int, int]:
    """The central square ``(x1, y1, x2, y2)`` of side ``min(width, height)``.

    Args:
        width, height: the image size.

    Returns:
        ``(x1, y1, x2, y2)``.
    """
    side = min(width, height)
    x1, y1 = (width - side) // 2, (height - side) // 2
    return x1, y1, x1 + side, y1 + side


def crop_face(
    image: np.ndarray,
    size: int = 160,
    margin: float = 0.2,
    scale_factor: float = 1.1,
    min_neighbors: int = 5,
    min_size_fraction: float = 0.1,
) -> FaceCrop:
    """The largest face of ``image`` (RGB uint8) with ``margin``, as a ``size × size`` crop.

    Falls back to the central square with ``detected=False`` when no face is found.

    Args:
        image: (H, W, 3) uint8 RGB.
        size: side of the output crop in pixels.
        margin: as :func:`square_box`.
        scale_factor, min_neighbors, min_size_fraction: as :func:`detect_faces`.

    Returns:
        :class:`FaceCrop`.

    Raises:
        ValueError: as :func:`detect_faces` and :func:`square_box`.
    """
    from itemrec.data.images import fit_image

    image = _check_rgb(image)
    h, w = image.shape[:2]
    faces = detect_faces(image, scale_factor, min_neighbors, min_size_fraction)
    if len(faces):
        fx, fy, fw, fh = (int(v) for v in faces[0])
        box: tuple[int, int, int, int] | None = (fx, fy, fw, fh)
        x1, y1, x2, y2 = square_box(fx, fy, fw, fh, margin, w, h)
    else:
        box = None
        x1, y1, x2, y2 = center_box(w, h)
    crop = fit_image(image[y1:y2, x1:x2], size, mode="pad")
    return FaceCrop(crop, box is not None, box, (x1, y1, x2, y2), int(len(faces)))


def crop_faces(
    paths: Sequence[str | os.PathLike],
    size: int = 160,
    margin: float = 0.2,
    progress: bool = False,
    strict: bool = False,
    **detect_kwargs,
) -> FaceCrops:
    """:func:`crop_face` of every photo in ``paths``; unreadable files are skipped (or raise, ``strict``).

    Args:
        paths: image files.
        size, margin: as :func:`crop_face`.
        progress: show a tqdm bar.
        strict: raise on an unreadable file instead of skipping it.
        **detect_kwargs: passed to :func:`crop_face`.

    Returns:
        :class:`FaceCrops` (``keep``: positions of the photos read, ``skipped``: (path, reason)).

    Raises:
        itemrec.data.images.BadImageError: an unreadable file with ``strict``.
    """
    from itemrec.data.images import BadImageError, read_image

    paths = [str(p) for p in paths]
    images, detected, boxes, n_faces, keep, skipped = [], [], [], [], [], []
    it = enumerate(paths)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, total=len(paths), desc="face crops", unit="img")
    for i, p in it:
        try:
            img = read_image(p)
        except BadImageError as exc:
            if strict:
                raise
            skipped.append((p, exc.reason))
            continue
        fc = crop_face(img, size, margin, **detect_kwargs)
        images.append(fc.image)
        detected.append(fc.detected)
        boxes.append(fc.box if fc.box is not None else (-1, -1, -1, -1))
        n_faces.append(fc.n_faces)
        keep.append(i)
    return FaceCrops(
        np.stack(images) if images else np.zeros((0, size, size, 3), np.uint8),
        np.asarray(detected, dtype=bool),
        np.asarray(boxes, dtype=np.int64).reshape(-1, 4),
        np.asarray(n_faces, dtype=np.int64),
        [paths[i] for i in keep],
        np.asarray(keep, dtype=np.int64),
        skipped,
    )


def loo_retrieval(embeddings: np.ndarray, labels: np.ndarray, ks: Sequence[int] = (1, 3, 5)) -> LooRetrieval:
    """Leave-one-out retrieval precision@k with cosine distance (see module docstring).

    The neighbours come from the evaluation's neighbour engine
    (:func:`itemrec.evaluation.knn`, ``exclude_self=True``), so ties in distance are broken
    by index (the earlier image ranks first), as everywhere in :mod:`itemrec.evaluation`.

    Args:
        embeddings: (N, D) finite, no all-zero row.
        labels: (N,) identity labels (any hashable dtype NumPy can compare).
        ks: the k of precision@k, each in ``1..N-1``.

    Returns:
        :class:`LooRetrieval`.

    Raises:
        ValueError: bad shapes, a k outside ``1..N-1``, or a zero / non-finite embedding
            (its rows are named).
    """
    from itemrec._numeric import l2_normalize_rows
    from itemrec.evaluation import knn

    x = np.asarray(embeddings, dtype=np.float64)
    y = np.asarray(labels)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be (N, D); got shape {x.shape}")
    if y.shape != (len(x),):
        raise ValueError(f"labels must be (N,) = ({len(x)},); got shape {y.shape}")
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1 or ks[-1] > len(x) - 1:
        raise ValueError(f"every k must lie in 1..N-1 = 1..{len(x) - 1}; got {ks}")
    unit = l2_normalize_rows(x, what="embeddings")  # names zero / non-finite rows: cosine is undefined there
    _, order = knn(unit, unit, ks[-1], "cosine", exclude_self=True)
    same = y[order] == y[:, None]
    prec = {k: float(np.mean(same[:, :k].mean(axis=1))) for k in ks}
    per_class = {int(c) if np.issubdtype(y.dtype, np.integer) else c: float(same[y == c, 0].mean()) for c in np.unique(y)}
    return LooRetrieval(prec, per_class, order, y[order[:, 0]])
