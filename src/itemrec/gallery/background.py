"""Hubness correction for a gallery: a background set of photos, and one offset per indexed vector.

Some catalogue images are near every photo (hubs) and win queries for products
they are not; CSLS ranks by ``cos(q, v) − β · r(v)`` instead, with ``r(v)`` the
mean cosine of vector ``v`` to its ``k`` nearest *background* photos (photos of
other products, never the queries). See :mod:`itemrec.evaluation.hubness` for
the method and its references; on the Grocery Store open set it lifts rank-1 of
frozen ImageNet features from 0.477 to 0.547.

The background vectors live in the store (table ``background``, written in one
transaction with the meta keys ``hubness_k``, ``hubness_beta``,
``background_version``), so they are as durable as the items and other
processes pick them up with the next generation. Offsets are derived data, kept
in memory per vector id and computed for new vectors when they are first needed.

The offset of a vector is :func:`itemrec.evaluation.hubness_offsets` (cosine):
``o(v) = β·r(v)``, added to distances in the evaluation and subtracted from similarities
here, so the gallery and the evaluation rank the same vectors alike. Scores with a
background are ``cos − β·r`` (lower than plain cosines by ``β·r``):
:meth:`HubnessCorrection.set_background` clears the unknown threshold, so
calibrate again afterwards.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from itemrec.gallery.errors import GalleryError

_TABLE = "CREATE TABLE IF NOT EXISTS background (row INTEGER PRIMARY KEY, vec BLOB NOT NULL)"


class HubnessCorrection:
    """A gallery's background photos and the per-vector score adjustments they give.

    Args:
        store: the gallery's :class:`~itemrec.gallery.store.MetadataStore`.
        sync: its :class:`~itemrec.gallery.sync.Synchroniser` (the indexed vector ids and the
            meta as of its generation).
        inputs: its :class:`~itemrec.gallery.inputs.VectorInputs` (images, paths or vectors in).
    """

    def __init__(self, store: Any, sync: Any, inputs: Any) -> None:
        self.store = store
        self.sync = sync
        self.inputs = inputs
        self.dim = int(sync.dim)

    @property
    def _meta(self) -> dict[str, Any]:
        return self.sync.meta

    @property
    def _vid(self) -> np.ndarray:
        return self.sync.vector_ids

    def _vectors_from(self, *args: Any) -> tuple[np.ndarray, list[str | None], list[tuple[str, str]]]:
        return self.inputs.vectors(*args)

    def set_background(
        self, data: Any = None, *, images: Any = None, paths: Any = None, vectors: Any = None,
        k: int = 10, beta: float = 0.5, fingerprint: str | None = None,
    ) -> int:
        """Store background photos and switch the hubness correction on; clears the threshold.

        Args:
            data: images, paths or vectors (kind guessed), or use one of the keywords.
            images: (N, H, W, 3) uint8 photos of products other than the queries'.
            paths: image files of such photos.
            vectors: (N, dim) embeddings of such photos.
            k: background neighbours per indexed vector (``r(v)`` averages ``k`` cosines).
            beta: weight β ≥ 0 of :func:`itemrec.evaluation.hubness_offsets` (``cos − β·r``).
            fingerprint: the model id of ``vectors`` (checked against the gallery's).

        Returns:
            The number of background vectors stored.

        Raises:
            GalleryError: ``k`` not a positive integer, ``beta`` negative or not finite, or the
                input unusable (see :meth:`~itemrec.gallery.inputs.VectorInputs.vectors`).
            GalleryMismatchError: vectors of another dimension or model.
        """
        x = self._vectors_from(data, images, paths, vectors, fingerprint, "background")[0]
        if isinstance(k, bool) or int(k) != k or k < 1:
            raise GalleryError(f"k must be a positive integer; got {k!r}")
        if not np.isfinite(beta) or beta < 0:
            raise GalleryError(f"beta must be a finite number >= 0; got {beta!r}")
        self._write_background(x, int(k), float(beta))
        return len(x)

    def clear_background(self) -> None:
        """Switch the hubness correction off (plain cosine scores again). Clears the threshold."""
        self._write_background(None, None, None)

    def _write_background(self, x: np.ndarray | None, k: int | None, beta: float | None) -> None:
        """Replace the background rows and settings in one transaction (readers see the old or the new)."""
        with self.store.write() as cur:
            cur.execute(_TABLE)
            cur.execute("DELETE FROM background")
            if x is not None:
                cur.executemany("INSERT INTO background(row, vec) VALUES (?, ?)", [(i, v.tobytes()) for i, v in enumerate(x)])
            version = int(self.store.meta(cur).get("background_version") or 0) + 1
            self.store.set_meta(cur, hubness_k=k, hubness_beta=beta, background_version=version,
                                threshold=None, calibration=None)
            self.store.bump_generation(cur)
        self.sync.sync()

    @property
    def settings(self) -> dict[str, Any] | None:
        """``{"k", "beta", "n_background"}`` while the correction is on, else None."""
        if not self._meta.get("hubness_k"):
            return None
        bg = self._background()
        return {"k": int(self._meta["hubness_k"]), "beta": float(self._meta["hubness_beta"]), "n_background": len(bg)}

    def _background(self) -> np.ndarray:
        version = self._meta.get("background_version")
        cached = getattr(self, "_bg_cache", None)
        if cached is None or cached[0] != version:
            with self.store.read() as cur:
                rows = cur.execute("SELECT vec FROM background ORDER BY row").fetchall() if version else []
            bg = np.frombuffer(b"".join(r[0] for r in rows), np.float32).reshape(len(rows), self.dim)
            self._bg_cache = (version, bg)
            self._adj_cache = (version, np.zeros(0, np.int64), np.zeros(0, np.float64))
        return self._bg_cache[1]

    def adjustments(self) -> np.ndarray | None:
        """The score offset ``−β · r(v)`` of each indexed vector, aligned with the synchroniser's
        ``vector_ids``; None without a background. Offsets of new vectors are computed on first use.

        Returns:
            (n,) float64 offsets, or None.
        """
        return self._adjustments()

    def _adjustments(self) -> np.ndarray | None:
        """``−o(v) = −β · r(v)`` (:func:`itemrec.evaluation.hubness_offsets`) for each vector of ``self._vid``
        (aligned with it), to add to its cosine similarities; None without a background."""
        if not self._meta.get("hubness_k"):
            return None
        bg = self._background()
        if not len(bg):
            return None
        version, ids, adj = self._adj_cache
        if len(ids) == len(self._vid) and np.array_equal(ids, self._vid):
            return adj
        known = np.isin(self._vid, ids)
        new_ids = self._vid[~known]
        new_vecs = self._stored_vectors(new_ids)
        from itemrec.evaluation.hubness import hubness_offsets  # lazy: the gallery loads without the evaluation

        new_adj = -hubness_offsets(new_vecs, bg, int(self._meta["hubness_k"]), float(self._meta["hubness_beta"]), "cosine")
        merged = np.empty(len(self._vid), np.float64)
        merged[~known] = new_adj
        if known.any():
            merged[known] = adj[np.searchsorted(ids, self._vid[known])]
        self._adj_cache = (version, self._vid.copy(), merged)
        return merged

    def _stored_vectors(self, ids: np.ndarray) -> np.ndarray:
        """The stored vectors of ``ids`` (sorted ascending, as ``self._vid`` is), in that order."""
        parts = []
        with self.store.read() as cur:
            for start in range(0, len(ids), 900):
                chunk = ids[start : start + 900].tolist()
                marks = ",".join("?" * len(chunk))
                rows = cur.execute(f"SELECT vector_id, item_pk, vec FROM vectors WHERE vector_id IN ({marks}) "
                                   "ORDER BY vector_id", chunk).fetchall()
                if len(rows) != len(chunk):
                    raise GalleryError("indexed vectors are missing from the store; run `itemrec gallery check`")
                parts.append(self.store.rows_to_arrays(rows, self.dim)[2])
        return np.concatenate(parts) if parts else np.zeros((0, self.dim), np.float32)
