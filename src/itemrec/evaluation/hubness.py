"""Hubness correction: rank down catalogue items that are near every photo.

In high dimensions a few gallery items become *hubs*, among the nearest neighbours
of many queries (Radovanović, Nanopoulos & Ivanović, "Hubs in space", JMLR 2010).
Across domains it is worse: a catalogue image that looks more like a shelf photo
than the others is the top match for photos of many products. CSLS, cross-domain
similarity local scaling (Conneau et al., "Word translation without parallel
data", ICLR 2018), scores a query ``q`` against a gallery item ``g`` by

    CSLS(q, g) = 2 cos(q, g) − r_B(g) − r_G(q),

with ``r_B(g)`` the mean cosine of ``g`` to its ``k`` nearest neighbours in a set
``B``. ``r_G(q)`` is the same for every gallery item, so ranking by
``cos(q, g) − β r_B(g)`` (β = 1/2: the CSLS ranking) needs one number per gallery
item, computed once at enrolment from a fixed *background* set ``B``: photos of
other products, never the queries, so a query is scored without seeing the others.

In distances (``D = 1 − cos`` for the cosine metric) the correction is the offset
``o(g) = −β · mean_k D(g, B)`` added to every distance to ``g``: for the cosine
metric ``D(q, g) + o(g) = (1 − β) − (cos(q, g) − β r_B(g))`` ranks as CSLS does;
for the L2 metrics it is the same rule on those distances. The offsets shift
distances, so thresholds fitted without them do not carry over; ranks do.
"""

from __future__ import annotations

import numpy as np

from ._chunked import DEFAULT_MEMORY_MB, check_embeddings, knn


def hubness_offsets(
    gallery_emb: np.ndarray,
    background_emb: np.ndarray,
    k: int = 10,
    beta: float = 0.5,
    metric: str = "cosine",
    memory_mb: float = DEFAULT_MEMORY_MB,
) -> np.ndarray:
    """``o(g) = −β · (1/k) Σ_{b ∈ kNN_B(g)} D(g, b)`` per gallery item (see the module docstring).

    Pass the result as ``gallery_offsets`` to :func:`itemrec.evaluation.cmc_representative`
    or :func:`itemrec.evaluation.per_class_ranks`. ``k`` is capped at the background size.
    """
    g = check_embeddings(gallery_emb, "gallery embeddings")
    b = check_embeddings(background_emb, "background embeddings")
    if isinstance(k, bool) or int(k) != k or k < 1:
        raise ValueError(f"k must be a positive integer; got {k!r}")
    if not np.isfinite(beta) or beta < 0:
        raise ValueError(f"beta must be a finite number ≥ 0; got {beta!r}")
    dist, _ = knn(g, b, min(int(k), len(b)), metric, memory_mb=memory_mb)
    return -float(beta) * dist.astype(np.float64).mean(axis=1)
