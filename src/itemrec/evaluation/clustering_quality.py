"""Clustering quality against ground-truth classes.

* adjusted Rand index (Hubert & Arabie, 1985), ``sklearn.metrics.adjusted_rand_score``;
* normalized mutual information (Strehl & Ghosh, 2002; arithmetic mean normalisation),
  ``sklearn.metrics.normalized_mutual_info_score``;
* purity (Manning, Raghavan & Schütze, *Introduction to IR*, 2008, §16.3):
  ``(1/N) Σ_clusters max_class |cluster ∩ class|``.

A predicted label of ``-1`` (noise, e.g. DBSCAN) is treated as one more cluster.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class ClusteringScores:
    """ARI, NMI (arithmetic), purity, and the numbers of clusters and classes of one clustering.

    Attributes:
        ari: adjusted Rand index, ``≤ 1`` (1: identical partitions, about 0: chance; can be negative).
        nmi: normalized mutual information with arithmetic-mean normalisation, in ``[0, 1]``.
        purity: see :func:`purity`, in ``(0, 1]``.
        n_clusters: distinct predicted labels (noise ``-1`` counts as one cluster).
        n_classes: distinct true classes.
    """

    ari: float
    nmi: float
    purity: float
    n_clusters: int
    n_classes: int


def _pair(labels_true, labels_pred) -> tuple[np.ndarray, np.ndarray]:
    t, p = np.asarray(labels_true), np.asarray(labels_pred)
    if t.ndim != 1 or p.shape != t.shape:
        raise ValueError(f"labels_true and labels_pred must be 1-D of one length; got {t.shape} and {p.shape}")
    if len(t) == 0:
        raise ValueError("no samples to score")
    return t, p


def purity(labels_true: np.ndarray, labels_pred: np.ndarray) -> float:
    """``(1/N) Σ_k max_j |cluster_k ∩ class_j|``.

    Args:
        labels_true: (N,) true class of each sample.
        labels_pred: (N,) predicted cluster of each sample (``-1`` noise is one more cluster).

    Returns:
        Purity in ``(0, 1]``.

    Raises:
        ValueError: not 1-D of one length, or empty.
    """
    from sklearn.metrics.cluster import contingency_matrix

    t, p = _pair(labels_true, labels_pred)
    table = contingency_matrix(t, p)  # classes × clusters
    return float(table.max(axis=0).sum() / len(t))


def clustering_scores(labels_true: np.ndarray, labels_pred: np.ndarray) -> ClusteringScores:
    """ARI, NMI and purity of a clustering (scikit-learn's ARI and arithmetic NMI).

    Args:
        labels_true: (N,) true class of each sample.
        labels_pred: (N,) predicted cluster of each sample (``-1`` noise is one more cluster).

    Returns:
        :class:`ClusteringScores`.

    Raises:
        ValueError: not 1-D of one length, or empty.
    """
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    t, p = _pair(labels_true, labels_pred)
    return ClusteringScores(
        float(adjusted_rand_score(t, p)),
        float(normalized_mutual_info_score(t, p)),
        purity(t, p),
        int(len(np.unique(p))),
        int(len(np.unique(t))),
    )
