"""Gini measures of a probability vector, and rejecting inputs by a Gini threshold.

The "not a digit" experiment rejects an input whose softmax output is too spread
out. Its measure is the **Gini impurity** (Breiman et al., *Classification and
Regression Trees*, 1984): ``G(p) = 1 − Σ_i p_i²``, 0 for a one-hot vector and
``1 − 1/C`` for the uniform one. :func:`gini_impurity` is that measure.

:func:`lorenz_gini` is the other "Gini coefficient" (of inequality, from the
Lorenz curve): ``Σ_i Σ_j |p_i − p_j| / (2 C Σ_i p_i)``, high for a peaked vector;
it is provided for comparison only.

Rejection: reject when ``G(p) ≥ τ``. τ is fitted on in-distribution validation
outputs to reject a target fraction of them (:func:`fit_gini_threshold`) and
reported on in- and out-of-distribution test outputs (:func:`gini_rejection_report`),
with the ROC of the impurity as an out-of-distribution score.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _probs(p: np.ndarray, name: str = "probabilities", atol: float = 1e-4) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    if p.ndim not in (1, 2):
        raise ValueError(f"{name} must be 1-D or 2-D (n, classes); got shape {p.shape}")
    if np.any(p < -atol) or not np.all(np.isfinite(p)):
        raise ValueError(f"{name} hold negative or non-finite values")
    sums = p.sum(axis=-1)
    if np.any(np.abs(sums - 1) > atol):
        raise ValueError(f"{name} must sum to 1 along the last axis (softmax outputs); sums range {sums.min():.4g}..{sums.max():.4g}")
    return p


def gini_impurity(p: np.ndarray) -> np.ndarray:
    """``G(p) = 1 − Σ_i p_i²`` along the last axis (a float for one vector).

    Args:
        p: (..., C) probabilities, each row summing to 1.

    Returns:
        (...) impurities in ``[0, 1 − 1/C]``.

    Raises:
        ValueError: negative, non-finite or non-normalised rows.
    """
    p = _probs(p)
    return 1.0 - np.sum(p * p, axis=-1)


def lorenz_gini(p: np.ndarray) -> np.ndarray:
    """Lorenz-curve Gini coefficient ``Σ_i Σ_j |p_i − p_j| / (2 C Σ_i p_i)`` along the last axis.

    Args:
        p: (..., C) probabilities, each row summing to 1.

    Returns:
        (...) coefficients in ``[0, 1 − 1/C]``.

    Raises:
        ValueError: negative, non-finite or non-normalised rows.
    """
    p = _probs(p)
    c = p.shape[-1]
    diff = np.abs(p[..., :, None] - p[..., None, :]).sum(axis=(-1, -2))
    return diff / (2 * c * p.sum(axis=-1))


@dataclass
class GiniThreshold:
    """Reject when Gini impurity ``≥ value``; fitted on in-distribution validation outputs.

    Made by :func:`fit_gini_threshold`.

    Attributes:
        value: τ, an impurity in ``[0, 1 − 1/C]`` (or just past it; ``−inf`` when every output
            may be rejected); an output with ``G(p) ≥ τ`` is rejected.
        target_in_rejection: the fraction of in-distribution outputs allowed to be rejected, in ``[0, 1)``.
        in_rejection_val: fraction of the validation outputs rejected at τ, in ``[0, target_in_rejection]``.
    """

    value: float
    target_in_rejection: float
    in_rejection_val: float


@dataclass
class RejectionReport:
    """Rejection rates of a fitted threshold and the ROC of the impurity as an OOD score.

    Made by :func:`gini_rejection_report`. The ROC treats out-of-distribution outputs as the
    positives and the impurity as the score (higher = more likely out of distribution).

    Attributes:
        threshold: the :class:`GiniThreshold` applied (fitted on validation outputs).
        in_rejection_rate: fraction of in-distribution test outputs rejected (``G ≥ τ``), in ``[0, 1]``.
        out_rejection_rate: fraction of out-of-distribution test outputs rejected, in ``[0, 1]``.
        auc: area under the ROC, in ``[0, 1]`` (``sklearn.metrics.roc_auc_score``; 0.5 = chance).
        fpr: (K,) in-distribution outputs rejected at each ROC threshold (false-positive rate).
        tpr: (K,) out-of-distribution outputs rejected at each ROC threshold (true-positive rate).
        roc_thresholds: (K,) decreasing impurity thresholds of ``sklearn.metrics.roc_curve``
            (rejecting ``G ≥ t``; the first is above every score).
    """

    threshold: GiniThreshold
    in_rejection_rate: float
    out_rejection_rate: float
    auc: float
    fpr: np.ndarray
    tpr: np.ndarray
    roc_thresholds: np.ndarray


def fit_gini_threshold(in_val_probs: np.ndarray, target_in_rejection: float = 0.05) -> GiniThreshold:
    """τ that rejects at most ``target_in_rejection`` of the in-distribution validation outputs.

    The one threshold rule of :func:`itemrec.evaluation.thresholds.threshold_at_far`, with the
    impurities as scores and rejection as the "accept" (``G ≥ τ`` is rejected): with impurities
    sorted descending ``g_1 ≥ g_2 ≥ …`` and ``k = ⌊target · n⌋``, τ = ``(g_k + g_{k+1})/2`` (the
    next float above ``g_{k+1}`` when tied or ``k = 0``), so at most k are rejected.

    Args:
        in_val_probs: (n, C) softmax outputs on in-distribution validation images.
        target_in_rejection: in ``[0, 1)``.

    Returns:
        :class:`GiniThreshold` with the rejection rate it has on the validation outputs.

    Raises:
        ValueError: ``target_in_rejection`` outside ``[0, 1)``, or rows that are not probabilities.
    """
    from .thresholds import accepted, threshold_at_far

    if not 0 <= target_in_rejection < 1:
        raise ValueError(f"target_in_rejection must lie in [0, 1); got {target_in_rejection}")
    g = np.atleast_1d(gini_impurity(in_val_probs))
    tau = threshold_at_far(g, target_in_rejection, accept="above")
    return GiniThreshold(float(tau), target_in_rejection, float(np.mean(accepted(g, tau, "above"))))


def gini_rejection_report(threshold: GiniThreshold, in_probs: np.ndarray, out_probs: np.ndarray) -> RejectionReport:
    """Rejection rates (``G ≥ τ`` rejected) on in-/out-of-distribution test outputs, and ROC/AUC (positive = out).

    Args:
        threshold: from :func:`fit_gini_threshold` on validation outputs.
        in_probs: (n, C) in-distribution test softmax outputs.
        out_probs: (m, C) out-of-distribution test softmax outputs.

    Returns:
        :class:`RejectionReport`.

    Raises:
        ValueError: rows that are not probabilities.
    """
    from sklearn.metrics import roc_auc_score, roc_curve

    from .thresholds import accepted

    gi = np.atleast_1d(gini_impurity(in_probs))
    go = np.atleast_1d(gini_impurity(out_probs))
    y = np.r_[np.zeros(len(gi)), np.ones(len(go))]
    s = np.r_[gi, go]
    fpr, tpr, thr = roc_curve(y, s)
    return RejectionReport(
        threshold,
        float(np.mean(accepted(gi, threshold.value, "above"))),
        float(np.mean(accepted(go, threshold.value, "above"))),
        float(roc_auc_score(y, s)),
        fpr,
        tpr,
        thr,
    )
