"""Keeping a gallery's in-memory index in step with its store (load, catch up, rebuild)."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from itemrec.gallery.errors import GalleryError
from itemrec.gallery.index import FaissIndex, remove_stale_temps

INDEX_NAME = "index.faiss"


class SyncMixin:
    """Index loading and change-log catch-up for :class:`~itemrec.gallery.Gallery`.

    The index held in memory reflects the store at generation ``_gen``; the
    vectors added since are ``vectors`` rows with a larger ``generation``, the
    vectors removed since are ``removals`` rows with a larger ``generation``.
    """

    # provided by Gallery
    store: Any
    dim: int
    path: Any
    _meta: dict[str, Any]

    def _load_index(self, force_rebuild: bool = False) -> None:
        file = self.path / INDEX_NAME
        if not self.store.readonly:
            remove_stale_temps(file)
        loaded = False
        if file.is_file() and not force_rebuild:
            try:
                index, head, arrays = FaissIndex.read(file)
                store_gen = self.store.generation()
                ok = (
                    index.dim == self.dim
                    and index.kind == self._meta["index_type"]
                    and int(head["generation"]) <= store_gen
                    and len(arrays["vector_ids"]) == index.ntotal
                )
                if ok:
                    self._index, self._gen = index, int(head["generation"])
                    self._vid, self._vpk = arrays["vector_ids"], arrays["item_pks"]
                    self.index_file_generation = self._gen
                    loaded = True
            except Exception as exc:  # damaged file: the store can always rebuild it
                warnings.warn(f"{file}: unreadable index ({exc}); rebuilding from the store", stacklevel=3)
        if not loaded:
            self._index, self._gen = self._empty_index(), 0
            self._vid, self._vpk = np.zeros(0, np.int64), np.zeros(0, np.int64)
        self._sync()
        with self.store.lock:
            n_rows = self.store.conn.execute("SELECT COUNT(*) FROM vectors WHERE indexed = 1").fetchone()[0]
        if self._index.ntotal != n_rows or len(self._vid) != n_rows:
            if not loaded:
                raise GalleryError(f"{self.path}: index rebuilt from the store still disagrees with it")
            warnings.warn(f"{file}: stale index ({self._index.ntotal} vs {n_rows} rows); rebuilding", stacklevel=3)
            self._index, self._gen = self._empty_index(), 0
            self._vid, self._vpk = np.zeros(0, np.int64), np.zeros(0, np.int64)
            self._sync()
            loaded = False
        self.rebuilt = not loaded
        if self._gen != self.index_file_generation and not self.store.readonly:
            self.save()

    # -- keeping the index in step with the store -----------------------------------
    def _apply(self, ids: np.ndarray, pks: np.ndarray, vecs: np.ndarray, removed: np.ndarray) -> None:
        if len(removed):
            self._index.remove(removed)
            keep = ~np.isin(self._vid, removed)
            self._vid, self._vpk = self._vid[keep], self._vpk[keep]
        if len(ids):
            self._index.add(ids, vecs)
            vid, vpk = np.concatenate([self._vid, ids]), np.concatenate([self._vpk, pks])
            if len(self._vid) and ids.min() <= self._vid[-1]:
                order = np.argsort(vid, kind="stable")
                vid, vpk = vid[order], vpk[order]
            self._vid, self._vpk = vid, vpk

    def _sync(self) -> None:
        """Catch up with writes made since ``self._gen`` (by this or any other process)."""
        with self.store.read() as cur:
            gen = self.store.generation(cur)
            if gen == self._gen:
                return
            if gen < self._gen:
                raise GalleryError(f"{self.path}: store generation {gen} is behind the index's {self._gen}")
            ids, pks, vecs = self.store.indexed_since(cur, self._gen, self.dim)
            removed, _ = self.store.removed_since(cur, self._gen)
            self._meta = self.store.meta(cur)
        self._apply(ids, pks, vecs, removed)
        self._gen = gen
        self._items.clear()

    def refresh(self) -> bool:
        """Pick up other processes' writes; returns True if there were any."""
        gen = self.store.generation()
        if gen != self._gen:
            self._sync()
            return True
        return False

