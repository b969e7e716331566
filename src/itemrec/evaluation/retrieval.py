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

CMC curves live in :mod:`itemrec.evaluation.cmc` (re-exported here).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._chunked import DEFAULT_MEMORY_MB, check_embeddings, check_labels, check_metric
from .cmc import CMCResult, _wilson, cmc, cmc_from_ranks, cmc_representative, per_class_ranks
from .neighbours import NeighbourEngine

__all__ = ["CMCResult", "RetrievalReport", "_wilson", "cmc", "cmc_from_ranks", "cmc_representative", "map_at_r",
           "mean_average_precision", "metrics_from_matches", "per_class_ranks", "r_precision", "recall_at_k",
           "retrieval_report"]  # the CMC names are re-exported from .cmc, where they moved
_KNN_ROWS = 16384  # queries per neighbour search in retrieval_report (outputs: rows × k)


@dataclass
class RetrievalReport:
    """Musgrave et al. (2020) retrieval metrics, averaged over queries with ``R > 0``.

    Every rate lies in ``[0, 1]``; the definitions are in the module docstring.

    Attributes:
        recall_at_k: ``{K: Recall@K}``, the fraction of queries with a relevant reference
            among their first K neighbours, for each K asked for.
        precision_at_1: fraction of queries whose nearest reference is relevant (= Recall@1).
        r_precision: mean R-precision (relevant references among the first R, divided by R).
        map_at_r: mean MAP@R.
        mean_average_precision: mean average precision over each query's full ranking, or
            ``None`` when it was not asked for (``with_map=False``).
        n_queries: queries averaged (those with at least one relevant reference, ``R > 0``).
        n_skipped: queries left out because no reference shares their label (``R = 0``).
    """

    recall_at_k: dict[int, float]
    precision_at_1: float
    r_precision: float
    map_at_r: float
    mean_average_precision: float | None
    n_queries: int
    n_skipped: int


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
        query_emb: (n, d) query embeddings.
        query_labels: (n,) int class ids of the queries.
        reference_emb: (m, d) reference embeddings, or None for the queries themselves
            (each query's own row excluded from its ranking).
        reference_labels: (m,) int class ids of ``reference_emb``; given exactly when it is.
        ks: the K of Recall@K.
        metric: ``"cosine"`` or ``"l2"``, or a distance that ranks like one (``"squared_l2"``, ``"mse"``,
            ``"cosine_similarity"``; :func:`itemrec.distances.evaluation_metric`).
        with_map: also the full-ranking mAP (every pair's exact distance: slow for large sets).
        memory_mb: budget in MiB.

    Returns:
        :class:`RetrievalReport` (averages over queries with ``R > 0``).

    Raises:
        ValueError: bad arrays or metric, reference labels without embeddings (or the reverse),
            fewer references than ``max(ks)``, or no query with a relevant reference.
    """
    metric = check_metric(metric, ranking_only=True)
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
        metric: ``"cosine"`` or ``"l2"``, or a distance that ranks like one (``"squared_l2"``, ``"mse"``,
            ``"cosine_similarity"``; :func:`itemrec.distances.evaluation_metric`).

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
        metric: ``"cosine"`` or ``"l2"``, or a distance that ranks like one (``"squared_l2"``, ``"mse"``,
            ``"cosine_similarity"``; :func:`itemrec.distances.evaluation_metric`).

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
        metric: ``"cosine"`` or ``"l2"``, or a distance that ranks like one (``"squared_l2"``, ``"mse"``,
            ``"cosine_similarity"``; :func:`itemrec.distances.evaluation_metric`).

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
        metric: ``"cosine"`` or ``"l2"``, or a distance that ranks like one (``"squared_l2"``, ``"mse"``,
            ``"cosine_similarity"``; :func:`itemrec.distances.evaluation_metric`).

    Returns:
        The metric, a float.

    Raises:
        ValueError: as :func:`retrieval_report`.
    """
    rep = retrieval_report(query_emb, query_labels, reference_emb, reference_labels, (1,), metric, with_map=True)
    return float(rep.mean_average_precision)
