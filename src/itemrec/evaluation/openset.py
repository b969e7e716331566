"""Open-set identification: detection-and-identification rate (DIR) at a false-accept rate.

Protocol of Phillips, Grother & Micheals, "Evaluation Methods in Face Recognition"
(Handbook of Face Recognition, 2011), rank 1. A gallery holds known classes;
probes come from known classes (label in the gallery) and unknown ones (label not
in the gallery). Each probe is matched to its nearest gallery item at distance s
and accepted when ``s ≤ τ``:

* ``DIR(τ) = |{known probes: accepted and nearest label correct}| / |known probes|``
* ``FAR(τ) = |{unknown probes accepted}| / |unknown probes|``
* unknown accuracy ``= 1 − FAR`` (unknown probes correctly answered "unknown").

τ is chosen on a validation probe set (:func:`fit_openset_threshold`) and reported
on a test probe set (:func:`evaluate_openset`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._chunked import DEFAULT_MEMORY_MB, check_embeddings, check_labels, check_metric, knn


@dataclass
class OpenSetThreshold:
    """Acceptance threshold on the nearest-gallery distance, fitted on validation probes."""

    value: float
    target_far: float
    far_val: float
    dir_val: float
    metric: str


@dataclass
class OpenSetReport:
    """DIR, FAR and accuracies of an :class:`OpenSetThreshold` on test probes."""

    threshold: OpenSetThreshold
    dir: float
    far: float
    unknown_accuracy: float
    known_rejection_rate: float
    accuracy: float
    n_known: int
    n_unknown: int


@dataclass
class DirFarCurve:
    """DIR and FAR across thresholds (descriptive; no threshold is chosen)."""

    thresholds: np.ndarray
    dir: np.ndarray
    far: np.ndarray


def nearest_gallery(
    gallery_emb: np.ndarray,
    gallery_labels: np.ndarray,
    probe_emb: np.ndarray,
    probe_labels: np.ndarray,
    metric: str = "cosine",
    memory_mb: float = DEFAULT_MEMORY_MB,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(nearest distance, correct identity, known)`` per probe."""
    g = check_embeddings(gallery_emb, "gallery embeddings")
    gl = check_labels(gallery_labels, len(g), "gallery labels")
    p = check_embeddings(probe_emb, "probe embeddings")
    pl = check_labels(probe_labels, len(p), "probe labels")
    check_metric(metric)
    d, idx = knn(p, g, 1, metric, memory_mb=memory_mb)
    known = np.isin(pl, gl)
    return d[:, 0].astype(np.float64), gl[idx[:, 0]] == pl, known


def _rates(dist, correct, known, tau):
    accepted = dist <= tau
    n_known, n_unknown = int(known.sum()), int((~known).sum())
    dir_ = (accepted & correct & known).sum() / n_known if n_known else np.nan
    far = (accepted & ~known).sum() / n_unknown if n_unknown else np.nan
    return dir_, far, accepted


def fit_openset_threshold(
    gallery_emb: np.ndarray,
    gallery_labels: np.ndarray,
    val_probe_emb: np.ndarray,
    val_probe_labels: np.ndarray,
    target_far: float = 0.05,
    metric: str = "cosine",
) -> OpenSetThreshold:
    """Largest τ with FAR ≤ ``target_far`` on the validation probes.

    With ``s_1 ≤ s_2 ≤ …`` the unknown probes' nearest distances and
    ``k = ⌊target_far · n_unknown⌋``: τ = ``(s_k + s_{k+1})/2`` (just below
    ``s_{k+1}`` when tied or ``k = 0``; ``+∞`` when ``k = n_unknown``).
    """
    if not 0 <= target_far <= 1:
        raise ValueError(f"target_far must lie in [0, 1]; got {target_far}")
    dist, correct, known = nearest_gallery(gallery_emb, gallery_labels, val_probe_emb, val_probe_labels, metric)
    unknown = np.sort(dist[~known])
    if len(unknown) == 0 or not known.any():
        raise ValueError("validation probes must include known and unknown classes")
    k = int(np.floor(target_far * len(unknown)))
    if k >= len(unknown):
        tau = np.inf
    elif k >= 1 and unknown[k - 1] < unknown[k]:
        tau = (unknown[k - 1] + unknown[k]) / 2
    else:
        tau = float(np.nextafter(unknown[k], -np.inf))
    dir_, far, _ = _rates(dist, correct, known, tau)
    return OpenSetThreshold(float(tau), target_far, float(far), float(dir_), metric)


def evaluate_openset(
    threshold: OpenSetThreshold,
    gallery_emb: np.ndarray,
    gallery_labels: np.ndarray,
    probe_emb: np.ndarray,
    probe_labels: np.ndarray,
) -> OpenSetReport:
    """Report a validation-fitted threshold on test probes (known and unknown classes)."""
    if not isinstance(threshold, OpenSetThreshold):
        raise TypeError("threshold must be an OpenSetThreshold from fit_openset_threshold(validation probes)")
    dist, correct, known = nearest_gallery(gallery_emb, gallery_labels, probe_emb, probe_labels, threshold.metric)
    dir_, far, accepted = _rates(dist, correct, known, threshold.value)
    n_known, n_unknown = int(known.sum()), int((~known).sum())
    right = (known & accepted & correct) | (~known & ~accepted)
    return OpenSetReport(
        threshold,
        float(dir_),
        float(far),
        float(1 - far) if n_unknown else float("nan"),
        float((known & ~accepted).sum() / n_known) if n_known else float("nan"),
        float(right.mean()),
        n_known,
        n_unknown,
    )


def dir_far_curve(
    gallery_emb: np.ndarray,
    gallery_labels: np.ndarray,
    probe_emb: np.ndarray,
    probe_labels: np.ndarray,
    metric: str = "cosine",
) -> DirFarCurve:
    """DIR and FAR at every distinct nearest distance of the probes (exact step curve)."""
    dist, correct, known = nearest_gallery(gallery_emb, gallery_labels, probe_emb, probe_labels, metric)
    if not known.any() or known.all():
        raise ValueError("probes must include known and unknown classes")
    t = np.unique(dist)
    order = np.argsort(dist, kind="stable")
    ds = dist[order]
    hit = np.cumsum((correct & known)[order])
    fa = np.cumsum((~known)[order])
    last = np.searchsorted(ds, t, side="right") - 1
    return DirFarCurve(t, hit[last] / known.sum(), fa[last] / (~known).sum())
