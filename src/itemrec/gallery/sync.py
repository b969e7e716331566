"""Keeping a gallery's in-memory search index in step with its store, across processes.

The SQLite store (:mod:`itemrec.gallery.store`) is the source of truth; the FAISS index
(:mod:`itemrec.gallery.index`) is a cache of its indexed vectors at some *generation* (the
store's counter, bumped by every write transaction). A :class:`Synchroniser` holds that index,
the map from its vector ids to item keys, and the generation it reflects:

* :meth:`Synchroniser.load` reads the index file (``index.faiss``), checks it against the
  store, and catches up from the change log, or rebuilds it from the stored vectors when the
  file is missing, damaged or inconsistent;
* :meth:`Synchroniser.sync` catches up with writes made since its generation by this or any
  other process: ``vectors`` rows with a larger ``generation`` are added, ``removals`` rows
  with a larger ``generation`` removed;
* :meth:`Synchroniser.committed` applies this process's own write directly when nobody else
  wrote in between;
* :meth:`Synchroniser.save` writes the index file atomically, and :meth:`maybe_save` only once
  enough changed that rewriting it is amortised.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from itemrec.gallery.errors import GalleryError
from itemrec.gallery.index import FaissIndex
from itemrec.gallery.index_file import remove_stale_temps, save_index_file
from itemrec.gallery.results import IntegrityReport

INDEX_NAME = "index.faiss"


class Synchroniser:
    """The search index of one gallery handle and the store generation it reflects.

    Create it empty (generation 0) for a new store, or with :meth:`load` for an existing one.

    Args:
        store: the gallery's :class:`~itemrec.gallery.store.MetadataStore`.
        folder: the gallery folder holding ``index.faiss`` (default: the store file's folder).

    Attributes:
        index: the :class:`~itemrec.gallery.index.FaissIndex`.
        generation: the store generation the index reflects.
        vector_ids: (n,) int64, sorted: the ids of the indexed vectors.
        item_pks: (n,) int64: the item key of each of ``vector_ids``.
        meta: the store's meta dict as of ``generation``.
        index_file_generation: the generation of the index file last read or written, or None.
        rebuilt: whether :meth:`load` had to rebuild the index from the store.
        unsaved: changes (vectors added or removed) since the index file was written.
        save_min_changes, save_fraction: the :meth:`maybe_save` policy.
    """

    def __init__(self, store: Any, folder: str | Path | None = None) -> None:
        self.store = store
        self.path = Path(folder) if folder is not None else Path(store.path).parent
        self.meta: dict[str, Any] = store.meta()
        self.dim = int(self.meta["dim"])
        self.save_min_changes = 64
        self.save_fraction = 0.02
        self.index_file_generation: int | None = None
        self.rebuilt = False
        self.unsaved = 0
        self._reset()

    def _reset(self) -> None:
        """Empty index at generation 0 (the next :meth:`sync` adds every stored vector)."""
        self.index = FaissIndex(self.dim, str(self.meta["index_type"]), **dict(self.meta.get("index_params") or {}))
        self.generation = 0
        self.vector_ids = np.zeros(0, np.int64)
        self.item_pks = np.zeros(0, np.int64)

    # -- loading -------------------------------------------------------------------
    @classmethod
    def load(cls, store: Any, folder: str | Path | None = None, rebuild: bool = False) -> "Synchroniser":
        """The index of ``folder/index.faiss``, checked against the store and caught up with it.

        A missing, unreadable or inconsistent file (other dimension or kind, a generation ahead
        of the store, a size that disagrees with the store after catching up) is rebuilt from the
        stored vectors, with a warning for an unreadable or stale one. Unless read-only, leftover
        temporary files of dead processes are deleted and a file behind the store is rewritten.

        Args:
            store: the gallery's store.
            folder: the gallery folder (default: the store file's folder).
            rebuild: ignore the index file and rebuild from the store.

        Returns:
            The synchroniser, at the store's current generation.

        Raises:
            GalleryError: the index rebuilt from the store still disagrees with it.
        """
        self = cls(store, folder)
        file = self.path / INDEX_NAME
        if not store.readonly:
            remove_stale_temps(file)
        loaded = not rebuild and file.is_file() and self._read_file(file)
        self.sync()
        n_rows = store.count_indexed()
        if self.index.ntotal != n_rows or len(self.vector_ids) != n_rows:
            if not loaded:
                raise GalleryError(f"{self.path}: index rebuilt from the store still disagrees with it")
            warnings.warn(f"{file}: stale index ({self.index.ntotal} vs {n_rows} rows); rebuilding", stacklevel=3)
            self._reset()
            self.sync()
            loaded = False
        self.rebuilt = not loaded
        if self.generation != self.index_file_generation and not store.readonly:
            self.save()
        return self

    def _read_file(self, file: Path) -> bool:
        """Take the index file if it fits the store; False (and a warning if damaged) otherwise."""
        try:
            index, head, arrays = FaissIndex.read(file)
            ok = (
                index.dim == self.dim
                and index.kind == self.meta["index_type"]
                and int(head["generation"]) <= self.store.generation()
                and len(arrays["vector_ids"]) == index.ntotal
            )
        except Exception as exc:  # damaged file: the store can always rebuild it
            warnings.warn(f"{file}: unreadable index ({exc}); rebuilding from the store", stacklevel=4)
            return False
        if ok:
            self.index, self.generation = index, int(head["generation"])
            self.vector_ids, self.item_pks = arrays["vector_ids"], arrays["item_pks"]
            self.index_file_generation = self.generation
        return ok

    # -- keeping the index in step with the store -----------------------------------
    def apply(self, ids: np.ndarray, pks: np.ndarray, vecs: np.ndarray, removed: np.ndarray) -> None:
        """Add and remove indexed vectors, keeping ``vector_ids`` sorted and ``item_pks`` aligned.

        Args:
            ids: (a,) int64 new vector ids.
            pks: (a,) int64 their item keys.
            vecs: (a, dim) float32 their L2-normalised vectors.
            removed: (r,) int64 vector ids to remove.
        """
        if len(removed):
            self.index.remove(removed)
            keep = ~np.isin(self.vector_ids, removed)
            self.vector_ids, self.item_pks = self.vector_ids[keep], self.item_pks[keep]
        if len(ids):
            self.index.add(ids, vecs)
            vid, vpk = np.concatenate([self.vector_ids, ids]), np.concatenate([self.item_pks, pks])
            if len(self.vector_ids) and ids.min() <= self.vector_ids[-1]:
                order = np.argsort(vid, kind="stable")
                vid, vpk = vid[order], vpk[order]
            self.vector_ids, self.item_pks = vid, vpk

    def sync(self) -> None:
        """Catch up with the writes made since ``generation`` (by this or any other process).

        Raises:
            GalleryError: the store's generation is behind the index's (a store replaced
                behind the gallery's back).
        """
        with self.store.read() as cur:
            gen = self.store.generation(cur)
            if gen == self.generation:
                return
            if gen < self.generation:
                raise GalleryError(f"{self.path}: store generation {gen} is behind the index's {self.generation}")
            ids, pks, vecs = self.store.indexed_since(cur, self.generation, self.dim)
            removed, _ = self.store.removed_since(cur, self.generation)
            self.meta = self.store.meta(cur)
        self.apply(ids, pks, vecs, removed)
        self.generation = gen

    def refresh(self) -> bool:
        """Pick up other processes' writes.

        Returns:
            True if there were any (the store's generation had moved on).
        """
        if self.store.generation() != self.generation:
            self.sync()
            return True
        return False

    def committed(self, gen0: int, gen: int, ids: np.ndarray, pks: np.ndarray, vecs: np.ndarray,
                  removed: np.ndarray) -> None:
        """Bring the index to ``gen`` after this handle's own write transaction.

        Args:
            gen0, gen: the store generation before and after the write.
            ids, pks, vecs, removed: what the write added and removed (as :meth:`apply`).
        """
        if gen0 == self.generation:  # nobody else wrote in between: apply our own change directly
            self.apply(ids, pks, vecs, removed)
            self.generation = gen
        else:
            self.sync()
        self.unsaved += len(ids) + len(removed)

    # -- the index file ----------------------------------------------------------------
    def save(self) -> None:
        """Write the index file at the current generation (temp + fsync + ``os.replace``); no-op read-only."""
        if self.store.readonly:
            return
        save_index_file(self.index, self.path / INDEX_NAME, {"generation": self.generation},
                        {"vector_ids": self.vector_ids, "item_pks": self.item_pks})
        self.index_file_generation = self.generation
        self.unsaved = 0

    def maybe_save(self) -> bool:
        """Save once the changes since the last save reach ``max(save_min_changes, save_fraction · ntotal)``.

        The cost of rewriting the file is so amortised (O(1/save_fraction) per change);
        :meth:`load` catches up the rest from the store's change log.

        Returns:
            Whether it saved.
        """
        if self.unsaved and self.unsaved >= max(self.save_min_changes, self.save_fraction * self.index.ntotal):
            self.save()
            return True
        return False

    @property
    def dirty(self) -> bool:
        """Whether the index file lags behind the index held here."""
        return bool(self.unsaved) or self.generation != self.index_file_generation

    # -- vector id -> item ----------------------------------------------------------------
    def positions(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Where vector ids lie in ``vector_ids``.

        Args:
            ids: int64 vector ids, any shape (``-1`` for "none").

        Returns:
            ``(positions, found)`` of ``ids``' shape: ``-1`` and unknown ids are not found (position 0).
        """
        vid = self.vector_ids
        if not len(vid):
            return np.zeros(ids.shape, np.int64), np.zeros(ids.shape, bool)
        if vid[-1] - vid[0] == len(vid) - 1:  # ids without gaps (no removals): arithmetic, not a binary search
            pos = ids - vid[0]
            found = (pos >= 0) & (pos < len(vid))
            return (pos if found.all() else np.where(found, pos, 0)), found
        pos = np.searchsorted(vid, ids).clip(0, len(vid) - 1)
        found = (ids >= 0) & (vid[pos] == ids)
        return pos, found

    def pks_of(self, ids: np.ndarray) -> np.ndarray:
        """Item key of each vector id.

        Args:
            ids: int64 vector ids, any shape.

        Returns:
            int64 item keys of ``ids``' shape, ``-1`` for ``-1`` or an unknown id.
        """
        pos, found = self.positions(ids)
        return self.item_pks[pos] if found.all() else np.where(found, self.item_pks[pos], -1)

    def one_vector_per_item(self) -> bool:
        """Whether no item has two indexed vectors (cached per generation).

        Returns:
            True when every item has at most one indexed vector.
        """
        cached = getattr(self, "_one_per_item_cache", None)
        if cached is None or cached[0] != self.generation:
            pks = np.sort(self.item_pks)
            cached = (self.generation, bool(len(pks) < 2 or (pks[1:] != pks[:-1]).all()))
            self._one_per_item_cache = cached
        return cached[1]

    # -- integrity -------------------------------------------------------------------------
    def check(self) -> IntegrityReport:
        """Integrity: SQLite ``PRAGMA integrity_check``, index size == indexed rows, ids mapped both ways.

        Returns:
            The :class:`~itemrec.gallery.results.IntegrityReport` (``ok`` when no problem was found).
        """
        self.refresh()
        sqlite = self.store.integrity()
        problems = [] if sqlite == "ok" else [f"sqlite integrity_check: {sqlite}"]
        counts = self.store.consistency_counts(self.dim)
        store_ids, store_pks, gen = counts["vector_ids"], counts["item_pks"], counts["generation"]
        index_ids = self.index.ids()
        missing = np.setdiff1d(store_ids, index_ids).tolist()
        unknown = np.setdiff1d(index_ids, store_ids).tolist()
        if gen != self.generation:
            problems.append(f"index generation {self.generation} != store generation {gen}")
        if self.index.ntotal != len(store_ids):
            problems.append(f"index holds {self.index.ntotal} vectors, store has {len(store_ids)} indexed rows")
        if missing:
            problems.append(f"{len(missing)} stored vectors missing from the index (e.g. {missing[:5]})")
        if unknown:
            problems.append(f"{len(unknown)} index ids not in the store (e.g. {unknown[:5]})")
        if not (np.array_equal(self.vector_ids, store_ids) and np.array_equal(self.item_pks, store_pks)):
            problems.append("vector-id -> item map of the index differs from the store")
        if counts["orphans"]:
            problems.append(f"{counts['orphans']} vectors belong to no item")
        if counts["empty_items"]:
            problems.append(f"{counts['empty_items']} items have no vectors")
        if counts["bad_length"]:
            problems.append(f"{counts['bad_length']} stored vectors are not {self.dim} float32 values")
        file_gen = self.index_file_generation
        if file_gen is not None and file_gen > gen:
            problems.append(f"index file generation {file_gen} is ahead of the store ({gen})")
        return IntegrityReport(sqlite, counts["n_items"], counts["n_vectors"], len(store_ids), self.index.ntotal, gen,
                               file_gen, missing, unknown, problems)
