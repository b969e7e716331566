"""The one neighbour engine: k nearest neighbours, first-match ranks and full rankings, with one tie rule.

**Tie rule.** References are ordered by ``(distance, index)``: by distance, and at equal
distance the lower reference index first. Every rank and neighbour list in
:mod:`itemrec.evaluation` (CMC, Recall@K, R-precision, MAP@R, mAP, the per-class table,
class ranks, open-set nearest matches, hubness offsets, :func:`itemrec.faces.loo_retrieval`)
is read from this module, so they all follow it: the k nearest of :func:`knn` are the first
k of the full order, and the first correct match of :func:`first_match_rank` sits where
that order puts it.

**Distances.** The order is decided on *exact* pair distances
(:meth:`~itemrec.evaluation._chunked.PairDistances.exact`: each pair computed on its own,
so a pair has one value wherever it is computed). Candidates are found fast, by FAISS's
exact flat search (``faiss.IndexFlatIP`` / ``IndexFlatL2``) or by NumPy distance blocks,
and only re-ranked exactly; a candidate list is accepted only when the error bound
:meth:`~itemrec.evaluation._chunked.PairDistances.bound` proves that no item outside it
can come first, and is widened otherwise. The results therefore do not depend on the
backend, block sizes or ``memory_mb`` (tested against a brute-force loop and between the
two backends, duplicates included).

With ``reference_offsets`` (one number per reference, added to its distances: a hubness
correction, :mod:`itemrec.evaluation.hubness`) the order is by ``(distance + offset, index)``.
"""

from __future__ import annotations

import numpy as np

from ._chunked import (
    DEFAULT_MEMORY_MB,
    U32,
    PairDistances,
    check_embeddings,
    check_metric,
    check_offsets,
    checked_pair,
    rows_per_block,
)
from ._lists import _distinct_labels, _margin, _padded, _rerank

BACKENDS = ("auto", "faiss", "numpy")
_FAISS_ROWS = 8192
#: neighbours fetched per query to find its first match from FAISS candidates (rows whose first match lies
#: further down are ranked from distance blocks)
_FIRST_MATCH_K = 32


class NeighbourEngine:
    """Exact neighbours of query rows among the references, one tie rule (module docstring).

    Args:
        query: (n, d) embeddings.
        reference: (m, d) embeddings; pass the *same object* as ``query`` when the query set is
            the reference set.
        metric: ``"cosine"`` or ``"l2"``.
        reference_offsets: (m,) added to every distance to reference j, or None.
        memory_mb: budget in MiB for the NumPy distance blocks.
        backend: ``"faiss"`` (candidates from FAISS's flat search; not with offsets), ``"numpy"``
            (from distance blocks) or ``"auto"`` (FAISS when there are no offsets). Results are
            the same; only speed differs.

    Raises:
        ValueError: bad inputs, metric, offsets or backend.
    """

    def __init__(self, query, reference, metric: str = "cosine", reference_offsets=None,
                 memory_mb: float = DEFAULT_MEMORY_MB, backend: str = "auto") -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}; got {backend!r}")
        same = reference is query
        q = check_embeddings(query, "query embeddings")
        r = q if same else check_embeddings(reference, "reference embeddings")
        self.pairs = PairDistances(q, r, metric)
        self.metric = self.pairs.metric
        self.n_query, self.n_reference = len(q), len(r)
        self.offsets = None if reference_offsets is None else check_offsets(reference_offsets, len(r))
        if backend == "faiss" and self.offsets is not None:
            raise ValueError("the FAISS backend cannot add reference offsets; use backend='numpy' or 'auto'")
        self.backend = ("faiss" if self.offsets is None else "numpy") if backend == "auto" else backend
        self.memory_mb = memory_mb
        self._index = None

    # ------------------------------------------------------------------ fast candidates
    def _approx_block(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(approx distance [+ offset], error bound)`` of query ``rows`` (sorted indices) to every reference."""
        contiguous = len(rows) and rows[-1] - rows[0] == len(rows) - 1
        block = self.pairs.block(slice(int(rows[0]), int(rows[-1]) + 1) if contiguous else rows)
        eps = self.pairs.bound(rows, block)
        if self.offsets is not None:
            block = block + self.offsets[None, :]
            eps = eps + 8 * 2.0**-53 * (1.0 + np.abs(block))
        return block, eps

    def _row_blocks(self, rows: np.ndarray, factor: int = 4):
        step = rows_per_block(self.n_reference, 8, self.memory_mb, factor)
        for s in range(0, len(rows), step):
            yield rows[s:s + step]

    def _knn_numpy(self, rows: np.ndarray, k: int, self_cols: np.ndarray | None):
        """Exact kNN of ``rows`` from distance blocks: a first exact top k bounds the k-th distance, then
        every reference whose approximate distance could lie within that bound is re-ranked exactly."""
        out_d = np.empty((len(rows), k))
        out_i = np.empty((len(rows), k), np.int64)
        done = 0
        for sub in self._row_blocks(rows):
            scs = None if self_cols is None else self_cols[done:done + len(sub)]
            a, eps = self._approx_block(sub)
            if scs is not None:
                hit = scs >= 0
                a[np.flatnonzero(hit), scs[hit]] = np.inf
            kc = min(self.n_reference, k + 1 + _margin(k))
            first = (np.argpartition(a, kc - 1, axis=1)[:, :kc] if kc < self.n_reference
                     else np.broadcast_to(np.arange(self.n_reference), a.shape).copy())
            d1, _ = _rerank(self.pairs, sub, first, k, scs, self.offsets)
            with np.errstate(invalid="ignore"):
                maybe = (a - eps) <= d1[:, k - 1:k]
            out_d[done:done + len(sub)], out_i[done:done + len(sub)] = _rerank(
                self.pairs, sub, _padded(maybe), k, scs, self.offsets)
            done += len(sub)
        return out_d, out_i

    def _faiss_index(self):
        """FAISS's exact inner-product index over the references.

        cosine: the unit rows. l2: the rows ``[2 r_j, −‖r_j‖²]`` (d + 1 columns), so that the
        inner product with a query row ``[q_i, 1]`` is ``‖q_i‖² − ‖q_i − r_j‖²``: the same order
        as the L2 distance, from one matrix product without FAISS's pass that adds the norms
        (about 8% faster than ``IndexFlatL2`` at 100,000 × 100,000). The float32 error of that
        product, of ``d + 1`` terms summing at most ``(‖q‖ + ‖r‖)²`` in absolute value, plus the
        rounding of the two squared norms, stays within :meth:`PairDistances.bound`, whose
        ``γ = 4 (d + 8) u`` is more than twice the ``(2d + 5) u`` they need.
        """
        if self._index is None:
            import faiss

            r = self.pairs.r.astype(np.float32)
            if self.metric == "l2":
                r = np.hstack([2.0 * r, -self.pairs.r_sq.astype(np.float32)[:, None]])
            self._index = faiss.IndexFlatIP(r.shape[1])
            self._index.add(np.ascontiguousarray(r))
        return self._index

    def _faiss_queries(self, rows: np.ndarray) -> np.ndarray:
        """Query ``rows`` as the FAISS index expects them: unit rows (cosine) or ``[q_i, 1]`` (l2)."""
        q = self.pairs.q[rows].astype(np.float32)
        if self.metric == "l2":
            q = np.hstack([q, np.ones((len(q), 1), np.float32)])
        return np.ascontiguousarray(q)

    def _faiss_distances(self, rows: np.ndarray, sims: np.ndarray) -> np.ndarray:
        """FAISS inner products of query ``rows`` back to (approximate) distances, float64."""
        sims = sims.astype(np.float64)
        if self.metric == "cosine":
            return 1.0 - sims
        return np.sqrt(np.maximum(self.pairs.q_sq[rows, None].astype(np.float64) - sims, 0.0))

    def _knn_faiss(self, rows: np.ndarray, k: int, self_cols: np.ndarray | None):
        """Exact kNN of ``rows``: FAISS's top ``k + margin`` re-ranked exactly; rows whose list cannot be
        proved complete (the last FAISS distance, less its error bound, not beyond the k-th exact
        distance) are redone from distance blocks."""
        index = self._faiss_index()
        kc = min(self.n_reference, k + int(self_cols is not None) + _margin(k))
        out_d = np.empty((len(rows), k))
        out_i = np.empty((len(rows), k), np.int64)
        for s in range(0, len(rows), _FAISS_ROWS):
            sub = rows[s:s + _FAISS_ROWS]
            scs = None if self_cols is None else self_cols[s:s + _FAISS_ROWS]
            sims, cand = index.search(self._faiss_queries(sub), kc)
            d, i = _rerank(self.pairs, sub, cand, k, scs, None)
            if kc < self.n_reference:
                last = self._faiss_distances(sub, sims[:, -1:])
                floor = (last - self.pairs.bound(sub, last, U32))[:, 0]
                redo = np.flatnonzero(~(floor > d[:, k - 1]))
                if len(redo):
                    d[redo], i[redo] = self._knn_numpy(sub[redo], k, None if scs is None else scs[redo])
            out_d[s:s + len(sub)], out_i[s:s + len(sub)] = d, i
        return out_d, out_i

    # ------------------------------------------------------------------ public
    def knn(self, k: int, rows: np.ndarray | None = None, exclude_self: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest references of query ``rows`` (default: all), by ``(distance [+ offset], index)``.

        Args:
            k: neighbours per query.
            rows: query row indices (sorted ascending), or None for every query.
            exclude_self: query i is reference i (the sets are one set) and is never returned.

        Returns:
            ``(distances (len(rows), k) float64, indices (len(rows), k) int64)``, nearest first.

        Raises:
            ValueError: ``k`` outside ``1..m`` (``m − 1`` with ``exclude_self``), or ``exclude_self``
                with sets of different sizes.
        """
        rows = np.arange(self.n_query) if rows is None else np.asarray(rows, np.int64)
        if exclude_self and self.n_query != self.n_reference:
            raise ValueError("exclude_self needs the query set to be the reference set (same length)")
        available = self.n_reference - int(exclude_self)
        if not 1 <= k <= available:
            raise ValueError(f"k must lie in 1..{available} (references available); got {k}")
        self_cols = rows.copy() if exclude_self else None
        if len(rows) == 0:
            return np.empty((0, k)), np.empty((0, k), np.int64)
        if self.backend == "faiss":
            return self._knn_faiss(rows, k, self_cols)
        return self._knn_numpy(rows, k, self_cols)

    def first_match_rank(self, query_labels: np.ndarray, reference_labels: np.ndarray, exclude_self: bool = False,
                         count: str = "items") -> np.ndarray:
        """1-based position of each query's first same-label reference in the ``(distance, index)`` order.

        Args:
            query_labels: (n,) int labels.
            reference_labels: (m,) int labels.
            exclude_self: query i is reference i and is left out of its own ranking.
            count: ``"items"``: rank = 1 + references before the first match; ``"classes"``:
                1 + distinct labels before it (classes ranked by their nearest reference).

        Returns:
            (n,) int64 ranks; 0 where the query has no same-label reference.

        Raises:
            ValueError: bad ``count``.
        """
        if count not in ("items", "classes"):
            raise ValueError(f"count must be 'items' or 'classes'; got {count!r}")
        ranks = np.zeros(self.n_query, np.int64)
        todo = np.arange(self.n_query)
        if self.backend == "faiss" and len(todo):
            found = self._first_match_faiss(query_labels, reference_labels, exclude_self, count, ranks)
            todo = todo[~found]
        for part in self._row_blocks(todo, factor=6):
            ranks[part] = self._first_match_block(part, query_labels, reference_labels, exclude_self, count)
        return ranks

    def _first_match_faiss(self, ql, rl, exclude_self, count, ranks) -> np.ndarray:
        """Ranks read from each query's exact first :data:`_FIRST_MATCH_K` neighbours (:meth:`knn`), written
        into ``ranks`` where the first match is among them; returns that mask (the rest: distance blocks)."""
        k = min(_FIRST_MATCH_K, self.n_reference - int(exclude_self))
        if k < 1:
            return np.zeros(self.n_query, bool)
        _, idx = self.knn(k, exclude_self=exclude_self)
        match = rl[idx] == ql[:, None]
        found = match.any(axis=1)
        first = match.argmax(axis=1)
        if count == "items":
            ranks[found] = first[found] + 1
        else:
            before = np.arange(k)[None, :] < first[:, None]
            ranks[found] = _distinct_labels(rl, np.zeros((self.n_query, 0), bool), idx, before)[found] + 1
        return found

    def _first_match_block(self, rows, ql, rl, exclude_self, count):
        a, eps = self._approx_block(rows)
        same = ql[rows, None] == rl[None, :]
        if exclude_self:
            a[np.arange(len(rows)), rows] = np.inf
            same[np.arange(len(rows)), rows] = False
        has = same.any(axis=1)
        upper = np.where(same, a + eps, np.inf).min(axis=1)  # ≥ the exact distance of the first match
        with np.errstate(invalid="ignore"):
            cand = _padded(same & (a - eps <= upper[:, None]))
        d, idx = _rerank(self.pairs, rows, cand, 1, rows if exclude_self else None, self.offsets)
        best, best_i = d[:, 0], idx[:, 0]  # the first match: exact (distance, index) minimum
        other = ~same
        if exclude_self:
            other[np.arange(len(rows)), rows] = False
        with np.errstate(invalid="ignore"):
            sure = other & (a + eps < best[:, None])
            unsure = other & ~sure & (a - eps <= best[:, None])
        cols = _padded(unsure)
        du = self.pairs.exact(rows, cols)
        if self.offsets is not None:
            du = du + self.offsets[np.maximum(cols, 0)]
        before_u = (cols >= 0) & ((du < best[:, None]) | ((du == best[:, None]) & (cols < best_i[:, None])))
        if count == "items":
            n_before = sure.sum(axis=1) + before_u.sum(axis=1)
        else:
            n_before = _distinct_labels(rl, sure, cols, before_u)
        return np.where(has, 1 + n_before, 0)

    def average_precision(self, query_labels: np.ndarray, reference_labels: np.ndarray,
                          exclude_self: bool = False) -> np.ndarray:
        """Average precision of each query over the full ``(distance, index)`` order of the references.

        Args:
            query_labels: (n,).
            reference_labels: (m,).
            exclude_self: query i is reference i and is left out of its own ranking.

        Returns:
            (n,) float64; NaN where the query has no relevant reference.
        """
        out = np.full(self.n_query, np.nan)
        positions = np.arange(1, self.n_reference + 1, dtype=np.float64)
        for part in self._row_blocks(np.arange(self.n_query), factor=5):
            cols = np.broadcast_to(np.arange(self.n_reference), (len(part), self.n_reference))
            d = self.pairs.exact(part, cols)
            if self.offsets is not None:
                d += self.offsets[None, :]
            if exclude_self:
                d[np.arange(len(part)), part] = np.inf
            order = np.argsort(d, axis=1, kind="stable")  # stable: equal distances by index
            rel = reference_labels[order] == query_labels[part, None]
            if exclude_self:
                rel &= order != part[:, None]
            n_rel = rel.sum(axis=1)
            prec = np.cumsum(rel, axis=1) / positions
            with np.errstate(invalid="ignore", divide="ignore"):
                out[part] = np.where(n_rel > 0, (prec * rel).sum(axis=1) / n_rel, np.nan)
        return out


# ---------------------------------------------------------------------- functions
def knn(query, reference, k: int, metric: str = "cosine", exclude_self: bool = False,
        memory_mb: float = DEFAULT_MEMORY_MB, reference_offsets=None, backend: str = "auto"):
    """Exact k nearest references of each query, ordered by ``(distance [+ offset], index)``.

    The k returned are the first k of that full order, so which of several references tied
    at the k-th distance is kept is fixed too: the lower indices.

    Args:
        query: (n, d).
        reference: (m, d).
        k: neighbours per query, ``1 ≤ k ≤ m`` (``m − 1`` with ``exclude_self``).
        metric: ``"cosine"`` or ``"l2"``.
        exclude_self: the query set is the reference set; query i never gets reference i.
        memory_mb: budget in MiB for distance blocks.
        reference_offsets: (m,) added to the distances to each reference (hubness), or None.
        backend: ``"auto"``, ``"faiss"`` or ``"numpy"`` (same results; see :class:`NeighbourEngine`).

    Returns:
        ``(distances, indices)``, each (n, k): float64 exact distances (plus offsets) and int64
        reference indices, nearest first.

    Raises:
        ValueError: bad inputs, dims, ``k``, offsets or backend.
    """
    q = check_embeddings(query, "query embeddings")
    r = q if reference is query else check_embeddings(reference, "reference embeddings")
    if exclude_self and len(q) != len(r):
        raise ValueError("exclude_self needs the query set to be the reference set (same length)")
    engine = NeighbourEngine(q, r, metric, reference_offsets, memory_mb, backend)
    return engine.knn(k, exclude_self=exclude_self)


def first_match_rank(query, query_labels, reference, reference_labels, metric: str = "cosine",
                     exclude_self: bool = False, memory_mb: float = DEFAULT_MEMORY_MB,
                     reference_offsets=None, count: str = "items", backend: str = "auto") -> np.ndarray:
    """1-based rank of each query's first same-label reference in the ``(distance, index)`` order.

    ``rank_i = 1 + |{j : label_j ≠ label_i, (D(i, j), j) < (D(i, t), t)}|`` with ``t`` the first
    same-label reference (the lowest index among those at the smallest distance); with
    ``count="classes"`` the distinct labels of those j are counted instead (classes ranked by
    their nearest reference, as :func:`itemrec.evaluation.class_ranks`). A different-label
    reference at exactly the match's distance comes first when its index is lower.

    Args:
        query: (n, d).
        query_labels: (n,) ints.
        reference: (m, d).
        reference_labels: (m,) ints.
        metric: ``"cosine"`` or ``"l2"``, or a distance that ranks like one (``"squared_l2"``, ``"mse"``,
            ``"cosine_similarity"``; :func:`itemrec.distances.evaluation_metric`).
        exclude_self: the query set is the reference set; a query is not its own match.
        memory_mb: budget in MiB for distance blocks.
        reference_offsets: (m,) added to the distances to each reference, or None.
        count: ``"items"`` or ``"classes"``.
        backend: ``"auto"`` (FAISS candidates when there are no offsets: each query's first
            32 neighbours, and distance blocks for a query whose first match lies further down),
            ``"faiss"`` or ``"numpy"``; the ranks are the same.

    Returns:
        (n,) int64; 0 where the query has no same-label reference.

    Raises:
        ValueError: bad inputs, or ``exclude_self`` with sets of different sizes.
    """
    q, ql, r, rl = checked_pair(query, query_labels, reference, reference_labels, exclude_self)
    metric = check_metric(metric, ranking_only=True)
    engine = NeighbourEngine(q, q if (exclude_self and r is q) else r, metric, reference_offsets, memory_mb, backend)
    return engine.first_match_rank(ql, rl, exclude_self, count)


def average_precision_full(query, query_labels, reference, reference_labels, metric: str = "cosine",
                           exclude_self: bool = False, memory_mb: float = DEFAULT_MEMORY_MB) -> np.ndarray:
    """Average precision of each query over the full ``(distance, index)`` order of the references.

    ``AP_i = (1/R_i) Σ_{k: rel(k)} P_i(k)`` with ``P_i(k)`` the fraction of relevant items among
    the first k. Every pair's exact distance is computed (slow for large sets).

    Args:
        query: (n, d).
        query_labels: (n,).
        reference: (m, d).
        reference_labels: (m,).
        metric: ``"cosine"`` or ``"l2"``.
        exclude_self: the query set is the reference set, a query left out of its own ranking.
        memory_mb: budget in MiB.

    Returns:
        (n,) float64; NaN where the query has no relevant reference.

    Raises:
        ValueError: bad inputs.
    """
    q, ql, r, rl = checked_pair(query, query_labels, reference, reference_labels, exclude_self)
    return NeighbourEngine(q, r, metric, None, memory_mb, "numpy").average_precision(ql, rl, exclude_self)
