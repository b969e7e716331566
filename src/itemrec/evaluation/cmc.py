"""CMC curves: the rank of each query's first correct match, over a gallery.

The CMC curve (Moon & Phillips, "Computational and performance aspects of PCA-based
face-recognition algorithms", 2001) is ``CMC(r)`` = fraction of queries whose first
correct match is at rank ≤ r. Ranks are read from the neighbour engine
(:func:`itemrec.evaluation.first_match_rank`): the gallery ordered by ``(distance, index)``.
Also the per-class table of which classes fail (:func:`per_class_ranks`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ._chunked import DEFAULT_MEMORY_MB, check_embeddings, check_labels, check_metric, checked_pair
from .neighbours import NeighbourEngine, first_match_rank


@dataclass
class CMCResult:
    """A CMC curve: ``mean[r-1]`` is the identification rate at rank ``ranks[r-1]``.

    ``ci_low``/``ci_high`` bound a 95% interval: the 2.5/97.5 percentiles across
    random query draws (:func:`cmc_representative`) or the Wilson score interval of
    the proportion (:func:`cmc`, ``n_draws = 0``).

    Attributes:
        ranks: (R,) ints 1..R.
        mean: (R,) identification rate at each rank, in [0, 1].
        ci_low: (R,) lower end of the 95% interval.
        ci_high: (R,) upper end of the 95% interval.
        n_draws: query draws averaged (0: every query once).
        n_queries: queries per draw (or in all).
        per_draw: (n_draws, R) the curve of each draw, or ``None``.
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
        query_emb: (n, d).
        query_labels: (n,) ints.
        gallery_emb: (G, d).
        gallery_labels: (G,) ints.
        max_rank: last rank of the curve.
        metric: ``"cosine"`` or ``"l2"``, or a distance that ranks like one (``"squared_l2"``, ``"mse"``,
            ``"cosine_similarity"``; :func:`itemrec.distances.evaluation_metric`).
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
        query_emb: (n, d).
        query_labels: (n,) ints.
        gallery_emb: (C, d) one image per class.
        gallery_labels: (C,) distinct ints.
        max_rank: last rank of the curve.
        n_draws: random query draws.
        queries_per_class: queries per class per draw.
        seed: seed of ``numpy.random.default_rng``.
        metric: ``"cosine"`` or ``"l2"``, or a distance that ranks like one (``"squared_l2"``, ``"mse"``,
            ``"cosine_similarity"``; :func:`itemrec.distances.evaluation_metric`).
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
        query_emb: (n, d).
        query_labels: (n,) ints.
        gallery_emb: (G, d).
        gallery_labels: (G,) ints.
        ks: ranks of the ``hit@k`` columns, each ≥ 1.
        metric: ``"cosine"`` or ``"l2"``, or a distance that ranks like one (``"squared_l2"``, ``"mse"``,
            ``"cosine_similarity"``; :func:`itemrec.distances.evaluation_metric`).
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
    engine = NeighbourEngine(q, g, check_metric(metric, ranking_only=True), gallery_offsets, memory_mb)
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
