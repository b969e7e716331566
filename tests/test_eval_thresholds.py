"""The one threshold-at-FAR rule (itemrec.evaluation.thresholds) and its users: VAL/FAR, open-set DIR,
the gallery's calibration; and the one hubness offset shared by the gallery and the evaluation."""

from __future__ import annotations

import numpy as np
import pytest

from itemrec.evaluation import (
    fit_openset_threshold,
    fit_threshold,
    hubness_offsets,
    knn,
    pairwise_distances,
)
from itemrec.evaluation.openset import nearest_gallery
from itemrec.evaluation.thresholds import accepted, allowed_accepts, detection_rates, threshold_at_far
from itemrec.gallery import Gallery, choose_threshold


def test_threshold_at_far_hand_worked_distances():
    s = np.array([0.5, 0.1, 0.4, 0.2, 0.3])
    # sorted 0.1, 0.2, 0.3, 0.4, 0.5; target 0.4 -> m = 2 -> t = (0.2 + 0.3) / 2 = 0.25: accepts 0.1, 0.2
    t = threshold_at_far(s, 0.4)
    assert t == pytest.approx(0.25) and accepted(s, t).sum() == 2
    # target 0.1 -> m = 0 -> t just below 0.1: nothing accepted
    t0 = threshold_at_far(s, 0.1)
    assert t0 == np.nextafter(0.1, -np.inf) and accepted(s, t0).sum() == 0
    # target 1 -> everything accepted
    assert threshold_at_far(s, 1.0) == np.inf
    # a tie at the boundary is never split: 0.2 twice, m = 2 would take one of them -> only 0.1
    tied = np.array([0.1, 0.2, 0.2, 0.9])
    t_tie = threshold_at_far(tied, 0.5)
    assert t_tie == np.nextafter(0.2, -np.inf) and accepted(tied, t_tie).sum() == 1


def test_threshold_at_far_similarities_and_dtype():
    s = np.array([0.9, 0.5, 0.7, 0.3], np.float32)
    # accept >= t; sorted desc 0.9, 0.7, 0.5, 0.3; target 0.5 -> m = 2 -> t = (0.7 + 0.5) / 2
    t = threshold_at_far(s, 0.5, accept="above")
    assert t == (float(np.float32(0.7)) + float(np.float32(0.5))) / 2
    assert accepted(s, t, "above").tolist() == [True, False, True, False]
    # m = 0 with float32 scores: the next float32 above 0.9, so a float32 copy of t still rejects 0.9
    t0 = threshold_at_far(s, 0.0, accept="above")
    assert t0 == float(np.nextafter(np.float32(0.9), np.float32(np.inf))) and not (s >= np.float32(t0)).any()
    assert threshold_at_far(s, 1.0, accept="above") == -np.inf


def test_allowed_accepts_tolerates_binary_rounding():
    # 0.29 * 100 = 28.999999999999996 in binary; the rule allows 29 accepts
    assert 0.29 * 100 < 29 and allowed_accepts(100, 0.29) == 29
    assert allowed_accepts(1000, 1e-3) == 1 and allowed_accepts(999, 1e-3) == 0
    with pytest.raises(ValueError):
        allowed_accepts(10, 1.5)
    with pytest.raises(ValueError):
        threshold_at_far(np.zeros(0), 0.1)
    with pytest.raises(ValueError):
        threshold_at_far(np.ones(3), 0.1, accept="sideways")


def test_fit_threshold_is_the_rule_on_all_different_pair_distances():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 6))
    y = rng.integers(0, 6, 60)
    d = pairwise_distances(x, x, "cosine")
    iu = np.triu_indices(60, 1)
    diff = d[iu][y[iu[0]] != y[iu[1]]]
    for far in (0.0, 0.01, 0.1, 0.37):
        th = fit_threshold(x, y, far, "cosine")
        assert th.value == threshold_at_far(diff, far)
        assert th.far_val == np.mean(diff <= th.value) <= far


def test_fit_openset_threshold_is_the_rule_on_unknown_nearest_distances():
    rng = np.random.default_rng(1)
    g, gl = rng.normal(size=(10, 5)), np.arange(10)
    p = rng.normal(size=(80, 5))
    pl = rng.integers(0, 16, 80)  # labels 10..15 are unknown
    dist, correct, known = nearest_gallery(g, gl, p, pl, "l2")
    for far in (0.0, 0.05, 0.3, 1.0):
        th = fit_openset_threshold(g, gl, p, pl, far, "l2")
        assert th.value == threshold_at_far(dist[~known], far)
        want_dir, want_far = detection_rates(dist[known], correct[known], dist[~known], th.value)
        assert (th.dir_val, th.far_val) == (want_dir, want_far) and th.far_val <= far


def test_detection_rates_hand_worked():
    # genuine: scores .9 (right), .8 (wrong), .4 (right); impostors .85, .3; accept >= .5
    # DIR = right and accepted: .9 only -> 1/3; FAR = .85 -> 1/2
    dir_, far = detection_rates([0.9, 0.8, 0.4], [True, False, True], [0.85, 0.3], 0.5, "above")
    assert dir_ == pytest.approx(1 / 3) and far == 0.5
    with pytest.raises(ValueError, match="correctness"):
        detection_rates([0.9], [True, False], [0.1], 0.5)


def test_gallery_choose_threshold_is_the_rule_on_similarities():
    rng = np.random.default_rng(2)
    s = rng.uniform(-1, 1, 50).astype(np.float32)
    for far in (0.0, 0.02, 0.5):
        assert choose_threshold(s, far) == threshold_at_far(s, far, accept="above")
    assert choose_threshold(s, 1.0) == -1.0  # "accept all", stored as the lowest cosine


def test_gallery_and_evaluation_rank_alike_with_a_background(tmp_path):
    # the same vectors ranked by the gallery (cos - o) and by the evaluation (1 - cos + o): one offset
    rng = np.random.default_rng(3)
    items = rng.normal(size=(30, 8)).astype(np.float32)
    items /= np.linalg.norm(items, axis=1, keepdims=True)
    background = np.concatenate([items[:5] + 0.05 * rng.normal(size=(5, 8)), rng.normal(size=(20, 8))])
    background = (background / np.linalg.norm(background, axis=1, keepdims=True)).astype(np.float32)
    queries = (items[rng.integers(0, 30, 12)] + 0.6 * rng.normal(size=(12, 8))).astype(np.float32)
    g = Gallery.create(tmp_path / "g", "fp", dim=8)
    for i, v in enumerate(items):
        g.enroll(f"item{i:02d}", "", vectors=v[None, :])
    g.set_background(background, k=3, beta=0.5)
    results = g.query(vectors=queries, k=6)
    got_idx = np.array([[int(m.item_id[4:]) for m in r.matches] for r in results])
    got_scores = np.array([[m.similarity for m in r.matches] for r in results])
    off = hubness_offsets(items, background, k=3, beta=0.5)
    d, idx = knn(queries, items, 6, "cosine", reference_offsets=off)
    np.testing.assert_array_equal(got_idx, idx)
    np.testing.assert_allclose(got_scores, 1.0 - d, atol=2e-6)  # gallery score = cos - o = 1 - (D + o)
    # and the correction changed some ranking (otherwise the test would prove little)
    _, plain = knn(queries, items, 6, "cosine")
    assert (plain != idx).any()
