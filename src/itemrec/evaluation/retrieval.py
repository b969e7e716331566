"""Retrieval metrics: CMC, Recall@K, Precision@1, R-precision, MAP@R and mAP.

Definitions follow Musgrave, Belongie & Lim, "A Metric Learning Reality Check"
(ECCV 2020). For a query with label ``y`` and ``R`` references of label ``y``
(itself excluded when the query set is the reference set), rank the references
by distance and let ``rel(k) = 1`` when the k-th has label ``y``:

* Recall@K: 1 if any of the first K is relevant (the fraction of queries with a
  correct match in the top K; the "Recall@K" of image-retrieval papers);
* Precision@1 = rel(1) (equal to Recall@1);
* R-precision = ``(1/R) Σ_{k≤R} rel(k)``;
* MAP@R = ``(1/R) Σ_{k≤R} P(k) rel(k)``, with ``P(k) = (1/k) Σ_{i≤k} rel(i)``;
* mAP = ``(1/R) Σ_{k≤N} P(k) rel(k)`` over the whole ranking of N references.

Queries with ``R = 0`` are left out of every average (as in the paper's code,
pytorch-metric-learning's ``AccuracyCalculator``) and counted in ``n_skipped``.

The CMC curve (Moon & Phillips, "Computational and performance aspects of PCA-based
face-recognition algorithms", 2001) is ``CMC(r)`` = fraction of queries whose first
correct match is at rank ≤ r.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ._chunked import DEFAULT_MEMORY_MB, check_embeddings, check_labels, check_metric, checked_pair
from .neighbours import NeighbourEngine, first_match_rank

_KNN_ROWS = 16384  # queries per neighbour search in retrieval_report (outputs: rows × k)


@dataclass
class CMCResult:
    """A CMC curve: ``mean[r-1]`` is the identification rate at rank ``ranks[r-1]``.

    ``ci_low``/``ci_high`` bound a 95% interval: the 2.5/97.5 percentiles across
    random query draws (:func:`cmc_representative`) or the Wilson score interval of
    the proportion (:func:`cmc`, ``n_draws = 0``).
    """

    ranks: np.ndarray
    mean: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    n_draws: int
    n_queries: int
    per_draw: np.ndarray | None = field(default=None, repr=False)

    def at(self, rank: int) -> float:
        """Identification rate at ``rank``.

        Args:
            rank: 1-based rank, at most ``len(ranks)``.

        Returns:
            ``CMC(rank)``.

        Raises:
            ValueError: ``rank`` outside ``1..len(ranks)``.
        """
        if not 1 <= rank <= len(self.ranks):
            raise ValueError(f"rank must lie in 1..{len(self.ranks)}; got {rank}")
        return float(self.mean[rank - 1])


@dataclass
class RetrievalReport:
    """Musgrave et al. (2020) retrieval metrics, averaged over queries with ``R > 0``."""

    recall_at_k: dict[int, float]
    precision_at_1: float
    r_precision: float
    map_at_r: float
    mean_average_precision: float | None
    n_queries: int
    n_skipped: int


def _wilson(p: np.ndarray, n: int, z: float = 1.959963984540054) -> tuple[np.ndarray, np.ndarray]:
    if n == 0:
        return np.full_like(p, np.nan), np.full_like(p, np.nan)
    denom = 1 + z**2 / n
    centre = (p + z**2 / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / denom
    return np.clip(centre - half, 0, 1), np.clip(centre + half, 0, 1)


def cmc_from_ranks(ranks: np.ndarray, max_rank: int) -> np.ndarray:
    """``CMC(r) = mean(1 ≤ rank ≤ r)`` for r = 1..max_rank (rank 0 = never matched).

    Args:
        ranks: (n,) 1-based first-match ranks, 0 for queries never matched.
        max_rank: last rank of the curve.

    Returns:
        (max_rank,) float64 curve.
    """
    ranks = np.asarray(ranks)
    hit = (ranks >= 1)[:, None] & (ranks[:, None] <= np.arange(1, max_rank + 1)[None, :])
    return hit.mean(axis=0)


def cmc(
    query_emb: np.ndarray,
    query_labels: np.ndarray,
    gallery_emb: np.ndarray,
    gallery_labels: np.ndarray,
    max_rank: int = 10,
    metric: str = "cosine",
    exclude_self: bool = False,
    memory_mb: float = DEFAULT_MEMORY_MB,
    gallery_offsets: np.ndarray | None = None,
) -> CMCResult:
    """CMC curve of each query's first correct match in a full gallery (any number per class).

    A query whose label is absent from the gallery never matches (counts as a miss).
    ``exclude_self``: the gallery is the query set and a query is not its own match.
    ``gallery_offsets`` (G,): one per gallery image, added to its distances, ranks with a
    hubness correction (:func:`itemrec.evaluation.hubness_offsets`), as in :func:`cmc_representative`.
    Ranks come from :func:`itemrec.evaluation.first_match_rank`: the gallery ordered by
    ``(distance, index)``.

    Args:
        query_emb: (n, d); query_labels: (n,) ints.
        gallery_emb: (G, d); gallery_labels: (G,) ints.
        max_rank: last rank of the curve.
        metric: ``"cosine"`` or ``"l2"``.
        exclude_self: the gallery is the query set.
        memory_mb: budget in MiB for distance blocks.
        gallery_offsets: (G,) hubness offsets, or None.

    Returns:
        :class:`CMCResult` with Wilson 95% intervals (``n_draws = 0``).

    Raises:
        ValueError: ``max_rank < 1``, bad arrays, metric or offsets.
    """
    if max_rank < 1:
        raise ValueError(f"max_rank must be ≥ 1; got {max_rank}")
    ranks = first_match_rank(query_emb, query_labels, gallery_emb, gallery_labels, metric, exclude_self, memory_mb,
                             reference_offsets=gallery_offsets)
    mean = cmc_from_ranks(ranks, max_rank)
    low, high = _wilson(mean, len(ranks))
    return CMCResult(np.arange(1, max_rank + 1), mean, low, high, 0, len(ranks))


def cmc_representative(
    query_emb: np.ndarray,
    query_labels: np.ndarray,
    gallery_emb: np.ndarray,
    gallery_labels: np.ndarray,
    max_rank: int = 10,
    n_draws: int = 100,
    queries_per_class: int = 1,
    seed: int = 0,
    metric: str = "cosine",
    query_ids: np.ndarray | None = None,
    gallery_ids: np.ndarray | None = None,
    memory_mb: float = DEFAULT_MEMORY_MB,
    gallery_offsets: np.ndarray | None = None,
) -> CMCResult:
    """CMC against a gallery of ONE representative image per class, over random query draws.

    Each draw picks ``queries_per_class`` queries at random (without replacement) from
    every class that has queries, ranks the gallery by distance and records the rank
    of the true class; the result is the mean CMC across ``n_draws`` draws with the
    2.5/97.5 percentiles as a 95% interval. Gallery classes without queries stay in
    the gallery as distractors.

    The gallery arrays are separate from the query arrays, so a representative is
    never its own query. If the same images appear in both, pass ``query_ids`` and
    ``gallery_ids`` (e.g. file paths): a query whose id equals a gallery id is
    excluded from the draws. ``gallery_offsets`` (one per gallery item, added to its
    distances) ranks with a hubness correction (:func:`itemrec.evaluation.hubness_offsets`).
    Ranks come from :func:`itemrec.evaluation.first_match_rank` (``(distance, index)`` order).

    Args:
        query_emb: (n, d); query_labels: (n,) ints.
        gallery_emb: (C, d) one image per class; gallery_labels: (C,) distinct ints.
        max_rank: last rank of the curve.
        n_draws: random query draws; queries_per_class: queries per class per draw.
        seed: seed of ``numpy.random.default_rng``.
        metric: ``"cosine"`` or ``"l2"``.
        query_ids, gallery_ids: optional ids (e.g. paths); a query whose id is a gallery id is
            never drawn.
        memory_mb: budget in MiB for distance blocks.
        gallery_offsets: (C,) hubness offsets, or None.

    Returns:
        :class:`CMCResult`: mean over draws, 2.5/97.5 percentiles, ``per_draw``.

    Raises:
        ValueError: a class with several gallery images, a query class with none, too few
            eligible queries, ids given for one side only or of the wrong length, bad arguments.
    """
    q = check_embeddings(query_emb, "query embeddings")
    g = check_embeddings(gallery_emb, "gallery embeddings")
    ql = check_labels(query_labels, len(q), "query labels")
    gl = check_labels(gallery_labels, len(g), "gallery labels")
    if n_draws < 1 or queries_per_class < 1 or max_rank < 1:
        raise ValueError("n_draws, queries_per_class and max_rank must be ≥ 1")
    values, counts = np.unique(gl, return_counts=True)
    if np.any(counts > 1):
        raise ValueError(
            f"the gallery must hold one representative per class; classes {values[counts > 1][:10].tolist()} "
            "have several (use cmc() for a full gallery)"
        )
    missing = np.setdiff1d(np.unique(ql), gl)
    if len(missing):
        raise ValueError(f"query classes {missing[:10].tolist()} have no representative in the gallery")
    eligible = np.ones(len(q), dtype=bool)
    if (query_ids is None) != (gallery_ids is None):
        raise ValueError("pass both query_ids and gallery_ids, or neither")
    if query_ids is not None:
        qid = np.asarray(query_ids)
        gid = np.asarray(gallery_ids)
        if len(qid) != len(q) or len(gid) != len(g):
            raise ValueError("query_ids/gallery_ids must match the lengths of the embeddings")
        eligible &= ~np.isin(qid, gid)
    ranks = first_match_rank(q, ql, g, gl, metric, memory_mb=memory_mb, reference_offsets=gallery_offsets)
    rng = np.random.default_rng(seed)
    picks = []
    for c in np.unique(ql):
        idx = np.flatnonzero((ql == c) & eligible)
        if len(idx) < queries_per_class:
            raise ValueError(
                f"class {int(c)} has {len(idx)} eligible queries; queries_per_class={queries_per_class}"
            )
        choose = np.argsort(rng.random((n_draws, len(idx))), axis=1)[:, :queries_per_class]
        picks.append(idx[choose])
    drawn = ranks[np.concatenate(picks, axis=1)]  # n_draws × (n_classes · queries_per_class)
    thresholds = np.arange(1, max_rank + 1)
    per_draw = ((drawn[:, :, None] <= thresholds) & (drawn[:, :, None] >= 1)).mean(axis=1)
    return CMCResult(
        thresholds,
        per_draw.mean(axis=0),
        np.percentile(per_draw, 2.5, axis=0),
        np.percentile(per_draw, 97.5, axis=0),
        n_draws,
        drawn.shape[1],
        per_draw,
    )


def metrics_from_matches(match_mask: np.ndarray, n_relevant: np.ndarray, ks: tuple[int, ...] = (1, 5, 10)) -> dict[str, np.ndarray]:
    """Per-query metrics from a neighbour match mask (TF-Similarity style).

    ``match_mask[i, k]`` is true when the (k+1)-th neighbour of query i is relevant;
    it needs at least ``max(max(ks), max(n_relevant))`` columns. Returns per-query
    arrays ``recall@K``, ``precision_at_1``, ``r_precision`` and ``map_at_r``
    (NaN for queries with ``n_relevant = 0``).

    Args:
        match_mask: (n, k) bool, neighbours in the engine's ``(distance, index)`` order.
        n_relevant: (n,) R of each query.
        ks: the K of Recall@K.

    Returns:
        ``{name: (n,) float64}``.

    Raises:
        ValueError: shapes that disagree, or too few columns for the metrics.
    """
    m = np.asarray(match_mask, dtype=bool)
    r = np.asarray(n_relevant, dtype=np.int64)
    if m.ndim != 2 or len(r) != len(m):
        raise ValueError(f"match_mask must be (n, k) and n_relevant (n,); got {m.shape} and {r.shape}")
    need = max(max(ks, default=1), int(r.max(initial=0)))
    if m.shape[1] < need:
        raise ValueError(f"match_mask has {m.shape[1]} columns; these metrics need {need}")
    valid = r > 0
    pos = np.arange(1, m.shape[1] + 1)
    within_r = pos[None, :] <= r[:, None]
    hits = m & within_r
    safe_r = np.where(valid, r, 1)
    prec = np.cumsum(m, axis=1) / pos
    out: dict[str, np.ndarray] = {}
    for k in ks:
        out[f"recall@{k}"] = np.where(valid, m[:, :k].any(axis=1), np.nan)
    out["precision_at_1"] = np.where(valid, m[:, 0], np.nan)
    out["r_precision"] = np.where(valid, hits.sum(axis=1) / safe_r, np.nan)
    out["map_at_r"] = np.where(valid, (prec * hits).sum(axis=1) / safe_r, np.nan)
    return out


def retrieval_report(
    query_emb: np.ndarray,
    query_labels: np.ndarray,
    reference_emb: np.ndarray | None = None,
    reference_labels: np.ndarray | None = None,
    ks: tuple[int, ...] = (1, 5, 10),
    metric: str = "cosine",
    with_map: bool = False,
    memory_mb: float = DEFAULT_MEMORY_MB,
) -> RetrievalReport:
    """Recall@K, P@1, R-precision, MAP@R (and, with ``with_map``, the full-ranking mAP).

    Without ``reference_emb`` the queries are their own reference set, self excluded.
    Memory stays bounded: queries are processed in blocks and only their top
    ``max(max(ks), max R)`` neighbours are kept. Neighbours come from one
    :class:`~itemrec.evaluation.neighbours.NeighbourEngine` (FAISS candidates, exact
    ``(distance, index)`` order).

    Args:
        query_emb: (n, d); query_labels: (n,) ints.
        reference_emb: (m, d), or None for the queries themselves (self excluded);
            reference_labels: (m,) with it.
        ks: the K of Recall@K.
        metric: ``"cosine"`` or ``"l2"``.
        with_map: also the full-ranking mAP (every pair's exact distance: slow for large sets).
        memory_mb: budget in MiB.

    Returns:
        :class:`RetrievalReport` (averages over queries with ``R > 0``).

    Raises:
        ValueError: bad arrays or metric, reference labels without embeddings (or the reverse),
            fewer references than ``max(ks)``, or no query with a relevant reference.
    """
    check_metric(metric)
    q = check_embeddings(query_emb, "query embeddings")
    ql = check_labels(query_labels, len(q), "query labels")
    same_set = reference_emb is None
    if same_set:
        if reference_labels is not None:
            raise ValueError("reference_labels given without reference_emb")
        ref, rl = q, ql
    else:
        if reference_labels is None:
            raise ValueError("reference_emb given without reference_labels")
        ref = check_embeddings(reference_emb, "reference embeddings")
        rl = check_labels(reference_labels, len(ref), "reference labels")
    if len(ref) - int(same_set) < 1:
        raise ValueError("the reference set needs at least one item besides the query")
    values, counts = np.unique(rl, return_counts=True)
    lookup = dict(zip(values.tolist(), counts.tolist()))
    n_rel = np.array([lookup.get(int(c), 0) for c in ql], dtype=np.int64) - int(same_set)
    k = min(max(max(ks), int(n_rel.max(initial=0))), len(ref) - int(same_set))
    if max(ks) > k:
        raise ValueError(f"Recall@{max(ks)} needs at least {max(ks)} references; there are {k}")
    engine = NeighbourEngine(q, ref, metric, memory_mb=memory_mb)
    per_query: dict[str, list[np.ndarray]] = {}
    step = max(_KNN_ROWS, 1)
    for start in range(0, len(q), step):
        rows = np.arange(start, min(start + step, len(q)))
        _, idx = engine.knn(k, rows, exclude_self=same_set)
        mask = rl[idx] == ql[rows, None]
        for name, vals in metrics_from_matches(mask, n_rel[rows], ks).items():
            per_query.setdefault(name, []).append(vals)
    merged = {name: np.concatenate(v) for name, v in per_query.items()}
    valid = n_rel > 0
    if not valid.any():
        raise ValueError("no query has a relevant reference (every query's class is alone)")
    mean = {name: float(np.mean(v[valid])) for name, v in merged.items()}
    m_ap = None
    if with_map:
        ap = engine.average_precision(ql, rl, same_set)
        m_ap = float(np.nanmean(ap[valid]))
    return RetrievalReport(
        {kk: mean[f"recall@{kk}"] for kk in ks},
        mean["precision_at_1"],
        mean["r_precision"],
        mean["map_at_r"],
        m_ap,
        int(valid.sum()),
        int((~valid).sum()),
    )


def map_at_r(query_emb, query_labels, reference_emb=None, reference_labels=None, metric: str = "cosine") -> float:
    """MAP@R (Musgrave et al. 2020); see :func:`retrieval_report`.

    Args:
        query_emb, query_labels, reference_emb, reference_labels: as in :func:`retrieval_report`
            (no reference set: the queries themselves, self excluded).
        metric: ``"cosine"`` or ``"l2"``.

    Returns:
        The metric, a float.

    Raises:
        ValueError: as :func:`retrieval_report`.
    """
    return retrieval_report(query_emb, query_labels, reference_emb, reference_labels, (1,), metric).map_at_r


def r_precision(query_emb, query_labels, reference_emb=None, reference_labels=None, metric: str = "cosine") -> float:
    """R-precision (Musgrave et al. 2020); see :func:`retrieval_report`.

    Args:
        query_emb, query_labels, reference_emb, reference_labels: as in :func:`retrieval_report`
            (no reference set: the queries themselves, self excluded).
        metric: ``"cosine"`` or ``"l2"``.

    Returns:
        The metric, a float.

    Raises:
        ValueError: as :func:`retrieval_report`.
    """
    return retrieval_report(query_emb, query_labels, reference_emb, reference_labels, (1,), metric).r_precision


def recall_at_k(query_emb, query_labels, reference_emb=None, reference_labels=None, k: int = 1, metric: str = "cosine") -> float:
    """Recall@K: fraction of queries with a relevant item in their top K.

    Args:
        query_emb, query_labels, reference_emb, reference_labels: as in :func:`retrieval_report`
            (no reference set: the queries themselves, self excluded).
        k: the K.
        metric: ``"cosine"`` or ``"l2"``.

    Returns:
        The metric, a float.

    Raises:
        ValueError: as :func:`retrieval_report`.
    """
    return retrieval_report(query_emb, query_labels, reference_emb, reference_labels, (k,), metric).recall_at_k[k]


def mean_average_precision(query_emb, query_labels, reference_emb=None, reference_labels=None, metric: str = "cosine") -> float:
    """mAP over the full ranking; see :func:`retrieval_report`.

    Args:
        query_emb, query_labels, reference_emb, reference_labels: as in :func:`retrieval_report`
            (no reference set: the queries themselves, self excluded).
        metric: ``"cosine"`` or ``"l2"``.

    Returns:
        The metric, a float.

    Raises:
        ValueError: as :func:`retrieval_report`.
    """
    rep = retrieval_report(query_emb, query_labels, reference_emb, reference_labels, (1,), metric, with_map=True)
    return float(rep.mean_average_precision)


def per_class_ranks(
    query_emb: np.ndarray,
    query_labels: np.ndarray,
    gallery_emb: np.ndarray,
    gallery_labels: np.ndarray,
    ks: tuple[int, ...] = (1, 5),
    metric: str = "cosine",
    memory_mb: float = DEFAULT_MEMORY_MB,
    gallery_offsets: np.ndarray | None = None,
):
    """Which classes fail: per query class, the hit rate at each rank in ``ks`` and the top-1 confusion.

    Over every query (no draws): ``hit@k(c) = mean over queries of class c of [1 ≤ rank ≤ k]``, with
    the rank of :func:`first_match_rank`; ``mean_rank`` over queries that have a match; ``confused_with``:
    the gallery label most often ranked first for the class's misses (``-1`` when there are none),
    ``confused_share``: the fraction of the class's queries that it takes. Returns a pandas DataFrame,
    one row per query class, sorted by label. ``gallery_offsets`` as in :func:`cmc_representative`.
    Ranks and top-1 matches come from one :class:`~itemrec.evaluation.neighbours.NeighbourEngine`,
    so a class's ``hit@1`` and its confusions agree (``(distance, index)`` order).

    Args:
        query_emb: (n, d); query_labels: (n,) ints.
        gallery_emb: (G, d); gallery_labels: (G,) ints.
        ks: ranks of the ``hit@k`` columns, each ≥ 1.
        metric: ``"cosine"`` or ``"l2"``.
        memory_mb: budget in MiB.
        gallery_offsets: (G,) hubness offsets, or None.

    Returns:
        pandas DataFrame with columns ``label, n_queries, hit@k…, mean_rank, confused_with,
        confused_share``.

    Raises:
        ValueError: bad arrays, metric, offsets, or a k < 1.
    """
    import pandas as pd

    q, ql, g, gl = checked_pair(query_emb, query_labels, gallery_emb, gallery_labels, False)
    if not ks or min(ks) < 1:
        raise ValueError(f"ks must be ranks ≥ 1; got {ks}")
    engine = NeighbourEngine(q, g, metric, gallery_offsets, memory_mb)
    ranks = engine.first_match_rank(ql, gl)
    top1 = gl[engine.knn(1)[1][:, 0]]
    rows = []
    for c in np.unique(ql):
        r = ranks[ql == c]
        row = {"label": int(c), "n_queries": int(len(r))}
        for k in ks:
            row[f"hit@{k}"] = float(np.mean((r >= 1) & (r <= k)))
        row["mean_rank"] = float(r[r >= 1].mean()) if (r >= 1).any() else float("nan")
        wrong = top1[(ql == c) & (top1 != c)]
        if len(wrong):
            values, counts = np.unique(wrong, return_counts=True)
            row["confused_with"], row["confused_share"] = int(values[counts.argmax()]), float(counts.max() / len(r))
        else:
            row["confused_with"], row["confused_share"] = -1, 0.0
        rows.append(row)
    return pd.DataFrame(rows)
