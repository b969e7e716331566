"""VAL/FAR, thresholds, ROC: hand-worked pairs and a brute-force pair loop."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from itemrec.evaluation import (
    Threshold,
    evaluate_threshold,
    fit_threshold,
    pair_counts,
    val_at_far,
    val_far_curve,
)
from itemrec.evaluation._chunked import pairwise_distances
from itemrec.evaluation.verification import diff_pair_order_statistics


def clustered(n_classes=5, per_class=8, dim=6, seed=0, spread=1.0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, dim))
    labels = np.repeat(np.arange(n_classes), per_class)
    return centres[labels] + spread * rng.normal(size=(len(labels), dim)), labels


def brute_pairs(x, y):
    same, diff = [], []
    for i, j in itertools.combinations(range(len(x)), 2):
        d = float(np.linalg.norm(x[i] - x[j]))
        (same if y[i] == y[j] else diff).append(d)
    return np.array(same), np.array(diff)


def test_pair_counts_hand_worked():
    # points 0, 1, 3, 6 on a line, labels A A B B
    # same pairs: (0,1) d=1, (3,6) d=3 ; diff pairs: (0,3)=3 (0,6)=6 (1,3)=2 (1,6)=5
    x = np.array([[0.0], [1.0], [3.0], [6.0]])
    y = np.array([0, 0, 1, 1])
    same, diff, n_same, n_diff = pair_counts(x, y, np.array([0.5, 2.0, 3.0, 10.0]), metric="l2")
    assert (n_same, n_diff) == (2, 4)
    # t=0.5: none; t=2: same {1}, diff {2}; t=3: same {1,3}, diff {2,3}; t=10: all
    assert same.tolist() == [0, 1, 2, 2]
    assert diff.tolist() == [0, 1, 2, 4]


def test_pair_counts_match_brute_force_across_blocks():
    x, y = clustered(seed=1)
    same, diff = brute_pairs(x, y)
    # thresholds halfway between consecutive distinct distances (no float ties with a pair)
    u = np.unique(np.r_[same, diff])
    t = ((u[:-1] + u[1:]) / 2)[[0, 10, 50, 200, 500, -1]]
    got = pair_counts(x, y, t, metric="l2", memory_mb=0.001)
    assert got[2] == len(same) and got[3] == len(diff)
    np.testing.assert_array_equal(got[0], [(same <= v).sum() for v in t])
    np.testing.assert_array_equal(got[1], [(diff <= v).sum() for v in t])


def test_order_statistics_exact():
    x, y = clustered(seed=2)
    _, diff = brute_pairs(x, y)
    s = np.sort(diff)
    ranks = [1, 7, len(diff) // 2, len(diff)]
    got = diff_pair_order_statistics(x, y, ranks, metric="l2", memory_mb=0.001)
    np.testing.assert_allclose(got, s[np.array(ranks) - 1], rtol=1e-12)


@pytest.mark.parametrize("target", [0.0, 0.01, 0.1, 0.3])
def test_fit_threshold_brute_force(target):
    x, y = clustered(seed=3)
    same, diff = brute_pairs(x, y)
    th = fit_threshold(x, y, target, metric="l2")
    far = (diff <= th.value).mean()
    assert far <= target + 1e-12
    assert th.far_val == pytest.approx(far) and th.val_val == pytest.approx((same <= th.value).mean())
    # largest such threshold: accepting the next different pair would exceed the target
    nxt = np.sort(diff)[(diff <= th.value).sum()]
    assert (diff <= nxt).mean() > target
    assert th.n_same_val == len(same) and th.n_diff_val == len(diff)


def test_threshold_fitted_on_val_reported_on_test():
    x, y = clustered(n_classes=10, per_class=8, seed=4)
    val = y < 5
    th = fit_threshold(x[val], y[val], 0.05, metric="cosine")
    rep = evaluate_threshold(th, x[~val], y[~val])
    # brute-force report on the test half with the val threshold
    xt, yt = x[~val], y[~val]
    xn = xt / np.linalg.norm(xt, axis=1, keepdims=True)
    ta = fa = ns = nd = 0
    for i, j in itertools.combinations(range(len(xt)), 2):
        d = 1 - xn[i] @ xn[j]
        if yt[i] == yt[j]:
            ns += 1
            ta += d <= th.value
        else:
            nd += 1
            fa += d <= th.value
    assert (rep.true_accepts, rep.false_accepts, rep.n_same, rep.n_diff) == (ta, fa, ns, nd)
    assert rep.val == pytest.approx(ta / ns) and rep.far == pytest.approx(fa / nd)
    assert rep.accuracy == pytest.approx((ta + nd - fa) / (ns + nd))
    assert val_at_far(x[val], y[val], x[~val], y[~val], 0.05).val == pytest.approx(rep.val)
    with pytest.raises(TypeError, match="fit_threshold"):
        evaluate_threshold(0.5, xt, yt)


def test_curve_and_auc_against_sklearn():
    from sklearn.metrics import roc_auc_score

    x, y = clustered(seed=5, spread=1.5)
    # the engine's own pair distances (brute_pairs may differ in the last bit)
    d = pairwise_distances(x, x, "l2")
    iu = np.triu_indices(len(x), 1)
    is_same = (y[:, None] == y[None, :])[iu]
    same, diff = d[iu][is_same], d[iu][~is_same]
    # every distinct distance as threshold -> the exact ROC; AUC of "similar" = -distance
    t = np.unique(np.r_[same, diff])
    curve = val_far_curve(x, y, t, metric="l2")
    want = roc_auc_score(np.r_[np.ones(len(same)), np.zeros(len(diff))], -np.r_[same, diff])
    assert curve.auc == pytest.approx(want, abs=1e-12)
    assert np.all(np.diff(curve.val) >= 0) and curve.val[-1] == 1 and curve.far[-1] == 1
    grid = val_far_curve(x, y, 200, metric="l2")
    assert grid.auc == pytest.approx(want, abs=0.02)


def test_verification_errors():
    x = np.zeros((3, 2)) + 1
    with pytest.raises(ValueError, match="same- and different"):
        fit_threshold(x + np.arange(3)[:, None], np.array([0, 1, 2]), 0.1, metric="l2")
    with pytest.raises(ValueError, match="target_far"):
        fit_threshold(x, np.array([0, 0, 1]), 1.5)
    with pytest.raises(ValueError, match="ascending"):
        pair_counts(x, np.array([0, 0, 1]), np.array([2.0, 1.0]))
    assert isinstance(fit_threshold(x + np.arange(3)[:, None], np.array([0, 0, 1]), 0.0, metric="l2"), Threshold)
