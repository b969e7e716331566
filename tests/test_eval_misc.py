"""Classification, Gini impurity/rejection and clustering quality on hand-worked cases."""

from __future__ import annotations

import numpy as np
import pytest

from itemrec.evaluation import (
    classification_report,
    clustering_scores,
    fit_gini_threshold,
    gini_impurity,
    gini_rejection_report,
    lorenz_gini,
    purity,
    top_k_accuracy,
)


def test_classification_hand_worked():
    y = np.array([0, 0, 1, 1, 2])
    scores = np.array([
        [0.7, 0.2, 0.1],  # pred 0 ok
        [0.3, 0.5, 0.2],  # pred 1 wrong (0 second -> top-2 ok)
        [0.1, 0.8, 0.1],  # pred 1 ok
        [0.1, 0.3, 0.6],  # pred 2 wrong (1 second -> top-2 ok)
        [0.5, 0.1, 0.4],  # pred 0 wrong (2 second -> top-2 ok)
    ])
    rep = classification_report(y, scores, ["a", "b", "c"], ks=(1, 2))
    assert rep.accuracy == pytest.approx(2 / 5)
    assert rep.top_k_accuracy == {1: pytest.approx(2 / 5), 2: 1.0}
    # class a: TP 1, FP 1 (row 5), FN 1 -> P 1/2, R 1/2; b: TP 1 FP 1 FN 1 -> 1/2, 1/2; c: TP 0 -> 0, 0
    assert rep.per_class["precision"].tolist() == pytest.approx([0.5, 0.5, 0.0])
    assert rep.precision_macro == pytest.approx(1 / 3)
    # weighted by support 2, 2, 1: (0.5*2 + 0.5*2 + 0)/5 = 0.4
    assert rep.recall_weighted == pytest.approx(0.4)
    assert rep.confusion.tolist() == [[1, 1, 0], [0, 1, 1], [1, 0, 0]]
    assert top_k_accuracy(y, scores, 2) == 1.0
    with pytest.raises(ValueError, match="outside"):
        top_k_accuracy(np.array([3, 0, 0, 0, 0]), scores, 1)
    with pytest.raises(ValueError, match="samples"):
        classification_report(y[:3], np.array([0, 1, 1, 2]))


def test_gini_hand_worked():
    # 1 - (0.5² + 0.5²) = 0.5 ; one-hot -> 0 ; uniform over 4 -> 1 - 4/16 = 0.75
    assert gini_impurity(np.array([0.5, 0.5])) == pytest.approx(0.5)
    np.testing.assert_allclose(gini_impurity(np.array([[1, 0, 0, 0], [0.25] * 4])), [0.0, 0.75])
    # Lorenz Gini of [1, 0]: Σ|pi-pj| = 2, / (2·2·1) = 0.5 ; uniform -> 0
    np.testing.assert_allclose(lorenz_gini(np.array([[1.0, 0.0], [0.5, 0.5]])), [0.5, 0.0])
    with pytest.raises(ValueError, match="sum to 1"):
        gini_impurity(np.array([0.5, 0.2]))


def test_gini_rejection():
    # in-distribution validation impurities: 0, 0.18, 0.32, 0.5 (p = 1, 0.9, 0.8, 0.5 of two classes)
    two = lambda p: np.array([[q, 1 - q] for q in p])  # noqa: E731
    val = two([1.0, 0.9, 0.8, 0.5])
    # target 0.25 -> k = 1: sorted desc 0.5, 0.32, ... -> tau = (0.5 + 0.32)/2 = 0.41
    th = fit_gini_threshold(val, 0.25)
    assert th.value == pytest.approx(0.41) and th.in_rejection_val == 0.25
    rep = gini_rejection_report(th, two([0.95, 0.6]), two([0.5, 0.55, 0.99]))
    # in: G = 0.095, 0.48 -> rejected 1/2 ; out: 0.5, 0.495, 0.0198 -> rejected 2/3
    assert rep.in_rejection_rate == 0.5 and rep.out_rejection_rate == pytest.approx(2 / 3)
    # AUC = P(G_out > G_in): pairs (out, in): 0.5>0.095,0.5>0.48,0.495>0.095,0.495>0.48,0.0198<both -> 4/6
    assert rep.auc == pytest.approx(4 / 6)


def test_clustering_scores_hand_worked():
    t = np.array([0, 0, 0, 1, 1, 1])
    p = np.array([5, 5, 7, 7, 7, 7])
    # cluster 5: {0,0} max 2 ; cluster 7: {0,1,1,1} max 3 -> purity 5/6
    assert purity(t, p) == pytest.approx(5 / 6)
    s = clustering_scores(t, p)
    assert (s.n_clusters, s.n_classes) == (2, 2) and s.purity == pytest.approx(5 / 6)
    perfect = clustering_scores(t, 1 - t)
    assert perfect.ari == pytest.approx(1.0) and perfect.nmi == pytest.approx(1.0) and perfect.purity == 1.0
    # ARI by hand: contingency [[2,1],[0,3]]; Σ C(nij,2) = 1+0+0+3 = 4; rows C(3,2)*2 = 6; cols C(2,2)+C(4,2) = 7
    # expected = 6*7/C(6,2)=42/15=2.8; max = (6+7)/2 = 6.5 -> ARI = (4-2.8)/(6.5-2.8) = 1.2/3.7
    assert s.ari == pytest.approx(1.2 / 3.7)
    with pytest.raises(ValueError, match="one length"):
        purity(t, p[:3])
