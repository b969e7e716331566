"""Reading side of a gallery: search, recognise (query), list items, calibrate the threshold.

:class:`Recognizer` answers queries against the index a
:class:`~itemrec.gallery.sync.Synchroniser` keeps in step with the store; every public
method first picks up other writers' changes.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from itemrec.gallery.results import Calibration, Match, QueryResult, choose_threshold


class Recognizer:
    """Nearest-item search, open-set recognition and threshold calibration for one gallery.

    An item scores the best cosine similarity over its indexed vectors (its images in
    ``"each"`` mode, its prototype in ``"mean"`` mode), plus the hubness offset of that vector
    when a background is set; a query whose best score is below the threshold is unknown.

    Args:
        store: the gallery's :class:`~itemrec.gallery.store.MetadataStore`.
        sync: its :class:`~itemrec.gallery.sync.Synchroniser`.
        hubness: its :class:`~itemrec.gallery.background.HubnessCorrection`.
        inputs: its :class:`~itemrec.gallery.inputs.VectorInputs`.
        prototype: ``"each"`` or ``"mean"``.
    """

    def __init__(self, store: Any, sync: Any, hubness: Any, inputs: Any, prototype: str) -> None:
        self.store = store
        self.sync = sync
        self.hubness = hubness
        self.inputs = inputs
        self.prototype = prototype
        self._items: dict[int, tuple[str, str, dict[str, Any]]] = {}
        self._items_gen = -1

    @property
    def _gen(self) -> int:
        return self.sync.generation

    def _vectors_from(self, *args: Any) -> tuple[np.ndarray, list[str | None], list[tuple[str, str]]]:
        return self.inputs.vectors(*args)

    def refresh(self) -> bool:
        """Pick up other processes' writes.

        Returns:
            True if there were any.
        """
        return self.sync.refresh()

    @property
    def threshold(self) -> float | None:
        """The stored unknown-rejection threshold, or None (nothing rejected)."""
        t = self.sync.meta.get("threshold")
        return None if t is None else float(t)

    def set_threshold(self, threshold: float | None, calibration: Calibration | None = None) -> None:
        """Store the unknown-rejection threshold (other handles pick it up at their next query).

        Args:
            threshold: the similarity below which a query is unknown, or None (reject nothing).
            calibration: how it was chosen, stored with it.

        Raises:
            PermissionError: the gallery is open read-only.
        """
        with self.store.write() as cur:
            self.store.set_meta(cur, threshold=threshold, calibration=None if calibration is None else calibration.__dict__)
            self.store.bump_generation(cur)
        self.sync.sync()

    def search(self, vectors: Any, k: int = 5, fingerprint: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` distinct items per query vector.

        Args:
            vectors: (n, dim) or (dim,) query embeddings (normalised here).
            k: items per query.
            fingerprint: the model id of ``vectors``, checked against the gallery's when given.

        Returns:
            ``(scores (n, k) float32, item_pks (n, k) int64)``, best first; missing places (fewer
            than ``k`` items) hold ``-inf`` and ``-1``.

        Raises:
            ValueError: ``k < 1``.
            GalleryError, GalleryMismatchError: unusable vectors (see :class:`VectorInputs`).
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
        ntotal = self.sync.index.ntotal
        if ntotal == 0 or n == 0:
            return out_s, out_p
        adj = self.hubness.adjustments()  # hubness correction per vector (see gallery.background), or None
        if adj is None and self._one_vector_per_item():  # no aggregation and no re-ranking needed
            scores, ids = self.sync.index.search(q, k)
            return scores, self.sync.pks_of(ids)
        # fetch kk vectors, aggregate them into items (an item scores its best vector), re-fetch more
        # while that cannot be the answer: fewer than k items, or (with adjustments) a vector not fetched
        # could still beat the k-th item, as its score is at most the last fetched raw score + max(adj)
        top_adj = float(adj.max()) if adj is not None else 0.0
        todo = np.arange(n)
        kk = min(ntotal, max(4 * k, k + 16))
        while len(todo):
            raw, ids = self.sync.index.search(q[todo], kk)
            pos, found = self.sync.positions(ids)
            pks = np.where(found, self.sync.item_pks[pos], -1)
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
        """True in ``"mean"`` mode, or when no item has two indexed vectors."""
        return self.prototype == "mean" or self.sync.one_vector_per_item()

    def _item_info(self, pks: set[int]) -> dict[int, tuple[str, str, dict[str, Any]]]:
        if self._items_gen != self.sync.generation:  # names and attributes may have changed
            self._items.clear()
            self._items_gen = self.sync.generation
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
        """Recognise each query: its top-``k`` items and whether it is unknown.

        A query is unknown when its best similarity is below ``threshold`` (the gallery's unless
        given); with no threshold set nothing is rejected, except on an empty gallery.

        Args:
            data: images, paths or vectors (kind guessed), or use one of the keywords.
            images: (n, H, W, 3) uint8 photos.
            paths: image files (unreadable ones skipped, so fewer results).
            vectors: (n, dim) embeddings.
            k: items per query.
            fingerprint: the model id of ``vectors``, checked when given.
            threshold: overrides the stored threshold for this call.

        Returns:
            One :class:`~itemrec.gallery.results.QueryResult` per (readable) query, in order.

        Raises:
            ValueError: ``k < 1``.
            GalleryError, GalleryMismatchError: unusable input (see :class:`VectorInputs`).
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
        """The enrolled items.

        Returns:
            A pandas DataFrame, one row per item in enrolment order: ``item_id``, ``name``,
            ``attributes`` (dict), ``created_at`` (ISO 8601 UTC), ``n_vectors`` (its images).
        """
        import pandas as pd

        self.refresh()
        rows = self.store.item_rows(indexed=self.prototype == "each")
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
        """The enrolled ones among ``ids``; cached for this very list at this generation (calibrate
        asks once per query)."""
        cache = getattr(self, "_enrolled_cache", None)
        if cache is None or cache[0] != self._gen or cache[1] is not ids:
            cache = (self._gen, ids, self.store.existing_item_ids(ids))
            self._enrolled_cache = cache
        return cache[2]
