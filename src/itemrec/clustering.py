"""Clustering embeddings without knowing how many clusters there are.

:func:`cluster_embeddings` follows the two-stage recipe of the packed-scenes
work (github.com/BCuan/embedding-clustering): a hierarchical density
clustering first covers the probable clusters, then a second density
clustering with the smallest possible sample size (2) recovers small clusters
(pairs) from the points the first stage left as noise.

1. **HDBSCAN** (Campello, Moulavi & Sander, "Density-Based Clustering Based
   on Hierarchical Density Estimates", PAKDD 2013; :class:`sklearn.cluster.HDBSCAN`).
   With core distance ``core_k(a)`` = distance from ``a`` to its ``k``-th
   nearest neighbour (``k = min_samples``, the point itself counted), the
   mutual reachability distance is
   ``d_mreach(a, b) = max(core_k(a), core_k(b), d(a, b))``; its minimum
   spanning tree gives a single-linkage hierarchy, condensed at
   ``min_cluster_size``, from which the clusters of greatest stability
   ``S(C) = sum_{p in C} (lambda_p - lambda_birth(C))`` with ``lambda = 1/d``
   are selected ("excess of mass").
2. **OPTICS** (Ankerst, Breunig, Kriegel & Sander, "OPTICS: Ordering Points To
   Identify the Clustering Structure", SIGMOD 1999; :class:`sklearn.cluster.OPTICS`)
   on the HDBSCAN noise points only, with ``min_samples=2`` and the xi
   steep-area extraction. Its cluster ids are offset by the number of HDBSCAN
   clusters so the two never collide; what OPTICS also rejects stays ``-1``.

Cosine distance. For unit vectors ``|a - b|^2 = 2 (1 - cos(a, b))``, so the
euclidean ("chordal") distance between L2-normalised embeddings is
``sqrt(2 d_cos)`` with ``d_cos = 1 - cos``: a strictly increasing function
of the cosine distance. Neighbour orderings, core-distance orderings, the
minimum spanning tree and hence the single-linkage hierarchy are the same
for both; only HDBSCAN's stability values (sums of ``1/d``) differ, so the
flat clusters it selects can differ. ``metric="cosine"`` (default) clusters
the L2-normalised embeddings with euclidean distance: it is a true metric
(``d_cos`` breaks the triangle inequality), needs no ``N x N`` matrix, and
is steadier: ``d_cos`` squares the small within-cluster distances, which
exaggerates structure inside a cluster, and on well separated synthetic
blobs the exact ``d_cos`` (``metric="cosine", precomputed=True``, a precomputed
matrix) split one blob where the chordal distance did not. With
``"l2"`` the raw embeddings are used. ``optics_max_eps`` is in the
units of the chosen distance.

Distances are named as everywhere in itemrec (:mod:`itemrec.distances`): a name, a
serialised dict or a :class:`~itemrec.distances.Distance`, of the distances whose values
evaluation computes (:data:`METRICS`). The older names ``"euclidean"`` and ``"cosine_exact"``
still work, with a ``FutureWarning`` that gives the new spelling.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from itemrec._numeric import l2_normalize_rows
from itemrec.evaluation._chunked import METRICS, check_metric  # clustering takes the distances evaluation computes

#: older names: metric → (distance, precomputed)
_OLD_METRICS = {"euclidean": ("l2", False), "cosine_exact": ("cosine", True)}


@dataclass
class ClusteringResult:
    """Output of :func:`cluster_embeddings`.

    ``labels[i]`` is the cluster of point ``i`` (``0..n_clusters-1``) or
    ``-1`` for noise. HDBSCAN's clusters keep ids ``0..n_hdbscan_clusters-1``;
    OPTICS's come after them. ``from_optics[i]`` is true where OPTICS gave
    the label (the point was HDBSCAN noise and OPTICS clustered it).

    Attributes:
        labels: (N,) int64 final cluster ids, ``-1`` for points both stages left as noise.
            Ids of each stage are numbered in order of first appearance.
        n_clusters: clusters in ``labels`` (HDBSCAN's plus OPTICS's).
        n_hdbscan_clusters: clusters found by the HDBSCAN stage.
        hdbscan_labels: (N,) int64 the HDBSCAN stage's ids alone (``-1``: HDBSCAN noise,
            including every point when HDBSCAN was skipped for too few points).
        from_optics: (N,) bool, the point's label came from the OPTICS stage.
        params: the settings used (``min_cluster_size``, ``min_samples``, ``metric``,
            ``optics_on_noise``, ``optics_min_samples``, ``optics_xi``, ``optics_max_eps``
            (``None``: no cap), ``cluster_selection_method``, ``cluster_selection_epsilon``,
            ``allow_single_cluster``), JSON-ready.
    """

    labels: np.ndarray
    n_clusters: int
    n_hdbscan_clusters: int
    hdbscan_labels: np.ndarray
    from_optics: np.ndarray
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def n_noise(self) -> int:
        """Points left as noise by both stages."""
        return int(np.sum(self.labels < 0))

    @property
    def n_optics_clusters(self) -> int:
        """Clusters found by the OPTICS stage."""
        return self.n_clusters - self.n_hdbscan_clusters

    def cluster_sizes(self) -> dict[int, int]:
        """``{cluster id: number of points}``, noise left out.

        Returns:
            A dict from each cluster id in ``labels`` (ascending) to its size, ``≥ 1``.
        """
        ids, counts = np.unique(self.labels[self.labels >= 0], return_counts=True)
        return {int(i): int(c) for i, c in zip(ids, counts)}


@dataclass
class ClusterQuality:
    """Agreement of predicted clusters with true labels (see :func:`clustering_scores`).

    ``n_clusters`` counts real clusters (noise excluded); ``n_noise`` the ``-1`` points.

    Attributes:
        ari: adjusted Rand index (Hubert & Arabie 1985), ``≤ 1``; about 0 for chance, may be negative.
        nmi: normalized mutual information (arithmetic-mean normalisation), in ``[0, 1]``.
        purity: ``(1/N) Σ_k max_j |C_k ∩ T_j|`` in ``(0, 1]``; inflated by noise scored as
            singletons, so read it with ``n_noise``.
        n_clusters: distinct non-negative predicted cluster ids (noise excluded).
        n_true_classes: distinct true classes.
        n_noise: points predicted as noise (``-1``).
    """

    ari: float
    nmi: float
    purity: float
    n_clusters: int
    n_true_classes: int
    n_noise: int


def l2_normalize(emb: np.ndarray) -> np.ndarray:
    """Rows divided by their L2 norm (:func:`itemrec._numeric.l2_normalize_rows`, float64).

    Args:
        emb: (N, D) finite embeddings.

    Returns:
        (N, D) float64 unit rows.

    Raises:
        ValueError: not 2-D, NaN/inf rows, or a zero row (named: cosine distance is undefined for it).
    """
    return l2_normalize_rows(_check_embeddings(emb), dtype=np.float64, what="embedding")


def cosine_distances(emb: np.ndarray) -> np.ndarray:
    """``D[i, j] = 1 - cos(e_i, e_j)``, clipped to ``[0, 2]`` with an exact zero diagonal.

    The full N × N matrix HDBSCAN/OPTICS take as ``metric="precomputed"`` (a clustering input,
    not a ranking: nothing here is sorted).

    Args:
        emb: (N, D) finite embeddings without zero rows.

    Returns:
        (N, N) float64.

    Raises:
        ValueError: as :func:`l2_normalize`.
    """
    unit = l2_normalize(emb)
    dist = 1.0 - unit @ unit.T
    np.clip(dist, 0.0, 2.0, out=dist)
    np.fill_diagonal(dist, 0.0)
    return dist


def _check_embeddings(emb: np.ndarray) -> np.ndarray:
    emb = np.asarray(emb, dtype=np.float64)
    if emb.ndim != 2:
        raise ValueError(f"embeddings must be a 2-D (N, D) array, got shape {emb.shape}")
    if emb.shape[0] and emb.shape[1] == 0:
        raise ValueError(f"embeddings have zero dimensions: shape {emb.shape}")
    bad = np.flatnonzero(~np.isfinite(emb).all(axis=1))
    if bad.size:
        raise ValueError(f"embedding rows {bad[:10].tolist()} contain NaN or inf")
    return emb


def cluster_embeddings(
    emb: np.ndarray,
    min_cluster_size: int = 2,
    min_samples: int | None = None,
    metric: str = "cosine",
    optics_on_noise: bool = True,
    optics_min_samples: int = 2,
    optics_xi: float = 0.05,
    optics_max_eps: float = np.inf,
    cluster_selection_method: str = "eom",
    cluster_selection_epsilon: float = 0.0,
    allow_single_cluster: bool = False,
    precomputed: bool = False,
) -> ClusteringResult:
    """Cluster ``emb`` (N, D) with HDBSCAN, then OPTICS on HDBSCAN's noise (module docstring).

    Edge cases: ``N = 0`` gives an empty result; ``N = 1`` is one noise point;
    fewer points than ``min_cluster_size`` (or ``min_samples``) skip HDBSCAN
    (everything is noise for stage 2); fewer noise points than
    ``optics_min_samples`` skip OPTICS. Exact duplicates are fine.

    Args:
        emb: (N, D) finite embeddings (no zero row for the cosine metrics).
        min_cluster_size: smallest HDBSCAN cluster, ``≥ 2`` (:class:`sklearn.cluster.HDBSCAN`).
        min_samples: ``k`` of HDBSCAN's core distance, ``≥ 1``; ``None`` means ``min_cluster_size``.
        metric: ``"cosine"`` (euclidean on L2-normalised rows; with ``precomputed``, the
            ``1 - cos`` N × N matrix) or ``"l2"`` (raw rows): a name, a serialised dict or a
            :class:`~itemrec.distances.Distance`. ``"euclidean"`` and ``"cosine_exact"`` are the
            older names of ``"l2"`` and of ``"cosine"`` with ``precomputed=True`` (``FutureWarning``).
        optics_on_noise: run the second (OPTICS) stage at all.
        optics_min_samples: OPTICS's ``min_samples``, ``≥ 2`` (2 recovers pairs).
        optics_xi: OPTICS's xi, the minimum steepness of the reachability plot that bounds
            a cluster, in ``(0, 1)``.
        optics_max_eps: OPTICS's ``max_eps``, in the chosen metric's units; ``inf`` = no cap,
            as in the original method.
        cluster_selection_method: HDBSCAN's ``"eom"`` (excess of mass, the most stable
            clusters) or ``"leaf"`` (the leaves of the condensed tree).
        cluster_selection_epsilon: HDBSCAN's distance below which clusters are merged
            (0: none), in the chosen metric's units.
        allow_single_cluster: let HDBSCAN return one cluster holding everything (needed
            when all points are one product).
        precomputed: give HDBSCAN and OPTICS the full N × N matrix of the distance itself
            (``metric="precomputed"``), rather than rows and sklearn's euclidean distance.

    Returns:
        :class:`ClusteringResult` (with the settings in ``params``).

    Raises:
        ValueError: a distance clustering cannot compute, ``min_cluster_size < 2``, ``min_samples < 1``,
            ``optics_min_samples < 2``, or bad embeddings (non-2-D, NaN/inf, zero rows for cosine).
    """
    metric, precomputed = _resolve_metric(metric, precomputed)
    if int(min_cluster_size) < 2:
        raise ValueError(f"min_cluster_size must be at least 2, got {min_cluster_size}")
    if min_samples is not None and int(min_samples) < 1:
        raise ValueError(f"min_samples must be at least 1, got {min_samples}")
    if int(optics_min_samples) < 2:
        raise ValueError(f"optics_min_samples must be at least 2, got {optics_min_samples}")
    emb = _check_embeddings(emb)
    n = emb.shape[0]
    params: dict[str, Any] = dict(
        min_cluster_size=int(min_cluster_size),
        min_samples=None if min_samples is None else int(min_samples),
        metric=metric,
        precomputed=precomputed,
        optics_on_noise=bool(optics_on_noise),
        optics_min_samples=int(optics_min_samples),
        optics_xi=float(optics_xi),
        optics_max_eps=float(optics_max_eps) if np.isfinite(optics_max_eps) else None,  # None: no cap
        cluster_selection_method=cluster_selection_method,
        cluster_selection_epsilon=float(cluster_selection_epsilon),
        allow_single_cluster=bool(allow_single_cluster),
    )
    if n == 0:
        empty = np.zeros(0, dtype=np.int64)
        return ClusteringResult(empty, 0, 0, empty.copy(), np.zeros(0, dtype=bool), params)

    data, sk_metric = _clustering_input(emb, metric, precomputed)

    hdb = np.full(n, -1, dtype=np.int64)
    k = int(min_cluster_size if min_samples is None else min_samples)
    if n >= max(int(min_cluster_size), k, 2):
        from sklearn.cluster import HDBSCAN

        model = HDBSCAN(
            min_cluster_size=int(min_cluster_size),
            min_samples=None if min_samples is None else int(min_samples),
            metric=sk_metric,
            cluster_selection_method=cluster_selection_method,
            cluster_selection_epsilon=float(cluster_selection_epsilon),
            allow_single_cluster=bool(allow_single_cluster),
            copy=True,
        )
        hdb = model.fit(data).labels_.astype(np.int64)
        hdb[hdb < 0] = -1  # sklearn's -2/-3 (inf / missing) cannot occur after the checks above
    hdb = _compact(hdb)
    n_hdb = int(hdb.max() + 1) if (hdb >= 0).any() else 0

    labels = hdb.copy()
    from_optics = np.zeros(n, dtype=bool)
    noise = np.flatnonzero(hdb < 0)
    if optics_on_noise and noise.size >= int(optics_min_samples):
        sub = data[np.ix_(noise, noise)] if sk_metric == "precomputed" else data[noise]
        opt = _optics(sub, sk_metric, int(optics_min_samples), float(optics_xi), float(optics_max_eps))
        opt = _compact(opt)
        got = opt >= 0
        labels[noise[got]] = opt[got] + n_hdb
        from_optics[noise[got]] = True
    n_clusters = int(labels.max() + 1) if (labels >= 0).any() else 0
    return ClusteringResult(labels, n_clusters, n_hdb, hdb, from_optics, params)


def _resolve_metric(metric: Any, precomputed: bool) -> tuple[str, bool]:
    """``(distance name, precomputed)`` from a distance or an older name (with a ``FutureWarning``)."""
    if isinstance(metric, str) and metric in _OLD_METRICS:
        name, pre = _OLD_METRICS[metric]
        new = f'metric="{name}"' + (", precomputed=True" if pre else "")
        warnings.warn(f'cluster_embeddings(metric="{metric}") is the older spelling of {new}; '
                      "the older names will be removed", FutureWarning, stacklevel=3)
        return name, pre or bool(precomputed)
    return check_metric(metric, who="clustering"), bool(precomputed)


def _clustering_input(emb: np.ndarray, metric: str, precomputed: bool) -> tuple[np.ndarray, str]:
    """What HDBSCAN/OPTICS are fitted on, and their ``metric``: unit or raw rows, or the N × N matrix."""
    if not precomputed:
        return (l2_normalize(emb) if metric == "cosine" else emb), "euclidean"
    if metric == "cosine":
        return cosine_distances(emb), "precomputed"
    from sklearn.metrics.pairwise import euclidean_distances

    dist = euclidean_distances(emb)
    np.fill_diagonal(dist, 0.0)
    return dist, "precomputed"


def _optics(data: np.ndarray, metric: str, min_samples: int, xi: float, max_eps: float) -> np.ndarray:
    from sklearn.cluster import OPTICS

    if metric != "precomputed" and np.ptp(data, axis=0).max() == 0:
        # All points identical: OPTICS's reachability plot is flat (0/0 in the xi ratio).
        return np.zeros(len(data), dtype=np.int64)
    if metric == "precomputed" and not data.any():
        return np.zeros(len(data), dtype=np.int64)
    with warnings.catch_warnings():
        # The xi steep-area ratio divides by zero reachabilities of exact duplicates.
        warnings.simplefilter("ignore", RuntimeWarning)
        model = OPTICS(min_samples=min_samples, metric=metric, xi=xi, max_eps=max_eps, cluster_method="xi")
        return model.fit(data).labels_.astype(np.int64)


def _compact(labels: np.ndarray) -> np.ndarray:
    """Renumber non-negative labels to ``0..k-1`` in order of first appearance; noise stays -1."""
    out = np.full(labels.shape, -1, dtype=np.int64)
    mapping: dict[int, int] = {}
    for i, lab in enumerate(labels.tolist()):
        if lab >= 0:
            out[i] = mapping.setdefault(lab, len(mapping))
    return out


def noise_as_singletons(labels: np.ndarray) -> np.ndarray:
    """Give each ``-1`` its own new cluster id (after the largest one).

    Args:
        labels: (N,) cluster ids, ``-1`` for noise.

    Returns:
        (N,) int64 ids without ``-1``.
    """
    labels = np.asarray(labels, dtype=np.int64).copy()
    noise = np.flatnonzero(labels < 0)
    start = int(labels.max() + 1) if (labels >= 0).any() else 0
    labels[noise] = start + np.arange(noise.size)
    return labels


def clustering_scores(labels_true: np.ndarray, labels_pred: np.ndarray, noise: str = "singletons") -> ClusterQuality:
    """ARI, NMI and purity of ``labels_pred`` (``-1`` = noise) against ``labels_true``.

    The metrics are :mod:`itemrec.evaluation.clustering_quality`'s (sklearn's
    ARI and arithmetic NMI, purity ``(1/N) sum_k max_j |C_k ∩ T_j|``); this
    only decides what noise is. ``noise="singletons"`` (default) scores each
    noise point as its own cluster (a noise point groups with nothing);
    ``noise="cluster"`` lumps all noise into one cluster. Singleton noise
    points count as pure, so read purity together with ``n_noise``.

    Args:
        labels_true: (N,) classes.
        labels_pred: (N,) cluster ids, ``-1`` = noise.
        noise: ``"singletons"`` or ``"cluster"``.

    Returns:
        :class:`ClusterQuality`.

    Raises:
        ValueError: arrays not 1-D of one length, or a bad ``noise``.
    """
    from itemrec.evaluation.clustering_quality import clustering_scores as _scores

    labels_true = np.asarray(labels_true)
    labels_pred = np.asarray(labels_pred, dtype=np.int64)
    if labels_true.shape != labels_pred.shape or labels_true.ndim != 1:
        raise ValueError(f"label arrays must be 1-D and equal in length: {labels_true.shape} vs {labels_pred.shape}")
    if noise not in ("singletons", "cluster"):
        raise ValueError(f"noise must be 'singletons' or 'cluster', got {noise!r}")
    pred = noise_as_singletons(labels_pred) if noise == "singletons" else labels_pred
    base = _scores(labels_true, pred)
    return ClusterQuality(
        ari=base.ari,
        nmi=base.nmi,
        purity=base.purity,
        n_clusters=int(len(set(labels_pred[labels_pred >= 0].tolist()))),
        n_true_classes=base.n_classes,
        n_noise=int(np.sum(labels_pred < 0)),
    )
