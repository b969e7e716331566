"""The open-set recognition protocols reported side by side.

Each ranks *classes* for a query (a class's score is its best-matching gallery
image), and each gives an interval:

* :func:`cmc_image_averaged`: every query once against one catalogue image
  per class; the mean over queries, so large classes weigh more. Interval:
  the Wilson score interval of that proportion (queries as independent trials).
* class-balanced CMC (:func:`itemrec.evaluation.cmc_representative`): one
  random query per class per draw, each class weighs the same; the interval
  is the 2.5/97.5 percentiles across draws (query sampling only).
* :func:`cmc_k_shot`: k-shot enrolment. Per draw, ``shots`` random photos of
  each class join its catalogue image in the gallery and the class's other
  photos are the queries; image-averaged within a draw, mean and 2.5/97.5
  percentiles across draws.
"""

from __future__ import annotations

import numpy as np

from ._chunked import check_embeddings, check_labels
from .neighbours import first_match_rank
from .cmc import CMCResult, _wilson, cmc_from_ranks


def class_ranks(query_emb: np.ndarray, query_labels: np.ndarray, gallery_emb: np.ndarray,
                gallery_labels: np.ndarray, metric: str = "cosine",
                gallery_offsets: np.ndarray | None = None) -> np.ndarray:
    """1-based rank of each query's true class when classes are ranked by their nearest gallery image.

    Read from the neighbour engine (:func:`itemrec.evaluation.first_match_rank` with
    ``count="classes"``): the gallery is ordered by ``(distance, index)``, and the rank is 1 +
    the number of distinct other classes that appear before the true class's first image.
    So a class whose nearest image ties in distance with the true class's ranks first when
    that image has the lower gallery index.

    Args:
        query_emb: (Q, D) query embeddings.
        query_labels: (Q,) int class ids of the queries.
        gallery_emb: (G, D) gallery embeddings, any number of images per class.
        gallery_labels: (G,) int class ids of the gallery images.
        metric: ``"cosine"`` or ``"l2"``, or a distance that ranks like one (``"squared_l2"``, ``"mse"``,
            ``"cosine_similarity"``; :func:`itemrec.distances.evaluation_metric`).
        gallery_offsets: (G,) added to every distance to that gallery image (a hubness
            correction, :func:`itemrec.evaluation.hubness_offsets`); ``None``: none.

    Returns:
        (Q,) int64 ranks; 0 where the query's class is absent from the gallery.

    Raises:
        ValueError: bad arrays, metric or offsets.
    """
    q = check_embeddings(query_emb, "query embeddings")
    g = check_embeddings(gallery_emb, "gallery embeddings")
    ql = check_labels(query_labels, len(q), "query labels")
    gl = check_labels(gallery_labels, len(g), "gallery labels")
    return first_match_rank(q, ql, g, gl, metric,
                            reference_offsets=gallery_offsets, count="classes")


def cmc_image_averaged(query_emb: np.ndarray, query_labels: np.ndarray, gallery_emb: np.ndarray,
                       gallery_labels: np.ndarray, max_rank: int = 10, metric: str = "cosine") -> CMCResult:
    """CMC over every query (image-averaged) with Wilson 95% intervals; see the module docstring.

    Args:
        query_emb: (Q, D) query embeddings, each used once.
        query_labels: (Q,) int class ids of the queries.
        gallery_emb: (G, D) gallery embeddings (e.g. one catalogue image per class).
        gallery_labels: (G,) int class ids of the gallery images.
        max_rank: last rank of the curve.
        metric: ``"cosine"`` or ``"l2"``, or a distance that ranks like one (``"squared_l2"``, ``"mse"``,
            ``"cosine_similarity"``; :func:`itemrec.distances.evaluation_metric`).

    Returns:
        :class:`CMCResult` (ranks from :func:`class_ranks`).

    Raises:
        ValueError: ``max_rank < 1``, or bad arrays or metric.
    """
    if max_rank < 1:
        raise ValueError(f"max_rank must be >= 1; got {max_rank}")
    ranks = class_ranks(query_emb, query_labels, gallery_emb, gallery_labels, metric)
    mean = cmc_from_ranks(ranks, max_rank)
    low, high = _wilson(mean, len(ranks))
    return CMCResult(np.arange(1, max_rank + 1), mean, low, high, 0, len(ranks))


def cmc_k_shot(photo_emb: np.ndarray, photo_labels: np.ndarray, catalogue_emb: np.ndarray,
               catalogue_labels: np.ndarray, shots: int, max_rank: int = 10, n_draws: int = 20, seed: int = 0,
               metric: str = "cosine") -> CMCResult:
    """k-shot enrolment CMC: catalogue image + ``shots`` photos per class in the gallery, the rest query.

    Args:
        photo_emb: (N, D) photos of the classes.
        photo_labels: (N,) int class ids of the photos.
        catalogue_emb: (C, D) one catalogue image per class (``None``-free).
        catalogue_labels: (C,) int class ids of the catalogue images.
        shots: photos per class moved into the gallery each draw (0 = catalogue only).
        max_rank, n_draws, seed, metric: as in :func:`itemrec.evaluation.cmc_representative`.

    Returns:
        :class:`CMCResult` whose mean is the mean over draws of the image-averaged CMC,
        the interval the 2.5/97.5 percentiles across draws.

    Raises:
        ValueError: a class with ``shots`` or fewer photos (no query would be left),
            photo classes missing from the catalogue, ``shots < 0``, ``n_draws < 1`` or
            ``max_rank < 1``, or bad arrays or metric.
    """
    x = check_embeddings(photo_emb, "photo embeddings")
    y = check_labels(photo_labels, len(x), "photo labels")
    c = check_embeddings(catalogue_emb, "catalogue embeddings")
    cl = check_labels(catalogue_labels, len(c), "catalogue labels")
    if shots < 0 or n_draws < 1 or max_rank < 1:
        raise ValueError("shots must be >= 0, n_draws and max_rank >= 1")
    missing = np.setdiff1d(np.unique(y), cl)
    if len(missing):
        raise ValueError(f"photo classes {missing[:10].tolist()} have no catalogue image")
    groups = [np.flatnonzero(y == k) for k in np.unique(y)]
    small = [int(y[g[0]]) for g in groups if len(g) <= shots]
    if small:
        raise ValueError(f"classes {small[:10]} have {shots} photos or fewer: nothing is left to query")
    rng = np.random.default_rng(seed)
    per_draw = np.empty((n_draws, max_rank))
    n_queries = 0
    for d in range(n_draws):
        enrol = np.concatenate([rng.permutation(g)[:shots] for g in groups]) if shots else np.zeros(0, np.int64)
        query = np.setdiff1d(np.arange(len(x)), enrol)
        ranks = class_ranks(x[query], y[query], np.concatenate([c, x[enrol]]), np.concatenate([cl, y[enrol]]), metric)
        per_draw[d] = cmc_from_ranks(ranks, max_rank)
        n_queries = len(query)
    return CMCResult(np.arange(1, max_rank + 1), per_draw.mean(axis=0), np.percentile(per_draw, 2.5, axis=0),
                     np.percentile(per_draw, 97.5, axis=0), n_draws, n_queries, per_draw)
