"""Hubness offsets (CSLS ranking): a hand-worked case and a brute-force loop."""

from __future__ import annotations

import numpy as np
import pytest

from itemrec.evaluation import cmc_representative, hubness_offsets, knn, per_class_ranks
from itemrec.evaluation.neighbours import first_match_rank


def test_hand_worked_hub_is_ranked_down():
    # gallery: g1 = (1, 0) sits among the background photos, g2 = (0, 1) far from them
    gallery, gl = np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([1, 2])
    background = np.array([[1.0, 0.0], [0.8, 0.6], [0.96, 0.28]])
    # k = 2, cosine distances 1 - cos: g1 -> (0, 0.2, 0.04), nearest two 0 and 0.04, mean 0.02
    #                                   g2 -> (1, 0.4, 0.72), nearest two 0.4 and 0.72, mean 0.56
    # offsets = beta * (1 - mean) = 0.5 * (0.98, 0.44) = (0.49, 0.22)  (= beta * mean cosine r_B)
    off = hubness_offsets(gallery, background, k=2, beta=0.5)
    np.testing.assert_allclose(off, [0.49, 0.22], atol=1e-12)
    # query (0.8, 0.6) of class 2: distances (0.2, 0.4) put the hub g1 first (rank 2);
    # with offsets (0.69, 0.62) g2 comes first (rank 1)
    q, ql = np.array([[0.8, 0.6]]), np.array([2])
    assert first_match_rank(q, ql, gallery, gl).tolist() == [2]
    assert first_match_rank(q, ql, gallery, gl, reference_offsets=off).tolist() == [1]
    assert knn(q, gallery, 1, reference_offsets=off)[1].tolist() == [[1]]
    assert cmc_representative(q, ql, gallery, gl, max_rank=2, n_draws=3, gallery_offsets=off).mean.tolist() == [1.0, 1.0]
    row = per_class_ranks(q, ql, gallery, gl, ks=(1,), gallery_offsets=off).iloc[0]
    assert row["hit@1"] == 1.0 and row["confused_with"] == -1


def test_offsets_and_ranks_match_a_brute_force_loop():
    rng = np.random.default_rng(5)
    gallery = rng.normal(size=(7, 5))
    gl = np.arange(7)
    background = rng.normal(size=(30, 5))
    queries = rng.normal(size=(40, 5))
    ql = rng.integers(0, 7, 40)
    k, beta = 4, 0.7

    def cos(a, b):
        return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))

    r = [np.mean(sorted(cos(g, b) for b in background)[-k:]) for g in gallery]  # mean cos to k nearest
    off = hubness_offsets(gallery, background, k=k, beta=beta)
    np.testing.assert_allclose(off, [beta * ri for ri in r], atol=1e-10)  # o(g) = beta * r_B(g)
    ranks = first_match_rank(queries, ql, gallery, gl, reference_offsets=off)
    for i, q in enumerate(queries):
        score = [cos(q, g) - beta * r[j] for j, g in enumerate(gallery)]  # the CSLS ranking score
        expected = 1 + sum(score[j] > score[ql[i]] for j in range(7) if j != ql[i])
        assert ranks[i] == expected
    # k beyond the background size is capped at it
    np.testing.assert_allclose(hubness_offsets(gallery, background[:3], k=50, beta=1.0),
                               hubness_offsets(gallery, background[:3], k=3, beta=1.0))


def test_bad_arguments_are_refused():
    g, b = np.eye(3), np.eye(3)
    with pytest.raises(ValueError, match="k must be"):
        hubness_offsets(g, b, k=0)
    with pytest.raises(ValueError, match="beta"):
        hubness_offsets(g, b, beta=-1.0)
    with pytest.raises(ValueError, match="one per reference"):
        first_match_rank(g, np.arange(3), g, np.arange(3), reference_offsets=np.zeros(2))
    with pytest.raises(ValueError, match="finite"):
        knn(g, g, 1, reference_offsets=np.array([0.0, np.nan, 0.0]))
