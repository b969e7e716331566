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

from ._chunked import DEFAULT_MEMORY_MB, check_embeddings, check_labels, check_metric
from .neighbours import knn
from .thresholds import accepted, detection_rates, threshold_at_far


@dataclass
class OpenSetThreshold:
    """Acceptance threshold on the nearest-gallery distance, fitted on validation probes.

    Made by :func:`fit_openset_threshold`; the ``*_val`` fields are measured on the same
    validation probes the threshold was chosen on (report on test probes with
    :func:`evaluate_openset`).

    Attributes:
        value: τ, the largest nearest-gallery distance still accepted (``s ≤ τ``); ``+inf``
            when every probe may be accepted.
        target_far: the false-accept rate asked for, in ``[0, 1]``.
        far_val: fraction of unknown validation probes accepted at τ, in ``[0, target_far]``.
        dir_val: detection-and-identification rate of the known validation probes at τ, in ``[0, 1]``.
        metric: ``"cosine"`` or ``"l2"``, the distance τ applies to.
    """

    value: float
    target_far: float
    far_val: float
    dir_val: float
    metric: str


@dataclass
class OpenSetReport:
    """DIR, FAR and accuracies of an :class:`OpenSetThreshold` on test probes.

    Rates are NaN where the set they divide by is empty (no known or no unknown probe).

    Attributes:
        threshold: the :class:`OpenSetThreshold` applied (fitted on validation probes).
        dir: known probes accepted with the right nearest label / known probes, in ``[0, 1]``.
        far: unknown probes accepted / unknown probes, in ``[0, 1]``.
        unknown_accuracy: ``1 − far``, unknown probes correctly answered "unknown".
        known_rejection_rate: known probes rejected (nearest distance ``> τ``) / known probes.
        accuracy: fraction of all probes answered right: a known probe accepted with the
            right label, or an unknown probe rejected.
        n_known: test probes whose label is in the gallery.
        n_unknown: test probes whose label is not in the gallery.
    """

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
    """DIR and FAR across thresholds (descriptive; no threshold is chosen).

    Attributes:
        thresholds: (T,) ascending distinct nearest-gallery distances of the probes; a probe
            is accepted at ``t`` when its distance ``≤ t``.
        dir: (T,) detection-and-identification rate of the known probes at each threshold, in ``[0, 1]``.
        far: (T,) fraction of unknown probes accepted at each threshold, in ``[0, 1]``.
    """

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
    """Each probe's nearest gallery item (:func:`itemrec.evaluation.knn`, ties by gallery index).

    Args:
        gallery_emb: (G, d) gallery embeddings.
        gallery_labels: (G,) int class ids of the gallery.
        probe_emb: (P, d) probe embeddings.
        probe_labels: (P,) int class ids of the probes (classes absent from the gallery are unknown).
        metric: ``"cosine"`` or ``"l2"``.
        memory_mb: budget in MiB.

    Returns:
        ``(distance (P,) float64, correct (P,) bool: the nearest item has the probe's label,
        known (P,) bool: the probe's label is in the gallery)``.

    Raises:
        ValueError: embeddings not 2-D and finite, labels not 1-D ints of matching length,
            gallery and probe dimensions differ, or bad metric.
    """
    g = check_embeddings(gallery_emb, "gallery embeddings")
    gl = check_labels(gallery_labels, len(g), "gallery labels")
    p = check_embeddings(probe_emb, "probe embeddings")
    pl = check_labels(probe_labels, len(p), "probe labels")
    metric = check_metric(metric)
    d, idx = knn(p, g, 1, metric, memory_mb=memory_mb)
    known = np.isin(pl, gl)
    return d[:, 0], gl[idx[:, 0]] == pl, known


def _rates(dist, correct, known, tau):
    dir_, far = detection_rates(dist[known], correct[known], dist[~known], tau, "below")
    return dir_, far, accepted(dist, tau, "below")


def fit_openset_threshold(
    gallery_emb: np.ndarray,
    gallery_labels: np.ndarray,
    val_probe_emb: np.ndarray,
    val_probe_labels: np.ndarray,
    target_far: float = 0.05,
    metric: str = "cosine",
) -> OpenSetThreshold:
    """τ with FAR ≤ ``target_far`` on the validation probes (accept a probe when ``s ≤ τ``).

    The rule of :func:`itemrec.evaluation.thresholds.threshold_at_far` on the unknown probes'
    nearest distances: with ``s_1 ≤ s_2 ≤ …`` and ``m = ⌊target_far · n_unknown⌋``,
    τ = ``(s_m + s_{m+1})/2`` (the next float below ``s_{m+1}`` when tied or ``m = 0``;
    ``+∞`` when ``m = n_unknown``).

    Args:
        gallery_emb: (G, d) gallery embeddings.
        gallery_labels: (G,) int class ids of the gallery.
        val_probe_emb: (P, d) validation probe embeddings.
        val_probe_labels: (P,) int class ids, of both known (in the gallery) and unknown classes.
        target_far: in ``[0, 1]``.
        metric: ``"cosine"`` or ``"l2"``.

    Returns:
        :class:`OpenSetThreshold` with its FAR and DIR on the validation probes.

    Raises:
        ValueError: ``target_far`` outside ``[0, 1]``, the probes lack known or unknown
            classes, or bad arrays or metric (:func:`nearest_gallery`).
    """
    if not 0 <= target_far <= 1:
        raise ValueError(f"target_far must lie in [0, 1]; got {target_far}")
    dist, correct, known = nearest_gallery(gallery_emb, gallery_labels, val_probe_emb, val_probe_labels, metric)
    if known.all() or not known.any():
        raise ValueError("validation probes must include known and unknown classes")
    tau = threshold_at_far(dist[~known], target_far, "below")
    dir_, far, _ = _rates(dist, correct, known, tau)
    return OpenSetThreshold(float(tau), target_far, float(far), float(dir_), metric)


def evaluate_openset(
    threshold: OpenSetThreshold,
    gallery_emb: np.ndarray,
    gallery_labels: np.ndarray,
    probe_emb: np.ndarray,
    probe_labels: np.ndarray,
) -> OpenSetReport:
    """Report a validation-fitted threshold on test probes (known and unknown classes).

    Args:
        threshold: from :func:`fit_openset_threshold` (a probe is accepted when its nearest
            distance is ``≤ threshold.value``); its metric is used.
        gallery_emb: (G, d) gallery embeddings.
        gallery_labels: (G,) int class ids of the gallery.
        probe_emb: (P, d) test probe embeddings.
        probe_labels: (P,) int class ids of the probes (known and unknown classes).

    Returns:
        :class:`OpenSetReport` (NaN rates where the known or unknown set is empty).

    Raises:
        TypeError: ``threshold`` is not an :class:`OpenSetThreshold`.
        ValueError: bad arrays.
    """
    if not isinstance(threshold, OpenSetThreshold):
        raise TypeError("threshold must be an OpenSetThreshold from fit_openset_threshold(validation probes)")
    dist, correct, known = nearest_gallery(gallery_emb, gallery_labels, probe_emb, probe_labels, threshold.metric)
    dir_, far, acc = _rates(dist, correct, known, threshold.value)
    n_known, n_unknown = int(known.sum()), int((~known).sum())
    right = (known & acc & correct) | (~known & ~acc)
    return OpenSetReport(
        threshold,
        float(dir_),
        float(far),
        float(1 - far) if n_unknown else float("nan"),
        float((known & ~acc).sum() / n_known) if n_known else float("nan"),
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
    """DIR and FAR at every distinct nearest distance of the probes (exact step curve).

    Args:
        gallery_emb: (G, d) gallery embeddings.
        gallery_labels: (G,) int class ids of the gallery.
        probe_emb: (P, d) probe embeddings.
        probe_labels: (P,) int class ids, of both known and unknown classes.
        metric: ``"cosine"`` or ``"l2"``.

    Returns:
        :class:`DirFarCurve`, thresholds ascending (accept ``s ≤ t``).

    Raises:
        ValueError: the probes lack known or unknown classes, or bad arrays or metric.
    """
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
