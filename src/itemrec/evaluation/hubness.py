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

**One convention** (this function serves the evaluation and the gallery,
:mod:`itemrec.gallery.background`): the offset

    o(g) = β · (1 − mean_{b ∈ kNN_B(g)} D(g, b))

is *added to distances* and *subtracted from similarities*. For the cosine metric
``1 − mean D = r_B(g)``, so ``o(g) = β r_B(g)`` (≥ 0 for items near the background) and

    D(q, g) + o(g) = 1 − (cos(q, g) − β r_B(g)),

one minus the gallery's corrected score: both rank as CSLS does. For the L2 metric the
same formula applies to L2 distances (the constant β changes no rank). The offsets
shift distances, so thresholds fitted without them do not carry over; ranks do.
"""

from __future__ import annotations

import numpy as np

from ._chunked import DEFAULT_MEMORY_MB, check_embeddings
from .neighbours import knn


def hubness_offsets(
    gallery_emb: np.ndarray,
    background_emb: np.ndarray,
    k: int = 10,
    beta: float = 0.5,
    metric: str = "cosine",
    memory_mb: float = DEFAULT_MEMORY_MB,
) -> np.ndarray:
    """``o(g) = β · (1 − (1/k) Σ_{b ∈ kNN_B(g)} D(g, b))`` per gallery item (module docstring).

    Pass the result as ``gallery_offsets`` to :func:`itemrec.evaluation.cmc`,
    :func:`~itemrec.evaluation.cmc_representative`, :func:`~itemrec.evaluation.class_ranks` or
    :func:`~itemrec.evaluation.per_class_ranks` (added to distances); the gallery subtracts it
    from cosine similarities.

    Args:
        gallery_emb: (G, d) gallery embeddings.
        background_emb: (B, d) background embeddings (never the queries).
        k: background neighbours per gallery item, capped at B.
        beta: weight β ≥ 0 (0.5: the CSLS ranking).
        metric: ``"cosine"`` or ``"l2"``.
        memory_mb: budget in MiB for the neighbour search.

    Returns:
        (G,) float64 offsets.

    Raises:
        ValueError: ``k`` not a positive integer, ``beta`` negative or not finite, bad arrays
            or metric.
    """
    g = check_embeddings(gallery_emb, "gallery embeddings")
    b = check_embeddings(background_emb, "background embeddings")
    if isinstance(k, bool) or int(k) != k or k < 1:
        raise ValueError(f"k must be a positive integer; got {k!r}")
    if not np.isfinite(beta) or beta < 0:
        raise ValueError(f"beta must be a finite number ≥ 0; got {beta!r}")
    dist, _ = knn(g, b, min(int(k), len(b)), metric, memory_mb=memory_mb)
    return float(beta) * (1.0 - dist.mean(axis=1))
