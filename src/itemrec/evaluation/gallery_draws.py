"""CMC over random galleries: both averagings, each with its interval across draws.

The protocol of ``itemrec evaluate MODEL --data FOLDER``. Each draw ``d``:

1. the gallery ``G_d`` holds the catalogue image of each class (when given) and ``shots``
   photos per class drawn at random from the photos allowed in the gallery;
2. the queries ``Q_d`` are the photos allowed as queries that are not in ``G_d``, of the
   classes in the evaluation; with ``near`` given, a query that is a near copy of a gallery
   photo of its own class (or of its catalogue image) is dropped for that draw;
3. classes are ranked for each query by their nearest gallery image
   (:func:`itemrec.evaluation.class_ranks`), optionally with the hubness offsets of
   :func:`itemrec.evaluation.hubness_offsets` computed from a background set;
4. **image-averaged** ``CMC_d(r)`` = the mean over every query of ``[rank ≤ r]``: large classes
   weigh more; **class-balanced** ``CMC_d(r)``: one query drawn at random per class (classes
   with no query left in this draw are left out), so each class weighs the same.

Each curve is the mean over draws; its interval the 2.5/97.5 percentiles across draws, so
it covers the gallery and query sampling, not the choice of classes or photos.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._chunked import check_metric
from .hubness import hubness_offsets
from .protocols import class_ranks
from .cmc import CMCResult, cmc_from_ranks


@dataclass
class GalleryDrawsResult:
    """What :func:`cmc_gallery_draws` measured.

    Attributes:
        image: image-averaged :class:`CMCResult`: mean over draws, 2.5/97.5 percentiles across
            draws, ``per_draw`` (draws, max_rank); its ``n_queries`` is the mean number of
            queries per draw (rounded down).
        balanced: class-balanced :class:`CMCResult` (one random query per class per draw),
            same layout; its ``n_queries`` is C, the number of evaluated classes.
        classes: (C,) the evaluated labels, sorted ascending and distinct.
        per_class_hit1: (C,) share of each class's queries whose true class ranked first,
            pooled over draws, in ``[0, 1]``; NaN for a class that never had a query.
        per_class_hit5: (C,) share ranked within the first 5, pooled over draws (NaN as above).
        per_class_queries: (C,) int, each class's queries pooled over draws.
        n_queries: (draws,) int, queries used in each draw.
        n_excluded: (draws,) int, queries dropped in each draw as near copies of a gallery
            photo of their class or of its catalogue image (0 without ``near``).
    """

    image: CMCResult
    balanced: CMCResult
    classes: np.ndarray
    per_class_hit1: np.ndarray
    per_class_hit5: np.ndarray
    per_class_queries: np.ndarray
    n_queries: np.ndarray
    n_excluded: np.ndarray


def _same_class_pairs(y: np.ndarray, near: tuple[np.ndarray, np.ndarray] | None
                      ) -> tuple[np.ndarray, np.ndarray] | None:
    """Both directions of the near pairs whose two photos share a class."""
    if near is None:
        return None
    i, j = (np.asarray(v, np.int64).reshape(-1) for v in near)
    keep = y[i] == y[j]
    i, j = i[keep], j[keep]
    return np.concatenate([i, j]), np.concatenate([j, i])


def _check(photo_labels: np.ndarray, classes: np.ndarray, in_gallery: np.ndarray, as_query: np.ndarray,
           shots: int, cat_labels: np.ndarray | None) -> None:
    if shots < 0:
        raise ValueError(f"shots must be >= 0; got {shots}")
    if shots == 0 and cat_labels is None:
        raise ValueError("an empty gallery: give catalogue images or shots >= 1")
    if cat_labels is not None:
        missing = np.setdiff1d(classes, cat_labels)
        if shots == 0 and len(missing):
            raise ValueError(f"classes {missing[:10].tolist()} have no catalogue image and shots is 0")
    for c in classes:
        pool = np.flatnonzero((photo_labels == c) & in_gallery)
        queries = np.flatnonzero((photo_labels == c) & as_query)
        if not len(queries):
            raise ValueError(f"class {int(c)} has no photo allowed to query")
        if len(pool) < shots:
            raise ValueError(f"class {int(c)} has {len(pool)} photos allowed in the gallery; shots is {shots}")
        if len(np.setdiff1d(queries, pool)) == 0 and len(queries) <= shots:
            raise ValueError(f"class {int(c)} has {len(queries)} photos: none would be left to query after {shots} shots")


def cmc_gallery_draws(
    photo_emb: np.ndarray,
    photo_labels: np.ndarray,
    classes: np.ndarray,
    shots: int,
    n_draws: int = 20,
    seed: int = 0,
    max_rank: int = 10,
    metric: str = "cosine",
    in_gallery: np.ndarray | None = None,
    as_query: np.ndarray | None = None,
    catalogue_emb: np.ndarray | None = None,
    catalogue_labels: np.ndarray | None = None,
    near: tuple[np.ndarray, np.ndarray] | None = None,
    near_catalogue: np.ndarray | None = None,
    background_emb: np.ndarray | None = None,
    hubness_k: int = 10,
    beta: float = 0.5,
) -> GalleryDrawsResult:
    """Image-averaged and class-balanced CMC over ``n_draws`` random galleries (module docstring).

    Args:
        photo_emb: (N, D) photo embeddings.
        photo_labels: (N,) int labels of the photos.
        classes: (C,) the labels evaluated (their photos query); photos of other labels may
            still enter the gallery as distractors.
        shots: photos per class drawn into the gallery each draw (0: catalogue only).
        n_draws, seed: draws and the seed of ``numpy.random.default_rng``.
        max_rank: last rank of the curves (capped at the number of gallery classes).
        metric: ``"cosine"`` or ``"l2"``, or a distance that ranks like one (``"squared_l2"``, ``"mse"``,
            ``"cosine_similarity"``; :func:`itemrec.distances.evaluation_metric`).
        in_gallery, as_query: (N,) bool, which photos may be drawn into the gallery / may query
            (default: all; a ``split/class`` tree draws from one split and queries another).
        catalogue_emb, catalogue_labels: (K, D) and (K,), always in the gallery.
        near: ``(i, j)`` index pairs of photos that are near copies (same class); ``None``: no exclusion.
        near_catalogue: (N,) bool, photos that are near copies of their class's catalogue image
            (dropped from the queries when ``near`` is given).
        background_emb: (B, D) photos for the hubness correction (``None``: off); the
            correction supports only ``"cosine"`` and ``"l2"`` (:func:`itemrec.evaluation.hubness_offsets`).
        hubness_k: background neighbours per gallery item for the correction, ``≥ 1`` (capped at B).
        beta: weight β ``≥ 0`` of the correction (0.5: the CSLS ranking of Conneau et al. 2018).

    Returns:
        :class:`GalleryDrawsResult`.

    Raises:
        ValueError: an empty gallery (``shots = 0`` without catalogue images, or a class
            with no catalogue image and ``shots = 0``), ``shots < 0``, a class with fewer than
            ``shots`` gallery photos or with no query left, ``n_draws < 1`` or
            ``max_rank < 1``, bad shapes or metric, or bad ``hubness_k``/``beta``.
    """
    x = np.asarray(photo_emb)
    y = np.asarray(photo_labels, np.int64)
    classes = np.unique(np.asarray(classes, np.int64))
    in_gallery = np.ones(len(y), bool) if in_gallery is None else np.asarray(in_gallery, bool)
    as_query = np.ones(len(y), bool) if as_query is None else np.asarray(as_query, bool)
    cat_y = None if catalogue_labels is None else np.asarray(catalogue_labels, np.int64)
    _check(y, classes, in_gallery, as_query, shots, cat_y)
    metric = check_metric(metric, ranking_only=True)  # "squared_l2" ranks, and its offsets are, in "l2"
    if n_draws < 1 or max_rank < 1:
        raise ValueError("n_draws and max_rank must be >= 1")
    pairs = _same_class_pairs(y, near)
    drop_always = (np.zeros(len(y), bool) if near_catalogue is None or near is None
                   else np.asarray(near_catalogue, bool))
    rng = np.random.default_rng(seed)
    pools = {int(c): np.flatnonzero((y == c) & in_gallery) for c in np.unique(y[in_gallery])}
    queryable = as_query & np.isin(y, classes)
    n_gallery_classes = len(np.union1d(list(pools) if shots else [], cat_y if cat_y is not None else []))
    max_rank = int(min(max_rank, n_gallery_classes))
    img, bal = np.empty((n_draws, max_rank)), np.empty((n_draws, max_rank))
    hit1, hit5, per_q = np.zeros(len(classes)), np.zeros(len(classes)), np.zeros(len(classes))
    n_q, n_x = np.zeros(n_draws, np.int64), np.zeros(n_draws, np.int64)
    for d in range(n_draws):
        enrol = (np.concatenate([rng.permutation(p)[:shots] for p in pools.values()]) if shots
                 else np.zeros(0, np.int64))
        q = queryable.copy()
        q[enrol] = False
        candidates = np.flatnonzero(q)
        if pairs is not None:
            in_g = np.zeros(len(y), bool)
            in_g[enrol] = True
            src, dst = pairs
            near_g = drop_always | (np.bincount(src[in_g[dst]], minlength=len(y)) > 0)
            n_x[d] = int(near_g[candidates].sum())
            candidates = candidates[~near_g[candidates]]
        g_e = x[enrol] if cat_y is None else np.concatenate([np.asarray(catalogue_emb), x[enrol]])
        g_y = y[enrol] if cat_y is None else np.concatenate([cat_y, y[enrol]])
        offsets = None if background_emb is None else hubness_offsets(g_e, background_emb, hubness_k, beta, metric)
        ranks = class_ranks(x[candidates], y[candidates], g_e, g_y, metric, gallery_offsets=offsets)
        img[d] = cmc_from_ranks(ranks, max_rank)
        qy = y[candidates]
        picks = [rng.choice(np.flatnonzero(qy == c)) for c in classes if (qy == c).any()]
        bal[d] = cmc_from_ranks(ranks[np.asarray(picks, np.int64)], max_rank)
        pos = np.searchsorted(classes, qy)
        np.add.at(hit1, pos, ranks == 1)
        np.add.at(hit5, pos, (ranks >= 1) & (ranks <= 5))
        np.add.at(per_q, pos, 1)
        n_q[d] = len(candidates)
    safe = np.maximum(per_q, 1)
    return GalleryDrawsResult(_summarise(img, int(n_q.mean())), _summarise(bal, len(classes)), classes,
                              np.where(per_q > 0, hit1 / safe, np.nan), np.where(per_q > 0, hit5 / safe, np.nan),
                              per_q.astype(np.int64), n_q, n_x)


def _summarise(per_draw: np.ndarray, n_queries: int) -> CMCResult:
    ranks = np.arange(1, per_draw.shape[1] + 1)
    return CMCResult(ranks, per_draw.mean(axis=0), np.percentile(per_draw, 2.5, axis=0),
                     np.percentile(per_draw, 97.5, axis=0), len(per_draw), n_queries, per_draw)
