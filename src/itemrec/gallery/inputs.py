"""Turning what callers give (embedder, images, paths, vectors) into checked, normalised vectors."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from itemrec.gallery.errors import GalleryError, GalleryMismatchError


def fingerprint_of(embedder: Any) -> tuple[str, dict[str, Any] | None, int | None]:
    """``(fingerprint_id, fingerprint dict or None, embedding dim or None)`` of an embedder, dict or id string."""
    from itemrec.embedder import fingerprint_id

    if isinstance(embedder, str):
        return embedder, None, None
    if isinstance(embedder, Mapping):
        fp = dict(embedder)
        return fingerprint_id(fp), fp, fp.get("embedding_dim")
    if hasattr(embedder, "fingerprint") and hasattr(embedder, "fingerprint_id"):
        fp = embedder.fingerprint()
        return embedder.fingerprint_id, fp, fp.get("embedding_dim")
    raise TypeError(f"expected an ImageEmbedder, a fingerprint dict or id string, got {type(embedder).__name__}")


def normalize_rows(vectors: Any, dim: int, what: str = "vectors") -> np.ndarray:
    """``x / ‖x‖`` per row as float32 (N, dim); refuses wrong shapes, NaN/inf and zero rows."""
    x = np.asarray(vectors, dtype=np.float32)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.shape[1] != dim:
        raise GalleryMismatchError(f"{what}: expected shape (N, {dim}) for this gallery, got {np.shape(vectors)}")
    # squared norms by einsum (no floating-point warnings): NaN or inf in a row make its entry NaN or inf
    norms = np.sqrt(np.einsum("ij,ij->i", x, x))[:, None]
    if not (np.isfinite(norms).all() and norms.all()):  # one check on the fast path; details below
        if not np.isfinite(x).all():
            raise GalleryError(f"{what}: contain NaN or infinite values")
        norms = np.linalg.norm(x.astype(np.float64), axis=1, keepdims=True)  # squares past float32's range
        if (norms == 0).any():
            raise GalleryError(f"{what}: row(s) {np.flatnonzero(norms[:, 0] == 0)[:10].tolist()} are all zeros")
    return np.ascontiguousarray(x / norms, dtype=np.float32)


def vectors_from(
    gallery: Any, data: Any, images: Any, paths: Any, vectors: Any, fingerprint: str | None, what: str
) -> tuple[np.ndarray, list[str | None], list[tuple[str, str]]]:
    """Normalised vectors (N, dim), their source paths and the skipped files, from exactly one
    of ``images`` (uint8), ``paths`` or ``vectors`` (or ``data``, whose kind is guessed).
    Images and paths go through ``gallery.embedder``."""
    if data is not None:
        if isinstance(data, (str, os.PathLike)) or (
            isinstance(data, (list, tuple)) and data and isinstance(data[0], (str, os.PathLike))
        ):
            paths = [data] if isinstance(data, (str, os.PathLike)) else data
        elif isinstance(data, np.ndarray) and data.dtype == np.uint8:
            images = data
        else:
            vectors = data
    given = [x is not None for x in (images, paths, vectors)]
    if sum(given) != 1:
        raise GalleryError(f"{what}: give exactly one of images, paths or vectors")
    if vectors is not None:
        if fingerprint is not None and fingerprint != gallery.fingerprint_id:
            raise GalleryMismatchError(
                f"{what}: vectors come from model {fingerprint}, gallery was built with {gallery.fingerprint_id}"
            )
        x = normalize_rows(vectors, gallery.dim, what)
        return x, [None] * len(x), []
    if gallery.embedder is None:
        raise GalleryError(f"{what}: images need an embedding model; open the gallery with embedder=")
    if paths is not None:
        paths = [str(p) for p in paths]
        embedded = gallery.embedder.embed(paths)
        if not len(embedded):
            reasons = "; ".join(f"{p}: {r}" for p, r in embedded.skipped[:3])
            raise GalleryError(f"{what}: none of the {len(paths)} images could be read ({reasons})")
        return normalize_rows(embedded.vectors, gallery.dim, what), list(embedded.paths), list(embedded.skipped)
    arr = np.asarray(images)
    if arr.ndim == 3:
        arr = arr[None]
    x = normalize_rows(gallery.embedder.embed_arrays(arr), gallery.dim, what)
    return x, [None] * len(x), []
