"""Reading side of :class:`~itemrec.gallery.Gallery`: search, query, items, calibrate, check."""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from itemrec.gallery.results import Calibration, IntegrityReport, Match, QueryResult, choose_threshold


class QueryMixin:
    """Methods of :class:`~itemrec.gallery.Gallery` that only read (they first pick up other writers' changes)."""

    # provided by Gallery
    dim: int
    prototype: str

    def search(self, vectors: Any, k: int = 5, fingerprint: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` distinct items per query vector: ``(similarities (n, k) float32, item_pks (n, k) int64)``.

        An item's score is the best cosine similarity over its indexed vectors;
        missing places (fewer than ``k`` items) hold ``-inf`` and ``-1``.
        """
        q = self._vectors_from(None, None, None, vectors, fingerprint, "query")[0]
        self.refresh()
        return self._search_items(q, k)

    def _search_items(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        n = len(q)
        out_s = np.full((n, k), -np.inf, np.float32)
        out_p = np.full((n, k), -1, np.int64)
        ntotal = self._index.ntotal
        if ntotal == 0 or n == 0:
            return out_s, out_p
        adj = self._adjustments()  # hubness correction per vector (see gallery.background), or None
        if adj is None and self._one_vector_per_item():  # no aggregation and no re-ranking needed
            scores, ids = self._index.search(q, k)
            return scores, self._pks_of(ids)
        # fetch kk vectors, aggregate them into items (an item scores its best vector), re-fetch more
        # while that cannot be the answer: fewer than k items, or (with adjustments) a vector not fetched
        # could still beat the k-th item, as its score is at most the last fetched raw score + max(adj)
        top_adj = float(adj.max()) if adj is not None else 0.0
        todo = np.arange(n)
        kk = min(ntotal, max(4 * k, k + 16))
        while len(todo):
            raw, ids = self._index.search(q[todo], kk)
            pos, found = self._positions(ids)
            pks = np.where(found, self._vpk[pos], -1)
            scores = raw if adj is None else np.where(found, raw + adj[pos], -np.inf)
            again = []
            for row, qi in enumerate(todo):
                order = np.argsort(-scores[row], kind="stable") if adj is not None else range(len(scores[row]))
                seen: set[int] = set()
                col = 0
                for j in order:
                    p = int(pks[row, j])
                    if p < 0 or p in seen:
                        continue
                    seen.add(p)
                    out_s[qi, col], out_p[qi, col] = scores[row, j], p
                    col += 1
                    if col == k:
                        break
                short = col < k or (adj is not None and out_s[qi, k - 1] < raw[row, -1] + top_adj)
                if short and kk < ntotal:
                    again.append(qi)
                    out_s[qi], out_p[qi] = -np.inf, -1
            todo = np.asarray(again, np.int64)
            kk = min(ntotal, kk * 4)
        return out_s, out_p

    def _one_vector_per_item(self) -> bool:
        """True in ``"mean"`` mode, or when no item has two indexed vectors (cached per generation)."""
        if self.prototype == "mean":
            return True
        cached = getattr(self, "_one_per_item_cache", None)
        if cached is None or cached[0] != self._gen:
            pks = np.sort(self._vpk)
            cached = (self._gen, bool(len(pks) < 2 or (pks[1:] != pks[:-1]).all()))
            self._one_per_item_cache = cached
        return cached[1]

    def _positions(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(positions in self._vid, found)`` of vector ids (``-1`` and unknown ids: not found, position 0)."""
        vid = self._vid
        if not len(vid):
            return np.zeros(ids.shape, np.int64), np.zeros(ids.shape, bool)
        if vid[-1] - vid[0] == len(vid) - 1:  # ids without gaps (no removals): arithmetic, not a binary search
            pos = ids - vid[0]
            found = (pos >= 0) & (pos < len(vid))
            return (pos if found.all() else np.where(found, pos, 0)), found
        pos = np.searchsorted(vid, ids).clip(0, len(vid) - 1)
        found = (ids >= 0) & (vid[pos] == ids)
        return pos, found

    def _pks_of(self, ids: np.ndarray) -> np.ndarray:
        """Item pk of each vector id (``-1`` for ``-1`` or an unknown id); ``self._vid`` is sorted and unique."""
        pos, found = self._positions(ids)
        return self._vpk[pos] if found.all() else np.where(found, self._vpk[pos], -1)

    def _item_info(self, pks: set[int]) -> dict[int, tuple[str, str, dict[str, Any]]]:
        missing = [p for p in pks if p not in self._items]
        if missing:
            for pk, (iid, name, attrs) in self.store.items_by_pk(missing).items():
                self._items[pk] = (iid, name, json.loads(attrs))
        return self._items

    def query(
        self,
        data: Any = None,
        *,
        images: Any = None,
        paths: Any = None,
        vectors: Any = None,
        k: int = 5,
        fingerprint: str | None = None,
        threshold: float | None = None,
    ) -> list[QueryResult]:
        """Recognise each query (images, paths or vectors): top-``k`` items and the unknown flag.

        ``unknown`` is ``best similarity < threshold`` (the gallery's unless given);
        with no threshold set nothing is rejected except on an empty gallery.
        """
        q = self._vectors_from(data, images, paths, vectors, fingerprint, "query")[0]
        self.refresh()
        scores, pks = self._search_items(q, k)
        t = self.threshold if threshold is None else float(threshold)
        info = self._item_info({int(p) for p in np.unique(pks) if p >= 0})
        results = []
        for srow, prow in zip(scores.tolist(), pks.tolist()):
            matches = [Match(info[p][0], info[p][1], s, info[p][2]) for s, p in zip(srow, prow) if p >= 0]
            unknown = not matches or (t is not None and matches[0].similarity < t)
            results.append(QueryResult(matches, unknown, t))
        return results

    def items(self) -> Any:
        """A pandas DataFrame, one row per item: item_id, name, attributes (dict), created_at, n_vectors."""
        import pandas as pd

        self.refresh()
        with self.store.lock:
            rows = self.store.conn.execute(
                "SELECT i.item_id, i.name, i.attributes, i.created_at, "
                "(SELECT COUNT(*) FROM vectors v WHERE v.item_pk = i.item_pk AND v.indexed = ?) "
                "FROM items i ORDER BY i.item_pk",
                (1 if self.prototype == "each" else 0,),
            ).fetchall()
        frame = pd.DataFrame(rows, columns=["item_id", "name", "attributes", "created_at", "n_vectors"])
        frame["attributes"] = [json.loads(a) for a in frame["attributes"]]
        return frame

    def calibrate(self, val_embeddings: Any, val_item_ids: Any, target_far: float = 0.01, save: bool = True) -> Calibration:
        """Choose the unknown threshold for a target false-accept rate (FPIR) and store it.

        Each validation query is a non-mated search against the gallery minus its own item:
        its impostor score is the best similarity to any *other* item (for items not enrolled,
        simply its best score). The threshold is :func:`~itemrec.gallery.results.choose_threshold`
        of those scores (the rule of :func:`itemrec.evaluation.thresholds.threshold_at_far`). Also
        reported, by :func:`itemrec.evaluation.thresholds.detection_rates`: the achieved FAR and the
        detection-and-identification rate (DIR: enrolled queries whose top item is right and scores
        ``>= threshold``).

        Args:
            val_embeddings: (N, dim) validation vectors.
            val_item_ids: (N,) their item ids (enrolled or not).
            target_far: target false-accept rate in ``[0, 1]``.
            save: store the threshold (and calibration) in the gallery.

        Returns:
            :class:`~itemrec.gallery.results.Calibration`.

        Raises:
            ValueError: lengths differ, no impostor score, or ``target_far`` outside ``[0, 1]``.
        """
        ids = [str(x) for x in np.asarray(val_item_ids).reshape(-1)]
        q = self._vectors_from(None, None, None, val_embeddings, None, "calibration embeddings")[0]
        if len(ids) != len(q):
            raise ValueError(f"{len(q)} calibration embeddings but {len(ids)} item ids")
        self.refresh()
        scores, pks = self._search_items(q, 2)
        info = self._item_info({int(p) for p in np.unique(pks) if p >= 0})
        top_ids = [[info[p][0] if p >= 0 else None for p in row] for row in pks.tolist()]
        impostor, mated_best, mated_right = [], [], []
        for truth, srow, irow in zip(ids, scores.tolist(), top_ids):
            other = [s for s, i in zip(srow, irow) if i is not None and i != truth]
            if other:
                impostor.append(other[0])
            if truth in self._enrolled_ids(ids):
                mated_best.append(srow[0])
                mated_right.append(irow[0] == truth)
        from itemrec.evaluation.thresholds import detection_rates  # lazy: the gallery loads without the evaluation

        imp = np.asarray(impostor, np.float32)
        mb = np.asarray(mated_best, np.float32)
        t = choose_threshold(imp, float(target_far))
        dir_, far = detection_rates(mb, np.asarray(mated_right, bool), imp, t, accept="above")
        cal = Calibration(t, float(target_far), far, dir_, len(imp), len(mb))
        if save:
            self.set_threshold(t, cal)
        return cal

    def _enrolled_ids(self, ids: list[str]) -> set[str]:
        cache = getattr(self, "_enrolled_cache", None)
        if cache is None or cache[0] != self._gen:
            uniq = sorted(set(ids))
            found: set[str] = set()
            with self.store.lock:
                for start in range(0, len(uniq), 900):
                    chunk = uniq[start : start + 900]
                    marks = ",".join("?" * len(chunk))
                    found |= {r[0] for r in self.store.conn.execute(f"SELECT item_id FROM items WHERE item_id IN ({marks})", chunk)}
            cache = (self._gen, found)
            self._enrolled_cache = cache
        return cache[1]

    def check(self) -> IntegrityReport:
        """Integrity: SQLite ``PRAGMA integrity_check``, index size == indexed rows, ids mapped both ways."""
        self.refresh()
        problems = []
        sqlite = self.store.integrity()
        if sqlite != "ok":
            problems.append(f"sqlite integrity_check: {sqlite}")
        with self.store.read() as cur:
            gen = self.store.generation(cur)
            n_items = cur.execute("SELECT COUNT(*) FROM items").fetchone()[0]
            n_vectors = cur.execute("SELECT COUNT(*) FROM vectors").fetchone()[0]
            rows = cur.execute("SELECT vector_id, item_pk FROM vectors WHERE indexed = 1 ORDER BY vector_id").fetchall()
            orphans = cur.execute(
                "SELECT COUNT(*) FROM vectors v LEFT JOIN items i ON v.item_pk = i.item_pk WHERE i.item_pk IS NULL"
            ).fetchone()[0]
            empty = cur.execute(
                "SELECT COUNT(*) FROM items i WHERE NOT EXISTS (SELECT 1 FROM vectors v WHERE v.item_pk = i.item_pk)"
            ).fetchone()[0]
            bad_len = cur.execute("SELECT COUNT(*) FROM vectors WHERE length(vec) != ?", (4 * self.dim,)).fetchone()[0]
        store_ids = np.array([r[0] for r in rows], np.int64)
        store_pks = np.array([r[1] for r in rows], np.int64)
        index_ids = self._index.ids()
        missing = np.setdiff1d(store_ids, index_ids).tolist()
        unknown = np.setdiff1d(index_ids, store_ids).tolist()
        if gen != self._gen:
            problems.append(f"index generation {self._gen} != store generation {gen}")
        if self._index.ntotal != len(store_ids):
            problems.append(f"index holds {self._index.ntotal} vectors, store has {len(store_ids)} indexed rows")
        if missing:
            problems.append(f"{len(missing)} stored vectors missing from the index (e.g. {missing[:5]})")
        if unknown:
            problems.append(f"{len(unknown)} index ids not in the store (e.g. {unknown[:5]})")
        if not (np.array_equal(self._vid, store_ids) and np.array_equal(self._vpk, store_pks)):
            problems.append("vector-id -> item map of the index differs from the store")
        if orphans:
            problems.append(f"{orphans} vectors belong to no item")
        if empty:
            problems.append(f"{empty} items have no vectors")
        if bad_len:
            problems.append(f"{bad_len} stored vectors are not {self.dim} float32 values")
        file_gen = self.index_file_generation
        if file_gen is not None and file_gen > gen:
            problems.append(f"index file generation {file_gen} is ahead of the store ({gen})")
        return IntegrityReport(
            sqlite, int(n_items), int(n_vectors), len(store_ids), self._index.ntotal, gen, file_gen, missing, unknown, problems
        )

    def describe(self) -> dict[str, Any]:
        """Summary for ``itemrec gallery list``/``/health``."""
        self.refresh()
        return {
            "path": os.fspath(self.path),
            "items": len(self),
            "vectors": self._index.ntotal,
            "dim": self.dim,
            "index": self._meta["index_type"],
            "prototype": self.prototype,
            "fingerprint_id": self.fingerprint_id,
            "threshold": self.threshold,
            "hubness": self.hubness,
            "generation": self._gen,
        }
