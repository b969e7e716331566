"""The :class:`Gallery` facade: enrol items, recognise queries, calibrate, check.

A gallery is a folder with ``gallery.sqlite`` (the source of truth, see
:mod:`itemrec.gallery.store`) and ``index.faiss`` (a cache of the search index
at some generation, see :mod:`itemrec.gallery.index`). :meth:`Gallery.open`
loads the index file and catches up from the store's change log, or rebuilds it
from the stored vectors when the file is missing, damaged or inconsistent.

Recognition is nearest-neighbour by cosine similarity (vectors are
L2-normalised): in ``"each"`` mode an item scores the best similarity over its
enrolled images, in ``"mean"`` mode the similarity to its prototype, the
normalised mean of its image embeddings (Snell et al., "Prototypical Networks
for Few-shot Learning", 2017). A query whose best score is below the gallery's
threshold is *unknown* (open-set recognition).
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from itemrec.gallery.background import BackgroundMixin
from itemrec.gallery.errors import GalleryError, GalleryMismatchError, ItemNotFoundError
from itemrec.gallery.inputs import fingerprint_of, normalize_rows, vectors_from
from itemrec.gallery.index import INDEX_KINDS, FaissIndex, save_index_file
from itemrec.gallery.queries import QueryMixin
from itemrec.gallery.sync import INDEX_NAME, SyncMixin
from itemrec.gallery.results import (
    Calibration,
    EnrollResult,
    IntegrityReport,
    Match,
    QueryResult,
)
from itemrec.gallery.store import MetadataStore, utc_now

PROTOTYPES = ("each", "mean")
DB_NAME = "gallery.sqlite"


class Gallery(SyncMixin, QueryMixin, BackgroundMixin):
    """A persistent gallery of items; create with :meth:`create`, open with :meth:`open`.

    Queries, listing, calibration and checks come from :class:`~itemrec.gallery.queries.QueryMixin`;
    the optional hubness correction from :class:`~itemrec.gallery.background.BackgroundMixin`.
    """

    def __init__(self, path: Path, store: MetadataStore, embedder: Any = None) -> None:
        self.path = path
        self.store = store
        self.embedder = None
        self._meta = store.meta()
        self.dim = int(self._meta["dim"])
        self.prototype = str(self._meta["prototype"])
        self.fingerprint_id = str(self._meta["fingerprint_id"])
        self._items: dict[int, tuple[str, str, dict[str, Any]]] = {}
        self._unsaved = 0
        self.save_min_changes = 64
        self.save_fraction = 0.02
        self._gen = 0
        self._vid = np.zeros(0, np.int64)
        self._vpk = np.zeros(0, np.int64)
        self._index = self._empty_index()
        self.index_file_generation: int | None = None
        self.rebuilt = False
        if embedder is not None:
            self.attach(embedder)

    # -- creation / opening -------------------------------------------------------
    @classmethod
    def create(
        cls,
        path: str | os.PathLike,
        embedder: Any,
        dim: int | None = None,
        index: str = "flat",
        prototype: str = "each",
        index_params: Mapping[str, Any] | None = None,
        threshold: float | None = None,
        synchronous: str = "FULL",
    ) -> "Gallery":
        """Create an empty gallery folder at ``path``.

        ``embedder`` is the :class:`~itemrec.embedder.ImageEmbedder` (attached and
        fingerprinted), its fingerprint dict, or a fingerprint id string (for
        galleries fed with vectors only). ``dim`` defaults to the embedder's.
        """
        if index not in INDEX_KINDS:
            raise GalleryError(f"unknown index type {index!r}; choose one of {INDEX_KINDS}")
        if prototype not in PROTOTYPES:
            raise GalleryError(f"unknown prototype mode {prototype!r}; choose one of {PROTOTYPES}")
        fp_id, fp, fp_dim = fingerprint_of(embedder)
        dim = int(dim if dim is not None else (fp_dim or 0))
        if dim <= 0:
            raise GalleryError("give dim= (the embedding dimension) for a gallery created from a fingerprint id")
        if fp_dim is not None and int(fp_dim) != dim:
            raise GalleryMismatchError(f"dim={dim} but the embedding model produces {fp_dim}-d vectors")
        path = Path(path)
        if (path / DB_NAME).exists():
            raise GalleryError(f"{path} already holds a gallery; open it with Gallery.open")
        path.mkdir(parents=True, exist_ok=True)
        FaissIndex(dim, index, **dict(index_params or {}))  # validate the parameters before writing anything
        store = MetadataStore(path / DB_NAME, synchronous=synchronous)
        store.create_schema(
            {
                "fingerprint_id": fp_id,
                "fingerprint": fp,
                "dim": dim,
                "index_type": index,
                "index_params": dict(index_params or {}),
                "prototype": prototype,
                "threshold": threshold,
            }
        )
        gallery = cls(path, store, embedder if not isinstance(embedder, (str, Mapping)) else None)
        gallery.save()
        return gallery

    @classmethod
    def open(
        cls,
        path: str | os.PathLike,
        readonly: bool = False,
        embedder: Any = None,
        synchronous: str = "FULL",
        rebuild: bool = False,
    ) -> "Gallery":
        """Open a gallery; the index file is verified against the store and rebuilt if stale.

        ``readonly`` opens the database read-only (queries only; another process may write).
        """
        path = Path(path)
        if not (path / DB_NAME).is_file():
            raise FileNotFoundError(f"no gallery at {path} (missing {DB_NAME}); create one with `itemrec gallery create`")
        store = MetadataStore(path / DB_NAME, readonly=readonly, synchronous=synchronous)
        if "dim" not in store.meta():
            raise GalleryError(f"{path / DB_NAME} is not an itemrec gallery (no meta rows)")
        gallery = cls(path, store, embedder)
        gallery._load_index(force_rebuild=rebuild)
        return gallery

    def _empty_index(self) -> FaissIndex:
        return FaissIndex(self.dim, str(self._meta["index_type"]), **dict(self._meta.get("index_params") or {}))

    # -- embedder -------------------------------------------------------------------
    def attach(self, embedder: Any) -> None:
        """Use ``embedder`` for images and paths; refused unless its fingerprint matches the gallery's."""
        fp_id, _, fp_dim = fingerprint_of(embedder)
        if fp_id != self.fingerprint_id:
            raise GalleryMismatchError(
                f"embedding model fingerprint {fp_id} differs from the gallery's {self.fingerprint_id} "
                f"({self.path}); embeddings from another model are not comparable: use the model the "
                "gallery was built with, or build a new gallery"
            )
        if fp_dim is not None and int(fp_dim) != self.dim:
            raise GalleryMismatchError(f"embedding model gives {fp_dim}-d vectors, gallery holds {self.dim}-d")
        self.embedder = embedder

    def _vectors_from(
        self, data: Any, images: Any, paths: Any, vectors: Any, fingerprint: str | None, what: str
    ) -> tuple[np.ndarray, list[str | None], list[tuple[str, str]]]:
        return vectors_from(self, data, images, paths, vectors, fingerprint, what)

    # -- writing ----------------------------------------------------------------------
    def enroll(
        self,
        item_id: str,
        name: str | None = None,
        data: Any = None,
        *,
        images: Any = None,
        paths: Sequence[str | os.PathLike] | None = None,
        vectors: Any = None,
        attributes: Mapping[str, Any] | None = None,
        fingerprint: str | None = None,
        save: bool | None = None,
    ) -> EnrollResult:
        """Enrol (or add images to) one item in one transaction; acknowledged when this returns.

        ``data`` may be paths, a uint8 image batch or float vectors; or use the keywords.
        ``fingerprint`` (with ``vectors``) is checked against the gallery's. ``save``: ``None``
        saves the index file when enough changed (see :meth:`maybe_save`), ``True`` always, ``False`` never.
        """
        x, sources, skipped = self._vectors_from(data, images, paths, vectors, fingerprint, f"item {item_id!r}")
        _require_vectors(x, item_id)
        (result,) = self._commit([(str(item_id), name, x, sources, attributes, skipped)])
        self._after_write(save)
        return result

    def enroll_many(
        self,
        entries: Iterable[Mapping[str, Any] | tuple],
        *,
        commit_every: int = 1,
        save_every: int = 10_000,
        progress: bool = True,
        on_ack: Any = None,
        total: int | None = None,
    ) -> list[EnrollResult]:
        """Bulk enrolment. Each entry is a dict (``item_id``, ``name``, one of ``images``/``paths``/
        ``vectors``, optional ``attributes``) or a tuple ``(item_id, name, data)``.

        ``commit_every`` items share a transaction (acknowledged together: ``on_ack(results)``
        is called after each commit); the index file is saved every ``save_every`` items and at
        the end. A crash loses only unacknowledged items.
        """
        from tqdm.auto import tqdm

        if commit_every < 1:
            raise ValueError("commit_every must be >= 1")
        results: list[EnrollResult] = []
        batch: list[tuple] = []
        since_save = 0
        bar = tqdm(entries, total=total, desc="enrolling", unit="item", disable=not progress)
        for entry in bar:
            if isinstance(entry, Mapping):
                e = dict(entry)
                item_id, name = str(e.pop("item_id")), e.pop("name", None)
                attributes = e.pop("attributes", None)
                data = None
            else:
                item_id, name, data = str(entry[0]), entry[1], entry[2]
                attributes, e = (entry[3] if len(entry) > 3 else None), {}
            x, sources, skipped = self._vectors_from(
                data, e.get("images"), e.get("paths"), e.get("vectors"), e.get("fingerprint"), f"item {item_id!r}"
            )
            _require_vectors(x, item_id)
            batch.append((item_id, name, x, sources, attributes, skipped))
            if len(batch) >= commit_every:
                done = self._commit(batch)
                results += done
                since_save += len(batch)
                batch = []
                if on_ack is not None:
                    on_ack(done)
                if since_save >= save_every:
                    self.save()
                    since_save = 0
        if batch:
            done = self._commit(batch)
            results += done
            if on_ack is not None:
                on_ack(done)
        self.save()
        return results

    def _commit(self, batch: list[tuple]) -> list[EnrollResult]:
        added_ids, added_pks, added_vecs, removed = [], [], [], []
        results = []
        with self.store.write() as cur:
            gen0 = self.store.generation(cur)
            gen = self.store.bump_generation(cur)
            for item_id, name, x, sources, attributes, skipped in batch:
                ids, pks, vecs, rem = self._write_item(cur, gen, item_id, name, x, sources, attributes)
                added_ids += ids
                added_pks += pks
                added_vecs.append(vecs)
                removed += rem
                results.append(EnrollResult(item_id, len(x), gen, skipped))
        if gen0 == self._gen:  # nobody else wrote in between: apply our own change directly
            self._apply(
                np.array(added_ids, np.int64), np.array(added_pks, np.int64), np.vstack(added_vecs), np.array(removed, np.int64)
            )
            self._gen = gen
        else:
            self._sync()
        self._items.clear()
        self._unsaved += len(added_ids) + len(removed)
        return results

    def _write_item(self, cur: sqlite3.Cursor, gen: int, item_id: str, name: str | None, x: np.ndarray,
                    sources: list[str | None], attributes: Mapping[str, Any] | None) -> tuple[list, list, np.ndarray, list]:
        pk = self.store.item_pk(cur, item_id)
        attrs = json.dumps(dict(attributes or {}))
        if pk is None:
            cur.execute(
                "INSERT INTO items(item_id, name, attributes, created_at) VALUES (?, ?, ?, ?)",
                (item_id, name if name is not None else item_id, attrs, utc_now()),
            )
            pk = int(cur.lastrowid)
        else:
            if name is not None:
                cur.execute("UPDATE items SET name = ? WHERE item_pk = ?", (name, pk))
            if attributes is not None:
                cur.execute("UPDATE items SET attributes = ? WHERE item_pk = ?", (attrs, pk))
        each = self.prototype == "each"
        ids = []
        for vec, src in zip(x, sources):
            cur.execute(
                "INSERT INTO vectors(item_pk, source, indexed, generation, vec) VALUES (?, ?, ?, ?, ?)",
                (pk, src, int(each), gen, vec.tobytes()),
            )
            ids.append(int(cur.lastrowid))
        if each:
            return ids, [pk] * len(ids), x, []
        rows = cur.execute("SELECT vec FROM vectors WHERE item_pk = ? AND indexed = 0", (pk,)).fetchall()
        mean = np.frombuffer(b"".join(r[0] for r in rows), np.float32).reshape(-1, self.dim).mean(0)
        proto = normalize_rows(mean, self.dim, f"prototype of item {item_id!r}")
        old = [r[0] for r in cur.execute("SELECT vector_id FROM vectors WHERE item_pk = ? AND indexed = 1", (pk,))]
        self._log_removals(cur, old, pk, gen)
        cur.execute(
            "INSERT INTO vectors(item_pk, source, indexed, generation, vec) VALUES (?, ?, 1, ?, ?)",
            (pk, f"mean of {len(rows)}", gen, proto.tobytes()),
        )
        return [int(cur.lastrowid)], [pk], proto, old

    @staticmethod
    def _log_removals(cur: sqlite3.Cursor, vector_ids: list[int], pk: int, gen: int) -> None:
        cur.executemany("INSERT INTO removals(vector_id, item_pk, generation) VALUES (?, ?, ?)", [(v, pk, gen) for v in vector_ids])
        cur.executemany("DELETE FROM vectors WHERE vector_id = ?", [(v,) for v in vector_ids])

    def remove(self, item_id: str, save: bool | None = None) -> int:
        """Remove an item and all its vectors (one transaction); returns the number of vectors removed."""
        with self.store.write() as cur:
            pk = self.store.item_pk(cur, str(item_id))
            if pk is None:
                raise ItemNotFoundError(f"item {item_id!r} is not in the gallery {self.path}")
            gen0 = self.store.generation(cur)
            gen = self.store.bump_generation(cur)
            indexed = [r[0] for r in cur.execute("SELECT vector_id FROM vectors WHERE item_pk = ? AND indexed = 1", (pk,))]
            n = cur.execute("SELECT COUNT(*) FROM vectors WHERE item_pk = ?", (pk,)).fetchone()[0]
            self._log_removals(cur, indexed, pk, gen)
            cur.execute("DELETE FROM vectors WHERE item_pk = ?", (pk,))
            cur.execute("DELETE FROM items WHERE item_pk = ?", (pk,))
        if gen0 == self._gen:
            self._apply(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, self.dim), np.float32), np.array(indexed, np.int64))
            self._gen = gen
        else:
            self._sync()
        self._items.clear()
        self._unsaved += len(indexed)
        self._after_write(save)
        return int(n)

    def _after_write(self, save: bool | None) -> None:
        if save is None:
            self.maybe_save()
        elif save:
            self.save()

    def maybe_save(self) -> bool:
        """Save the index file once the changes since the last save reach
        ``max(save_min_changes, save_fraction · ntotal)``, so the cost of rewriting the file
        is amortised (O(1/save_fraction) per change); :meth:`open` catches up the rest from
        the store's change log. Returns whether it saved.
        """
        if self._unsaved and self._unsaved >= max(self.save_min_changes, self.save_fraction * self._index.ntotal):
            self.save()
            return True
        return False

    def save(self) -> None:
        """Write the index file (temp + fsync + ``os.replace``) at the current generation."""
        if self.store.readonly:
            return
        save_index_file(
            self._index, self.path / INDEX_NAME, {"generation": self._gen}, {"vector_ids": self._vid, "item_pks": self._vpk}
        )
        self.index_file_generation = self._gen
        self._unsaved = 0

    @property
    def generation(self) -> int:
        return self._gen

    @property
    def threshold(self) -> float | None:
        t = self._meta.get("threshold")
        return None if t is None else float(t)

    def set_threshold(self, threshold: float | None, calibration: Calibration | None = None) -> None:
        """Store the unknown-rejection threshold (readers pick it up at their next query)."""
        with self.store.write() as cur:
            self.store.set_meta(cur, threshold=threshold, calibration=None if calibration is None else calibration.__dict__)
            self.store.bump_generation(cur)
        self._sync()

    def __len__(self) -> int:
        with self.store.lock:
            return int(self.store.conn.execute("SELECT COUNT(*) FROM items").fetchone()[0])

    @property
    def ntotal(self) -> int:
        """Vectors in the search index."""
        return self._index.ntotal

    @property
    def index(self) -> FaissIndex:
        return self._index

    def close(self) -> None:
        if self._unsaved or self._gen != self.index_file_generation:
            self.save()
        self.store.close()

    def __enter__(self) -> "Gallery":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _require_vectors(x: np.ndarray, item_id: Any) -> None:
    if not len(x):
        raise GalleryError(f"item {item_id!r}: nothing to enrol (no vectors or images given)")


__all__ = ["Gallery", "Match", "QueryResult", "EnrollResult", "Calibration", "IntegrityReport", "fingerprint_of"]
