"""The :class:`Gallery` facade: enrol items, recognise queries, calibrate, check.

A gallery is a folder with ``gallery.sqlite`` (the source of truth, :mod:`itemrec.gallery.store`)
and ``index.faiss`` (a cache of the search index at some generation, :mod:`itemrec.gallery.sync`).
Recognition is nearest-neighbour by cosine similarity, over every enrolled image (``"each"``) or
one prototype per item (``"mean"``, Snell et al. 2017); a query whose best score is below the
threshold is *unknown* (open-set recognition; see :mod:`itemrec.gallery.queries`).

The gallery composes small parts, each usable and tested alone (see :mod:`itemrec.gallery`): the
store, the :class:`~itemrec.gallery.sync.Synchroniser` (the index kept in step with it across
processes), the inputs (embedder), the enroller, the hubness correction and the recognizer.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from itemrec.gallery.background import HubnessCorrection
from itemrec.gallery.enrolment import PROTOTYPES, Enroller
from itemrec.gallery.folder import DB_NAME, create_store, open_store
from itemrec.gallery.index import FaissIndex
from itemrec.gallery.inputs import VectorInputs, fingerprint_of, normalize_rows
from itemrec.gallery.queries import Recognizer
from itemrec.gallery.results import Calibration, EnrollResult, IntegrityReport, Match, QueryResult
from itemrec.gallery.store import MetadataStore
from itemrec.gallery.sync import Synchroniser


class Gallery:
    """A persistent gallery of items; create with :meth:`create`, open with :meth:`open`.

    Args:
        store: the gallery's :class:`~itemrec.gallery.store.MetadataStore` (its folder is the gallery's).
        index: the search index kept in step with ``store`` (a
            :class:`~itemrec.gallery.sync.Synchroniser`); None loads it from the folder's index
            file, rebuilding it from the store when needed.
        embedder: the :class:`~itemrec.embedder.ImageEmbedder` for images and paths, or None
            (vectors only).

    Raises:
        GalleryMismatchError: ``embedder`` is not the gallery's model.
        GalleryError: the index cannot be brought in step with the store.
        ValueError: ``index`` keeps another store in step.
    """

    def __init__(self, store: MetadataStore, index: Synchroniser | None = None, embedder: Any = None) -> None:
        if index is not None and index.store is not store:
            raise ValueError("the index given keeps another store in step; give Synchroniser(store) of this store")
        self.store = store
        self.sync = index if index is not None else Synchroniser.load(store)
        self.path = self.sync.path
        meta = self.sync.meta
        self.dim = int(meta["dim"])
        self.prototype = str(meta["prototype"])
        self.fingerprint_id = str(meta["fingerprint_id"])
        self.inputs = VectorInputs(self.dim, self.fingerprint_id, embedder, where=self.path)
        self.background = HubnessCorrection(store, self.sync, self.inputs)
        self.enroller = Enroller(store, self.sync, self.inputs, self.prototype)
        self.recognizer = Recognizer(store, self.sync, self.background, self.inputs, self.prototype)

    # -- creation / opening -------------------------------------------------------
    @classmethod
    def create(cls, path: str | os.PathLike, embedder: Any, dim: int | None = None, index: str = "flat",
               prototype: str = "each", index_params: Mapping[str, Any] | None = None, threshold: float | None = None,
               synchronous: str = "FULL") -> "Gallery":
        """Create an empty gallery folder.

        Args:
            path: the folder (created; must not hold a gallery).
            embedder: the :class:`~itemrec.embedder.ImageEmbedder` (attached), its fingerprint dict,
                or a fingerprint id string (for galleries fed with vectors only).
            dim: the embedding dimension (default: the embedder's; required with an id string).
            index, index_params: ``"flat"``, ``"ivf"`` or ``"hnsw"`` (:mod:`itemrec.gallery.index`), its parameters.
            prototype: ``"each"`` (every image indexed) or ``"mean"`` (one prototype per item).
            threshold: the unknown-rejection threshold, or None.
            synchronous: SQLite's durability setting (see :class:`MetadataStore`).

        Returns:
            The open gallery, its index file written.

        Raises:
            GalleryError: unknown index kind or prototype mode, no dimension, or a gallery already there.
            GalleryMismatchError: ``dim`` differs from the embedder's.
            ValueError: bad ``index_params``.
        """
        store = create_store(path, embedder, dim, index, prototype, index_params, threshold, synchronous)
        gallery = cls(store, Synchroniser(store), embedder if not isinstance(embedder, (str, Mapping)) else None)
        gallery.save()
        return gallery

    @classmethod
    def open(cls, path: str | os.PathLike, readonly: bool = False, embedder: Any = None, synchronous: str = "FULL",
             rebuild: bool = False) -> "Gallery":
        """Open a gallery; the index file is verified against the store and rebuilt if stale.

        Args:
            path: the gallery folder.
            readonly: open the database read-only (queries only; another process may write).
            embedder: the model the gallery was built with, for images and paths; or None.
            synchronous: SQLite's durability setting (see :class:`MetadataStore`).
            rebuild: rebuild the index from the store whatever the index file holds.

        Returns:
            The open gallery, at the store's current generation.

        Raises:
            FileNotFoundError: no gallery at ``path``.
            GalleryError: the database is not a gallery.
            GalleryMismatchError: ``embedder`` is another model.
        """
        store = open_store(path, readonly, synchronous)
        if embedder is not None:  # refuse another model before loading the index
            meta = store.meta()
            VectorInputs(int(meta["dim"]), str(meta["fingerprint_id"]), embedder, where=path)
        return cls(store, Synchroniser.load(store, rebuild=rebuild), embedder)

    # -- embedder -------------------------------------------------------------------
    @property
    def embedder(self) -> Any:
        """The attached embedding model, or None (vectors only)."""
        return self.inputs.embedder

    def attach(self, embedder: Any) -> None:
        """Use ``embedder`` for images and paths.

        Args:
            embedder: the model the gallery was built with.

        Raises:
            GalleryMismatchError: its fingerprint or dimension differs from the gallery's.
        """
        self.inputs.attach(embedder)

    # -- writing ----------------------------------------------------------------------
    def enroll(self, item_id: str, name: str | None = None, data: Any = None, *, images: Any = None,
               paths: Sequence[str | os.PathLike] | None = None, vectors: Any = None,
               attributes: Mapping[str, Any] | None = None, fingerprint: str | None = None,
               save: bool | None = None) -> EnrollResult:
        """Enrol (or add images to) one item in one transaction; acknowledged when this returns.

        Args:
            item_id: the item's id.
            name: its display name (None: keep the stored one; the id for a new item).
            data, images, paths, vectors, fingerprint: the item's images ((n, H, W, 3) uint8, image
                files, or (n, dim) embeddings of model ``fingerprint``), as :meth:`query` takes them.
            attributes: JSON-serialisable attributes (None: keep the stored ones).
            save: write the index file: None when enough changed (:meth:`maybe_save`), True always, False never.

        Returns:
            The :class:`~itemrec.gallery.results.EnrollResult`.

        Raises:
            GalleryError: nothing to enrol, unreadable images only, or unusable vectors.
            GalleryMismatchError: vectors of another dimension or model.
            PermissionError: the gallery is open read-only.
        """
        entry = self.enroller.entry(item_id, data, images=images, paths=paths, vectors=vectors,
                                    fingerprint=fingerprint, name=name, attributes=attributes)
        (result,) = self.enroller.commit([entry])
        self._after_write(save)
        return result

    def enroll_many(self, entries: Iterable[Mapping[str, Any] | tuple], *, commit_every: int = 1,
                    save_every: int = 10_000, progress: bool = True, on_ack: Any = None,
                    total: int | None = None) -> list[EnrollResult]:
        """Bulk enrolment; a crash loses only unacknowledged items.

        Args:
            entries: dicts (``item_id``, ``name``, one of ``images``/``paths``/``vectors``, optional
                ``attributes``) or tuples ``(item_id, name, data[, attributes])``.
            commit_every: items per transaction, acknowledged together by ``on_ack(results)``.
            save_every: items between index-file saves (and one at the end).
            progress, total: show a tqdm bar, with this many entries.
            on_ack: called with the results of each commit.

        Returns:
            One :class:`~itemrec.gallery.results.EnrollResult` per item.

        Raises:
            ValueError: ``commit_every < 1``.
            GalleryError, GalleryMismatchError: an entry cannot be enrolled (earlier commits stay).
            PermissionError: the gallery is open read-only.
        """
        return self.enroller.enroll_many(entries, commit_every, save_every, progress, on_ack, total)

    def remove(self, item_id: str, save: bool | None = None) -> int:
        """Remove an item and all its vectors (one transaction).

        Args:
            item_id: the item's id.
            save: as for :meth:`enroll`.

        Returns:
            The number of vectors removed.

        Raises:
            ItemNotFoundError: the item is not enrolled.
            PermissionError: the gallery is open read-only.
        """
        n = self.enroller.remove(item_id)
        self._after_write(save)
        return n

    def _after_write(self, save: bool | None) -> None:
        if save is None:
            self.maybe_save()
        elif save:
            self.save()

    def set_threshold(self, threshold: float | None, calibration: Calibration | None = None) -> None:
        """Store the unknown-rejection threshold (readers pick it up at their next query).

        Args:
            threshold: the similarity below which a query is unknown, or None (reject nothing).
            calibration: how it was chosen, stored with it.

        Raises:
            PermissionError: the gallery is open read-only.
        """
        self.recognizer.set_threshold(threshold, calibration)

    def set_background(self, data: Any = None, *, images: Any = None, paths: Any = None, vectors: Any = None,
                       k: int = 10, beta: float = 0.5, fingerprint: str | None = None) -> int:
        """Store background photos and switch the hubness correction on (see :mod:`itemrec.gallery.background`).

        Scores become ``cos − β·r(v)``, so the threshold is cleared: calibrate again afterwards.

        Args:
            data, images, paths, vectors, fingerprint: photos of products other than the queries',
                as :meth:`query` takes them.
            k, beta: background neighbours per indexed vector, and the weight of the correction.

        Returns:
            The number of background vectors.

        Raises:
            GalleryError: bad ``k`` or ``beta``, or unusable input.
            GalleryMismatchError: vectors of another dimension or model.
        """
        return self.background.set_background(data, images=images, paths=paths, vectors=vectors, k=k, beta=beta,
                                              fingerprint=fingerprint)

    def clear_background(self) -> None:
        """Switch the hubness correction off (plain cosine scores again); clears the threshold.

        Raises:
            PermissionError: the gallery is open read-only.
        """
        self.background.clear_background()

    # -- reading ----------------------------------------------------------------------
    def search(self, vectors: Any, k: int = 5, fingerprint: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` distinct items per query vector (see :meth:`Recognizer.search`).

        Args:
            vectors, k, fingerprint: (n, dim) query embeddings (of model ``fingerprint``), items per query.

        Returns:
            ``(similarities (n, k) float32, item_pks (n, k) int64)``; ``-inf``/``-1`` where fewer items exist.

        Raises:
            ValueError: ``k < 1``.
            GalleryError, GalleryMismatchError: unusable vectors.
        """
        return self.recognizer.search(vectors, k, fingerprint)

    def query(self, data: Any = None, *, images: Any = None, paths: Any = None, vectors: Any = None, k: int = 5,
              fingerprint: str | None = None, threshold: float | None = None) -> list[QueryResult]:
        """Recognise each query (images, paths or vectors): its top-``k`` items and the unknown flag.

        Args:
            data: images, paths or vectors (kind guessed), or use one of the keywords.
            images, paths, vectors: (n, H, W, 3) uint8, image files (unreadable ones skipped), or
                (n, dim) embeddings.
            k: items per query.
            fingerprint: the model id of ``vectors``, checked against the gallery's when given.
            threshold: overrides the gallery's threshold (``unknown`` is ``best < threshold``).

        Returns:
            One :class:`~itemrec.gallery.results.QueryResult` per query.

        Raises:
            ValueError: ``k < 1``.
            GalleryError, GalleryMismatchError: unusable input.
        """
        return self.recognizer.query(data, images=images, paths=paths, vectors=vectors, k=k,
                                     fingerprint=fingerprint, threshold=threshold)

    def items(self) -> Any:
        """The enrolled items.

        Returns:
            A pandas DataFrame: item_id, name, attributes (dict), created_at, n_vectors.
        """
        return self.recognizer.items()

    def calibrate(self, val_embeddings: Any, val_item_ids: Any, target_far: float = 0.01,
                  save: bool = True) -> Calibration:
        """Choose the unknown threshold for a target false-accept rate (see :meth:`Recognizer.calibrate`).

        Args:
            val_embeddings: (n, dim) embeddings of validation photos.
            val_item_ids: (n,) the item each shows (enrolled or not).
            target_far: the false-accept rate (FPIR) allowed on non-mated searches.
            save: store the threshold.

        Returns:
            The :class:`~itemrec.gallery.results.Calibration` (threshold, achieved FAR, DIR, counts).

        Raises:
            ValueError: lengths differ, no impostor score, or ``target_far`` outside [0, 1].
            GalleryError, GalleryMismatchError: unusable embeddings.
        """
        return self.recognizer.calibrate(val_embeddings, val_item_ids, target_far, save)

    def check(self) -> IntegrityReport:
        """Integrity of the store and of the index against it (see :meth:`Synchroniser.check`).

        Returns:
            The :class:`~itemrec.gallery.results.IntegrityReport`.
        """
        return self.sync.check()

    def describe(self) -> dict[str, Any]:
        """Summary for ``itemrec gallery list`` and ``/health``.

        Returns:
            ``{"path", "items", "vectors", "dim", "index", "prototype", "fingerprint_id",
            "threshold", "hubness", "generation"}``.
        """
        self.refresh()
        return {"path": os.fspath(self.path), "items": len(self), "vectors": self.ntotal, "dim": self.dim,
                "index": self.sync.meta["index_type"], "prototype": self.prototype,
                "fingerprint_id": self.fingerprint_id, "threshold": self.threshold, "hubness": self.hubness,
                "generation": self.generation}

    def refresh(self) -> bool:
        """Pick up other processes' writes.

        Returns:
            True if there were any.
        """
        return self.sync.refresh()

    # -- state --------------------------------------------------------------------------
    @property
    def threshold(self) -> float | None:
        """The unknown-rejection threshold, or None."""
        return self.recognizer.threshold

    @property
    def hubness(self) -> dict[str, Any] | None:
        """``{"k", "beta", "n_background"}`` while the hubness correction is on, else None."""
        return self.background.settings

    @property
    def generation(self) -> int:
        """The store generation the index reflects."""
        return self.sync.generation

    @property
    def ntotal(self) -> int:
        """Vectors in the search index."""
        return self.sync.index.ntotal

    @property
    def index(self) -> FaissIndex:
        """The search index (:class:`~itemrec.gallery.index.FaissIndex`)."""
        return self.sync.index

    @property
    def rebuilt(self) -> bool:
        """Whether opening had to rebuild the index from the store."""
        return self.sync.rebuilt

    @property
    def index_file_generation(self) -> int | None:
        """The generation of the index file last read or written, or None."""
        return self.sync.index_file_generation

    def __len__(self) -> int:
        """Number of enrolled items."""
        return self.store.count_items()

    def maybe_save(self) -> bool:
        """Save the index file once enough changed (see :meth:`Synchroniser.maybe_save`).

        Returns:
            Whether it saved.
        """
        return self.sync.maybe_save()

    def save(self) -> None:
        """Write the index file (temp + fsync + ``os.replace``) at the current generation."""
        self.sync.save()

    def close(self) -> None:
        """Save the index file if it lags behind, and close the store."""
        if self.sync.dirty:
            self.save()
        self.store.close()

    def __enter__(self) -> "Gallery":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


__all__ = ["Gallery", "Match", "QueryResult", "EnrollResult", "Calibration", "IntegrityReport", "fingerprint_of",
           "normalize_rows", "PROTOTYPES", "DB_NAME"]
