"""Verification: VAL/FAR over all same/different pairs, thresholds, ROC and AUC.

FaceNet (Schroff, Kalenichenko & Philbin, CVPR 2015), for a distance threshold d
over all unordered pairs ``{i, j}``, ``i ≠ j``, of one embedding set:

* ``VAL(d) = |{same-label pairs with D ≤ d}| / |same-label pairs|``
* ``FAR(d) = |{different-label pairs with D ≤ d}| / |different-label pairs|``

The ROC curve is (FAR, VAL) swept over d, AUC its area.

A threshold is *chosen* on a validation split with :func:`fit_threshold` and
*reported* on the test split with :func:`evaluate_threshold`; no function here picks
a threshold and reports on the same arrays.

Pairs are counted exactly but never held at once: the distance matrix is computed a
block of rows at a time (upper triangle only) and each block's distances are
counted against sorted thresholds with ``searchsorted`` + ``bincount``. The FAR
threshold follows the one rule of :mod:`itemrec.evaluation.thresholds` on two exact
order statistics of the different-pair distances, found in two passes (a 4096-bin
histogram locates their bins, a second pass collects those bins and sorts them).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._chunked import DEFAULT_MEMORY_MB, check_embeddings, check_labels, check_metric, upper_triangle_blocks
from .thresholds import allowed_accepts, threshold_between

N_GRID = 4096


@dataclass
class Threshold:
    """A distance threshold fitted on validation pairs (accept a pair when ``D ≤ value``).

    Made by :func:`fit_threshold`; the ``*_val`` fields describe the validation split the
    threshold was chosen on, not a held-out result (use :func:`evaluate_threshold` for that).

    Attributes:
        value: the distance threshold ``t`` (``+inf`` when every pair may be accepted); a pair
            is accepted when its distance ``D ≤ t``. Cosine distances lie in ``[0, 2]``.
        target_far: the false-accept rate asked for, in ``[0, 1)``.
        far_val: FAR at ``value`` on the validation pairs, in ``[0, target_far]``.
        val_val: VAL (true-accept rate) at ``value`` on the validation pairs, in ``[0, 1]``.
        n_same_val: same-label validation pairs ``i < j``.
        n_diff_val: different-label validation pairs ``i < j``.
        metric: ``"cosine"`` or ``"l2"``, the distance the threshold applies to.
    """

    value: float
    target_far: float
    far_val: float
    val_val: float
    n_same_val: int
    n_diff_val: int
    metric: str


@dataclass
class VerificationReport:
    """VAL and FAR of a fitted threshold on a (test) split (Schroff et al. 2015).

    Attributes:
        threshold: the :class:`Threshold` that was applied (fitted on another split).
        val: ``true_accepts / n_same`` in ``[0, 1]`` (NaN when there is no same-label pair).
        far: ``false_accepts / n_diff`` in ``[0, 1]`` (NaN when there is no different-label pair).
        true_accepts: same-label pairs with ``D ≤ threshold.value``.
        false_accepts: different-label pairs with ``D ≤ threshold.value``.
        n_same: same-label pairs ``i < j`` of the split.
        n_diff: different-label pairs ``i < j`` of the split.
    """

    threshold: Threshold
    val: float
    far: float
    true_accepts: int
    false_accepts: int
    n_same: int
    n_diff: int

    @property
    def accuracy(self) -> float:
        """Pair accuracy ``(TA + TR) / all pairs``."""
        true_rejects = self.n_diff - self.false_accepts
        return (self.true_accepts + true_rejects) / max(1, self.n_same + self.n_diff)


@dataclass
class ValFarCurve:
    """VAL and FAR at each threshold (a descriptive sweep; no threshold is chosen).

    Attributes:
        thresholds: (T,) ascending distance thresholds.
        val: (T,) VAL at each threshold: fraction of same-label pairs with ``D ≤ t``, in ``[0, 1]``.
        far: (T,) FAR at each threshold: fraction of different-label pairs with ``D ≤ t``, in ``[0, 1]``.
        n_same: same-label pairs ``i < j`` counted.
        n_diff: different-label pairs ``i < j`` counted.
    """

    thresholds: np.ndarray
    val: np.ndarray
    far: np.ndarray
    n_same: int
    n_diff: int

    @property
    def auc(self) -> float:
        """Area under the ROC (FAR, VAL), trapezoids between the sweep's points, from (0,0) to (1,1)."""
        far = np.concatenate([[0.0], self.far, [1.0]])
        val = np.concatenate([[0.0], self.val, [1.0]])
        return float(np.sum(np.diff(far) * (val[1:] + val[:-1]) / 2))


def _pair_blocks(emb: np.ndarray, labels: np.ndarray, metric: str, memory_mb: float):
    """Yield (same-pair distances, different-pair distances) of each block, pairs i < j only."""
    for start, stop, block in upper_triangle_blocks(emb, metric, memory_mb):
        upper = np.arange(block.shape[1])[None, :] > np.arange(stop - start)[:, None]
        same = labels[start:stop, None] == labels[None, start:]
        yield block[upper & same], block[upper & ~same]


def _checked(emb, labels, metric):
    emb = check_embeddings(emb, "embeddings")
    labels = check_labels(labels, len(emb), "labels")
    metric = check_metric(metric)
    if len(emb) < 2:
        raise ValueError("verification needs at least two embeddings")
    return emb, labels, metric


def pair_counts(
    emb: np.ndarray,
    labels: np.ndarray,
    thresholds: np.ndarray,
    metric: str = "cosine",
    memory_mb: float = DEFAULT_MEMORY_MB,
) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Exact pair counts at each threshold: pairs ``i < j`` with ``D ≤ t``.

    Args:
        emb: (n, d) embeddings.
        labels: (n,) int class ids.
        thresholds: (T,) ascending distance thresholds.
        metric: ``"cosine"`` or ``"l2"``.
        memory_mb: budget in MiB for the distance blocks.

    Returns:
        ``(same, diff, n_same, n_diff)``: ``same`` and ``diff`` are (T,) int64 counts of the
        same- / different-label pairs with ``D ≤ t`` at each threshold (non-decreasing);
        ``n_same`` and ``n_diff`` are the totals of each kind of pair.

    Raises:
        ValueError: fewer than two embeddings, embeddings not 2-D finite, labels not (n,)
            ints, bad metric, or thresholds not 1-D ascending.
    """
    emb, labels, metric = _checked(emb, labels, metric)
    t = np.asarray(thresholds, dtype=np.float64)
    if t.ndim != 1 or np.any(np.diff(t) < 0):
        raise ValueError("thresholds must be a 1-D ascending array")
    same_c = np.zeros(len(t) + 1, dtype=np.int64)
    diff_c = np.zeros(len(t) + 1, dtype=np.int64)
    n_same = n_diff = 0
    for ds, dd in _pair_blocks(emb, labels, metric, memory_mb):
        # index i with t[i-1] < d ≤ t[i]: d counts for thresholds i, i+1, ...
        same_c += np.bincount(np.searchsorted(t, ds, side="left"), minlength=len(t) + 1)
        diff_c += np.bincount(np.searchsorted(t, dd, side="left"), minlength=len(t) + 1)
        n_same += len(ds)
        n_diff += len(dd)
    return np.cumsum(same_c)[:-1], np.cumsum(diff_c)[:-1], n_same, n_diff


def _distance_range(emb: np.ndarray, metric: str) -> tuple[float, float]:
    if metric == "cosine":
        return -1e-6, 2.0 + 1e-6
    norm = float(np.linalg.norm(emb, axis=1).max())
    return -1e-6, 2.0 * norm * (1 + 1e-6) + 1e-6


def diff_pair_order_statistics(
    emb: np.ndarray,
    labels: np.ndarray,
    ranks: list[int],
    metric: str = "cosine",
    memory_mb: float = DEFAULT_MEMORY_MB,
) -> np.ndarray:
    """The exact ``r``-th smallest different-label pair distance for each r in ``ranks``.

    Args:
        emb: (n, d) embeddings.
        labels: (n,) int class ids.
        ranks: 1-based ranks among the different-label pairs.
        metric: ``"cosine"`` or ``"l2"``.
        memory_mb: budget in MiB.

    Returns:
        (len(ranks),) float64 distances.

    Raises:
        ValueError: ``ranks`` empty or a rank outside ``1..n_diff``; or the inputs are
            invalid (fewer than two embeddings, bad labels or metric).
        RuntimeError: the two passes saw different distances (non-deterministic BLAS).
    """
    emb, labels, metric = _checked(emb, labels, metric)
    lo, hi = _distance_range(emb, metric)
    scale = N_GRID / (hi - lo)

    def bins_of(d: np.ndarray) -> np.ndarray:
        # any deterministic binning works: pass 2 recomputes the same values and bins
        return np.clip(((d.astype(np.float64) - lo) * scale).astype(np.int64), 0, N_GRID - 1)

    hist = np.zeros(N_GRID, dtype=np.int64)
    for _, dd in _pair_blocks(emb, labels, metric, memory_mb):
        hist += np.bincount(bins_of(dd), minlength=N_GRID)
    cum = np.cumsum(hist)
    if not ranks or min(ranks) < 1 or max(ranks) > cum[-1]:
        raise ValueError(f"ranks must lie in 1..{cum[-1]} (different-label pairs)")
    bins = sorted({int(np.searchsorted(cum, r, side="left")) for r in ranks})
    collected: dict[int, list[np.ndarray]] = {b: [] for b in bins}
    for _, dd in _pair_blocks(emb, labels, metric, memory_mb):
        which = bins_of(dd)
        for b in bins:
            collected[b].append(dd[which == b])
    values = {b: np.sort(np.concatenate(collected[b])) for b in bins}
    for b in bins:
        if len(values[b]) != hist[b]:
            raise RuntimeError("distances changed between two passes (non-deterministic BLAS?); rerun")
    out = []
    for r in ranks:
        b = int(np.searchsorted(cum, r, side="left"))
        before = int(cum[b - 1]) if b > 0 else 0
        out.append(values[b][r - before - 1])
    return np.asarray(out, dtype=np.float64)


def fit_threshold(
    val_emb: np.ndarray,
    val_labels: np.ndarray,
    target_far: float = 1e-3,
    metric: str = "cosine",
    memory_mb: float = DEFAULT_MEMORY_MB,
) -> Threshold:
    """A distance threshold with FAR ≤ ``target_far`` on the validation pairs (accept ``D ≤ t``).

    The rule of :mod:`itemrec.evaluation.thresholds` on the different-label pair distances:
    with ``s_1 ≤ s_2 ≤ …`` those distances and ``m = ⌊target_far · n_diff⌋``, ``t`` is the
    midpoint ``(s_m + s_{m+1})/2`` (the next float below ``s_{m+1}`` when the two are tied or
    ``m = 0``), so exactly the pairs strictly closer than ``s_{m+1}`` are accepted. Only the
    two order statistics are found (:func:`diff_pair_order_statistics`), never all distances.

    Args:
        val_emb: (n, d) validation embeddings.
        val_labels: (n,) int class ids of ``val_emb``.
        target_far: in ``[0, 1)``.
        metric: ``"cosine"`` or ``"l2"``.
        memory_mb: budget in MiB for the distance blocks.

    Returns:
        :class:`Threshold`, with the FAR and VAL it has on the validation pairs.

    Raises:
        ValueError: ``target_far`` outside ``[0, 1)``, fewer than two embeddings, bad labels
            or metric, or no same- or no different-label pair.
    """
    if not 0 <= target_far < 1:
        raise ValueError(f"target_far must lie in [0, 1); got {target_far}")
    emb, labels, metric = _checked(val_emb, val_labels, metric)
    n = len(labels)
    n_same = int(sum(c * (c - 1) // 2 for c in np.unique(labels, return_counts=True)[1]))
    n_diff = n * (n - 1) // 2 - n_same
    if n_same == 0 or n_diff == 0:
        raise ValueError(f"validation set needs same- and different-label pairs; has {n_same} and {n_diff}")
    m = allowed_accepts(n_diff, target_far)
    if m >= n_diff:
        value = threshold_between(None, None)
    else:
        ranks = [m, m + 1] if m >= 1 else [1]
        stats = diff_pair_order_statistics(emb, labels, ranks, metric, memory_mb)
        value = threshold_between(stats[0] if m >= 1 else None, stats[-1], "below")
    same_c, diff_c, n_same, n_diff = pair_counts(emb, labels, np.array([value]), metric, memory_mb)
    return Threshold(float(value), target_far, diff_c[0] / n_diff, same_c[0] / n_same, n_same, n_diff, metric)


def evaluate_threshold(
    threshold: Threshold,
    test_emb: np.ndarray,
    test_labels: np.ndarray,
    memory_mb: float = DEFAULT_MEMORY_MB,
) -> VerificationReport:
    """VAL and FAR of a threshold fitted by :func:`fit_threshold` on another (test) split.

    Args:
        threshold: a :class:`Threshold` (its metric is used); pairs with ``D ≤ threshold.value`` are accepted.
        test_emb: (n, d) test embeddings.
        test_labels: (n,) int class ids of ``test_emb``.
        memory_mb: budget in MiB.

    Returns:
        :class:`VerificationReport` (NaN rates where a pair set is empty).

    Raises:
        TypeError: ``threshold`` is not a :class:`Threshold`.
        ValueError: fewer than two test embeddings.
    """
    if not isinstance(threshold, Threshold):
        raise TypeError("threshold must be a Threshold from fit_threshold(validation data)")
    same_c, diff_c, n_same, n_diff = pair_counts(
        test_emb, test_labels, np.array([threshold.value]), threshold.metric, memory_mb
    )
    return VerificationReport(
        threshold,
        same_c[0] / n_same if n_same else float("nan"),
        diff_c[0] / n_diff if n_diff else float("nan"),
        int(same_c[0]),
        int(diff_c[0]),
        n_same,
        n_diff,
    )


def val_at_far(
    val_emb: np.ndarray,
    val_labels: np.ndarray,
    test_emb: np.ndarray,
    test_labels: np.ndarray,
    target_far: float = 1e-3,
    metric: str = "cosine",
) -> VerificationReport:
    """VAL at a target FAR: threshold fitted on the validation split, reported on the test split.

    Args:
        val_emb, val_labels: the split the threshold is fitted on (:func:`fit_threshold`).
        test_emb, test_labels: the split it is reported on.
        target_far: in ``[0, 1)``.
        metric: ``"cosine"`` or ``"l2"``.

    Returns:
        :class:`VerificationReport`.

    Raises:
        ValueError: as :func:`fit_threshold` and :func:`evaluate_threshold`.
    """
    return evaluate_threshold(fit_threshold(val_emb, val_labels, target_far, metric), test_emb, test_labels)


def val_far_curve(
    emb: np.ndarray,
    labels: np.ndarray,
    thresholds: np.ndarray | int = 512,
    metric: str = "cosine",
    memory_mb: float = DEFAULT_MEMORY_MB,
) -> ValFarCurve:
    """VAL(d) and FAR(d) for a sweep of thresholds (an int: that many evenly spaced over the range).

    The AUC of the curve is exact when ``thresholds`` holds every distinct pair
    distance; on a grid it is the trapezoid approximation at the grid's points.

    Args:
        emb: (n, d) embeddings.
        labels: (n,) int class ids.
        thresholds: an int (a grid over the distance range) or the thresholds themselves.
        metric: ``"cosine"`` or ``"l2"``.
        memory_mb: budget in MiB.

    Returns:
        :class:`ValFarCurve`.

    Raises:
        ValueError: fewer than two embeddings, or no same- or no different-label pair.
    """
    emb, labels, metric = _checked(emb, labels, metric)
    if isinstance(thresholds, (int, np.integer)):
        lo, hi = _distance_range(emb, metric)
        t = np.linspace(max(lo, 0.0), hi, int(thresholds))
    else:
        t = np.sort(np.asarray(thresholds, dtype=np.float64))
    same_c, diff_c, n_same, n_diff = pair_counts(emb, labels, t, metric, memory_mb)
    if n_same == 0 or n_diff == 0:
        raise ValueError(f"need same- and different-label pairs; have {n_same} and {n_diff}")
    return ValFarCurve(t, same_c / n_same, diff_c / n_diff, n_same, n_diff)
