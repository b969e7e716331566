"""Open-set DIR@FAR: hand-worked probes and a brute-force loop."""

from __future__ import annotations

import numpy as np
import pytest

from itemrec.evaluation import dir_far_curve, evaluate_openset, fit_openset_threshold


def test_openset_hand_worked():
    # gallery on a line: class 0 at 0, class 1 at 10 (l2)
    g, gl = np.array([[0.0], [10.0]]), np.array([0, 1])
    # validation probes: known 0 at 1 (d=1, correct), known 1 at 7 (d=3, correct), known 1 at 4 (d=4, WRONG: nearest 0)
    # unknown class 9 at 5 (d=5), 8 at 2 (d=2), 7 at 8.5 (d=1.5), 6 at 16 (d=6)
    vp = np.array([[1.0], [7.0], [4.0], [5.0], [2.0], [8.5], [16.0]])
    vl = np.array([0, 1, 1, 9, 8, 7, 6])
    # target FAR 0.25: 4 unknowns, k = 1; sorted unknown distances 1.5 2 5 6 -> tau = (1.5+2)/2 = 1.75
    th = fit_openset_threshold(g, gl, vp, vl, target_far=0.25, metric="l2")
    assert th.value == pytest.approx(1.75)
    assert th.far_val == pytest.approx(1 / 4)   # only 8.5 (d=1.5) accepted
    assert th.dir_val == pytest.approx(1 / 3)   # only the probe at 1 (d=1) accepted and correct
    # test probes: known 0 at -1 (d=1 ok), known 1 at 12 (d=2 rejected), unknown at 0.5 (d=0.5 accepted), unknown at 5 (rejected)
    tp = np.array([[-1.0], [12.0], [0.5], [5.0]])
    tl = np.array([0, 1, 5, 5])
    rep = evaluate_openset(th, g, gl, tp, tl)
    assert rep.dir == 0.5 and rep.far == 0.5 and rep.unknown_accuracy == 0.5
    assert rep.known_rejection_rate == 0.5
    # right answers: probe -1 (accepted, correct), probe 5 (rejected unknown) -> 2 / 4
    assert rep.accuracy == 0.5 and (rep.n_known, rep.n_unknown) == (2, 2)
    # target 0 -> tau just below the smallest unknown distance 1.5
    th0 = fit_openset_threshold(g, gl, vp, vl, target_far=0.0, metric="l2")
    assert th0.value < 1.5 and th0.value > 1.4999 and th0.far_val == 0


def test_dir_far_brute_force():
    rng = np.random.default_rng(0)
    g = rng.normal(size=(6, 5))
    gl = np.arange(6)
    probes = np.r_[g[rng.integers(0, 6, 30)] + 0.7 * rng.normal(size=(30, 5)), rng.normal(size=(20, 5))]
    pl = np.r_[np.zeros(30, int), np.full(20, 99)]
    pl[:30] = [int(np.argmin(np.linalg.norm(g - p, axis=1))) if i % 4 else (i // 4) % 6 for i, p in enumerate(probes[:30])]
    curve = dir_far_curve(g, gl, probes, pl, metric="cosine")
    for k in [0, 5, 17, len(curve.thresholds) - 1]:
        tau = curve.thresholds[k]
        hit = fa = 0
        for p, lab in zip(probes, pl):
            d = [1 - p @ q / np.linalg.norm(p) / np.linalg.norm(q) for q in g]
            j = int(np.argmin(d))
            if d[j] <= tau + 1e-12:
                if lab == 99:
                    fa += 1
                elif gl[j] == lab:
                    hit += 1
        assert curve.dir[k] == pytest.approx(hit / 30) and curve.far[k] == pytest.approx(fa / 20)
    th = fit_openset_threshold(g, gl, probes, pl, 0.1, metric="cosine")
    assert th.far_val <= 0.1
    with pytest.raises(ValueError, match="known and unknown"):
        fit_openset_threshold(g, gl, probes[:30], pl[:30], 0.1)
    with pytest.raises(TypeError, match="fit_openset_threshold"):
        evaluate_openset(0.3, g, gl, probes, pl)
