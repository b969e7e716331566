"""Turning what callers give (embedder, images, paths, vectors) into checked, normalised vectors."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from itemrec.gallery.errors import GalleryError, GalleryMismatchError


def fingerprint_of(embedder: Any) -> tuple[str, dict[str, Any] | None, int | None]:
    """The identity of an embedding model, however it is given.

    Args:
        embedder: an :class:`~itemrec.embedder.ImageEmbedder`, its fingerprint dict, or a
            fingerprint id string.

    Returns:
        ``(fingerprint_id, fingerprint dict or None, embedding dim or None)``.

    Raises:
        TypeError: ``embedder`` is none of these.
    """
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
    """``x / ‖x‖`` per row, refusing what cannot be a gallery vector.

    Args:
        vectors: (N, dim) or (dim,) numbers.
        dim: the gallery's dimension.
        what: what the vectors are, in messages.

    Returns:
        (N, dim) float32 unit rows (norms computed in float64 when float32 would overflow).

    Raises:
        GalleryMismatchError: another shape.
        GalleryError: NaN or infinite values, or all-zero rows.
    """
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


class VectorInputs:
    """Turns what a caller gives a gallery (images, paths or vectors) into its checked unit vectors.

    Args:
        dim: the gallery's embedding dimension.
        fingerprint_id: the gallery's model id (vectors tagged with another are refused).
        embedder: the :class:`~itemrec.embedder.ImageEmbedder` for images and paths, or None
            (vectors only); see :meth:`attach`.
        where: the gallery's folder, named in messages.

    Raises:
        GalleryMismatchError: ``embedder`` is another model than the gallery's.
    """

    def __init__(self, dim: int, fingerprint_id: str, embedder: Any = None, where: Any = None) -> None:
        self.dim = int(dim)
        self.fingerprint_id = str(fingerprint_id)
        self.where = where
        self.embedder = None
        if embedder is not None:
            self.attach(embedder)

    def attach(self, embedder: Any) -> None:
        """Use ``embedder`` for images and paths.

        Args:
            embedder: an :class:`~itemrec.embedder.ImageEmbedder` (or anything with ``fingerprint()``,
                ``fingerprint_id``, ``embed`` and ``embed_arrays``).

        Raises:
            GalleryMismatchError: its fingerprint or dimension differs from the gallery's.
            TypeError: ``embedder`` is not an embedder.
        """
        fp_id, _, fp_dim = fingerprint_of(embedder)
        if fp_id != self.fingerprint_id:
            raise GalleryMismatchError(
                f"embedding model fingerprint {fp_id} differs from the gallery's {self.fingerprint_id} "
                f"({self.where}); embeddings from another model are not comparable: use the model the "
                "gallery was built with, or build a new gallery"
            )
        if fp_dim is not None and int(fp_dim) != self.dim:
            raise GalleryMismatchError(f"embedding model gives {fp_dim}-d vectors, gallery holds {self.dim}-d")
        self.embedder = embedder

    def vectors(
        self, data: Any, images: Any, paths: Any, vectors: Any, fingerprint: str | None, what: str
    ) -> tuple[np.ndarray, list[str | None], list[tuple[str, str]]]:
        """Normalised vectors from exactly one of ``images``, ``paths`` or ``vectors`` (or ``data``).

        Args:
            data: paths (a path or a list of them), a uint8 image batch, or vectors; its kind is
                guessed; or None to use the keywords.
            images: (N, H, W, 3) or (H, W, 3) uint8 images, embedded with the embedder.
            paths: image files, embedded with the embedder (unreadable ones skipped).
            vectors: (N, dim) or (dim,) embeddings.
            fingerprint: the model id ``vectors`` come from, or None (not checked).
            what: what the input is for, in messages (``"item 'sku-1'"``, ``"query"``).

        Returns:
            ``(vectors (N, dim) float32 L2-normalised, source path of each (None for images and
            vectors), skipped files [(path, reason)])``.

        Raises:
            GalleryError: not exactly one input given; images or paths without an embedder; no
                path readable; NaN, infinite or all-zero rows.
            GalleryMismatchError: vectors of another dimension, or tagged with another model.
        """
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
            if fingerprint is not None and fingerprint != self.fingerprint_id:
                raise GalleryMismatchError(
                    f"{what}: vectors come from model {fingerprint}, gallery was built with {self.fingerprint_id}"
                )
            x = normalize_rows(vectors, self.dim, what)
            return x, [None] * len(x), []
        if self.embedder is None:
            raise GalleryError(f"{what}: images need an embedding model; open the gallery with embedder=")
        if paths is not None:
            paths = [str(p) for p in paths]
            embedded = self.embedder.embed(paths)
            if not len(embedded):
                reasons = "; ".join(f"{p}: {r}" for p, r in embedded.skipped[:3])
                raise GalleryError(f"{what}: none of the {len(paths)} images could be read ({reasons})")
            return normalize_rows(embedded.vectors, self.dim, what), list(embedded.paths), list(embedded.skipped)
        arr = np.asarray(images)
        if arr.ndim == 3:
            arr = arr[None]
        x = normalize_rows(self.embedder.embed_arrays(arr), self.dim, what)
        return x, [None] * len(x), []
