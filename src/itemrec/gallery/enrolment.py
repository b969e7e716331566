"""Writing side of a gallery: enrol items (one or in bulk) and remove them.

Each write is one store transaction that bumps the generation; the rows it adds are marked
with that generation and the indexed rows it deletes are logged in ``removals``, so every
other handle catches up from the store (see :mod:`itemrec.gallery.sync`). An enrolment is
acknowledged (durable) when the call returns, or when ``on_ack`` is called in bulk mode.

In ``"each"`` mode every image vector is indexed; in ``"mean"`` mode the image vectors are
stored unindexed and the item's one indexed vector is their normalised mean, its *prototype*
(Snell et al., "Prototypical Networks for Few-shot Learning", 2017), replaced at each enrolment.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from itemrec.gallery.errors import GalleryError, ItemNotFoundError
from itemrec.gallery.inputs import normalize_rows
from itemrec.gallery.results import EnrollResult
from itemrec.gallery.store import utc_now

PROTOTYPES = ("each", "mean")


class Enroller:
    """Enrols and removes items of one gallery and keeps its index in step with the writes.

    Args:
        store: the gallery's :class:`~itemrec.gallery.store.MetadataStore`.
        sync: its :class:`~itemrec.gallery.sync.Synchroniser`.
        inputs: its :class:`~itemrec.gallery.inputs.VectorInputs`.
        prototype: ``"each"`` or ``"mean"`` (see the module docstring).

    Raises:
        GalleryError: an unknown ``prototype``.
    """

    def __init__(self, store: Any, sync: Any, inputs: Any, prototype: str) -> None:
        if prototype not in PROTOTYPES:
            raise GalleryError(f"unknown prototype mode {prototype!r}; choose one of {PROTOTYPES}")
        self.store = store
        self.sync = sync
        self.inputs = inputs
        self.prototype = prototype
        self.dim = int(sync.dim)

    def entry(self, item_id: Any, data: Any = None, *, images: Any = None, paths: Any = None, vectors: Any = None,
              fingerprint: str | None = None, name: str | None = None, attributes: Mapping[str, Any] | None = None,
              ) -> tuple:
        """One item ready to write: its vectors embedded and checked.

        Args:
            item_id: the item's id (made a string).
            data, images, paths, vectors, fingerprint: its images or vectors, as
                :meth:`~itemrec.gallery.inputs.VectorInputs.vectors` takes them.
            name: its display name (None: keep the stored one, or the id for a new item).
            attributes: JSON-serialisable attributes (None: keep the stored ones).

        Returns:
            ``(item_id, name, vectors (n, dim), sources, attributes, skipped files)`` for :meth:`commit`.

        Raises:
            GalleryError: no vector to enrol (nothing given, or no image readable), or unusable input.
            GalleryMismatchError: vectors of another dimension or model.
        """
        what = f"item {str(item_id)!r}"
        x, sources, skipped = self.inputs.vectors(data, images, paths, vectors, fingerprint, what)
        if not len(x):
            raise GalleryError(f"{what}: nothing to enrol (no vectors or images given)")
        return str(item_id), name, x, sources, attributes, skipped

    def enroll_many(self, entries: Iterable[Mapping[str, Any] | tuple], commit_every: int = 1, save_every: int = 10_000,
                    progress: bool = True, on_ack: Any = None, total: int | None = None) -> list[EnrollResult]:
        """Bulk enrolment, ``commit_every`` items per transaction (see :meth:`Gallery.enroll_many`).

        Args:
            entries: dicts (``item_id``, ``name``, one of ``images``/``paths``/``vectors``, optional
                ``attributes`` and ``fingerprint``) or tuples ``(item_id, name, data[, attributes])``.
            commit_every: items per transaction (acknowledged together).
            save_every: items between index-file saves (and one at the end).
            progress: show a tqdm bar.
            on_ack: called with the list of :class:`EnrollResult` after each commit.
            total: the number of entries, for the bar.

        Returns:
            One :class:`~itemrec.gallery.results.EnrollResult` per item, in order.

        Raises:
            ValueError: ``commit_every < 1``.
            GalleryError, GalleryMismatchError: an entry cannot be enrolled (those committed before stay).
        """
        from tqdm.auto import tqdm

        if commit_every < 1:
            raise ValueError("commit_every must be >= 1")
        results: list[EnrollResult] = []
        batch: list[tuple] = []
        since_save = 0
        for entry in tqdm(entries, total=total, desc="enrolling", unit="item", disable=not progress):
            if isinstance(entry, Mapping):
                e = dict(entry)
                batch.append(self.entry(e.pop("item_id"), None, images=e.get("images"), paths=e.get("paths"),
                                        vectors=e.get("vectors"), fingerprint=e.get("fingerprint"),
                                        name=e.get("name"), attributes=e.get("attributes")))
            else:
                batch.append(self.entry(entry[0], entry[2], name=entry[1],
                                        attributes=entry[3] if len(entry) > 3 else None))
            if len(batch) >= commit_every:
                done = self.commit(batch)
                results += done
                since_save += len(batch)
                batch = []
                if on_ack is not None:
                    on_ack(done)
                if since_save >= save_every:
                    self.sync.save()
                    since_save = 0
        if batch:
            done = self.commit(batch)
            results += done
            if on_ack is not None:
                on_ack(done)
        self.sync.save()
        return results

    def commit(self, batch: list[tuple]) -> list[EnrollResult]:
        """Write items in one transaction and bring the index to the new generation.

        Args:
            batch: :meth:`entry` tuples.

        Returns:
            One acknowledged :class:`~itemrec.gallery.results.EnrollResult` per item.

        Raises:
            PermissionError: the gallery is open read-only.
        """
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
        self.sync.committed(gen0, gen, np.array(added_ids, np.int64), np.array(added_pks, np.int64),
                            np.vstack(added_vecs), np.array(removed, np.int64))
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
        _log_removals(cur, old, pk, gen)
        cur.execute(
            "INSERT INTO vectors(item_pk, source, indexed, generation, vec) VALUES (?, ?, 1, ?, ?)",
            (pk, f"mean of {len(rows)}", gen, proto.tobytes()),
        )
        return [int(cur.lastrowid)], [pk], proto, old

    def remove(self, item_id: str) -> int:
        """Remove an item and all its vectors in one transaction.

        Args:
            item_id: the item's id.

        Returns:
            The number of vectors removed (indexed or not).

        Raises:
            ItemNotFoundError: the item is not enrolled.
            PermissionError: the gallery is open read-only.
        """
        with self.store.write() as cur:
            pk = self.store.item_pk(cur, str(item_id))
            if pk is None:
                raise ItemNotFoundError(f"item {item_id!r} is not in the gallery {self.sync.path}")
            gen0 = self.store.generation(cur)
            gen = self.store.bump_generation(cur)
            indexed = [r[0] for r in cur.execute("SELECT vector_id FROM vectors WHERE item_pk = ? AND indexed = 1", (pk,))]
            n = cur.execute("SELECT COUNT(*) FROM vectors WHERE item_pk = ?", (pk,)).fetchone()[0]
            _log_removals(cur, indexed, pk, gen)
            cur.execute("DELETE FROM vectors WHERE item_pk = ?", (pk,))
            cur.execute("DELETE FROM items WHERE item_pk = ?", (pk,))
        self.sync.committed(gen0, gen, np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, self.dim), np.float32),
                            np.array(indexed, np.int64))
        return int(n)


def _log_removals(cur: sqlite3.Cursor, vector_ids: list[int], pk: int, gen: int) -> None:
    """Delete indexed vector rows and log them in ``removals`` (for the other handles to catch up)."""
    cur.executemany("INSERT INTO removals(vector_id, item_pk, generation) VALUES (?, ?, ?)", [(v, pk, gen) for v in vector_ids])
    cur.executemany("DELETE FROM vectors WHERE vector_id = ?", [(v,) for v in vector_ids])
