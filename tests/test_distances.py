"""pairwise / paired distances against explicit loops, and their gradients at zero."""

from __future__ import annotations

import math

import numpy as np
import pytest

keras = pytest.importorskip("keras")
from keras import ops  # noqa: E402

from itemrec.distances import METRICS, paired_distances, pairwise_distances  # noqa: E402


def ref(u, v, metric):
    u, v = u.astype(np.float64), v.astype(np.float64)
    if metric == "cosine":
        return 1 - u @ v / (np.linalg.norm(u) * np.linalg.norm(v))
    sq = sum((a - b) ** 2 for a, b in zip(u, v))
    return {"squared_l2": sq, "l2": math.sqrt(sq), "mse": sq / len(u)}[metric]


@pytest.mark.parametrize("metric", METRICS)
def test_pairwise_and_paired_match_loops(metric):
    for seed in (0, 1, 2):
        rng = np.random.default_rng(seed)
        a = rng.normal(size=(7, 5)).astype(np.float32)
        b = rng.normal(size=(4, 5)).astype(np.float32)
        got = ops.convert_to_numpy(pairwise_distances(a, b, metric))
        want = np.array([[ref(u, v, metric) for v in b] for u in a])
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
        self_d = ops.convert_to_numpy(pairwise_distances(a, metric=metric))
        assert np.all(np.diag(self_d) == 0.0)
        np.testing.assert_allclose(self_d, [[ref(u, v, metric) for v in a] for u in a], rtol=1e-5, atol=1e-5)
        got = ops.convert_to_numpy(paired_distances(a[:4], b, metric))
        np.testing.assert_allclose(got, [ref(u, v, metric) for u, v in zip(a[:4], b)], rtol=1e-5, atol=1e-6)


def test_hand_worked_values():
    a = np.array([[0.0, 0.0], [3.0, 4.0]], np.float32)
    b = np.array([[3.0, 0.0]], np.float32)
    # ‖(0,0)−(3,0)‖² = 9, ‖(3,4)−(3,0)‖² = 16; l2 3 and 4; mse 9/2 and 16/2
    np.testing.assert_allclose(ops.convert_to_numpy(pairwise_distances(a, b, "squared_l2")), [[9], [16]])
    np.testing.assert_allclose(ops.convert_to_numpy(pairwise_distances(a, b, "l2")), [[3], [4]], rtol=1e-6)
    np.testing.assert_allclose(ops.convert_to_numpy(pairwise_distances(a, b, "mse")), [[4.5], [8]])
    # cos((3,4),(3,0)) = 9/(5·3) = 0.6 → distance 0.4; the zero vector gets cos 0 → 1
    np.testing.assert_allclose(ops.convert_to_numpy(pairwise_distances(a, b, "cosine")), [[1.0], [0.4]], rtol=1e-6)


@pytest.mark.parametrize("metric", METRICS)
def test_gradient_at_zero_distance_is_finite(metric):
    import tensorflow as tf

    if keras.backend.backend() != "tensorflow":
        pytest.skip("gradient helper written for the TensorFlow backend")
    v = tf.Variable(np.tile([[1.0, 2.0, -1.0]], (3, 1)).astype(np.float32))
    with tf.GradientTape() as tape:
        d = ops.sum(pairwise_distances(v, metric=metric)) + ops.sum(paired_distances(v, v, metric))
    g = tape.gradient(d, v).numpy()
    assert np.all(np.isfinite(g))
    np.testing.assert_allclose(g, 0.0, atol=1e-3)


def test_float16_inputs_give_float32_finite_distances():
    a = (np.random.default_rng(0).normal(size=(5, 8)) * 200).astype(np.float16)
    d = pairwise_distances(a, metric="squared_l2")
    assert keras.backend.standardize_dtype(d.dtype) == "float32"
    d = ops.convert_to_numpy(d)
    assert np.all(np.isfinite(d)) and d.max() > 65504  # would overflow in float16


def test_bad_inputs():
    with pytest.raises(ValueError, match="metric"):
        pairwise_distances(np.zeros((2, 3), np.float32), metric="hamming")
    with pytest.raises(ValueError, match="D=3.*D=4"):
        pairwise_distances(np.zeros((2, 3), np.float32), np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match="2-D"):
        pairwise_distances(np.zeros((2, 3, 1), np.float32))


def test_one_object_per_metric_computes_the_same_in_keras_ops_and_numpy():
    from itemrec.distances import DISTANCES, get_distance

    rng = np.random.default_rng(4)
    a = rng.normal(size=(9, 6)).astype(np.float32)
    b = rng.normal(size=(5, 6)).astype(np.float32)
    a[0] = 0.0  # the zero vector: cosine 0 to everything
    for name in DISTANCES:
        d = get_distance(name)
        assert d.name == name and get_distance(d) is d
        got = d.pairwise_numpy(a, b)
        assert got.dtype == np.float32 and got.shape == (9, 5)
        np.testing.assert_allclose(got, ops.convert_to_numpy(d.pairwise(a, b)), rtol=1e-5, atol=1e-5)
        own = d.pairwise_numpy(a)
        np.testing.assert_allclose(own, ops.convert_to_numpy(d.pairwise(a)), rtol=1e-5, atol=1e-5)
        if name in METRICS:
            assert not d.inverted and np.all(np.diag(own) == 0.0)
            np.testing.assert_allclose(got, ops.convert_to_numpy(pairwise_distances(a, b, name)), rtol=1e-6)
    # the similarity knows its direction: larger is closer, the negation ranks like 1 − cos
    sim = get_distance("cosine_similarity")
    assert sim.inverted
    np.testing.assert_allclose(sim.closer_first(sim.pairwise_numpy(a, b)) + 1.0,
                               get_distance("cosine").pairwise_numpy(a, b), atol=1e-6)
    # hand-worked: cos((3, 4), (3, 0)) = 9 / 15 = 0.6
    np.testing.assert_allclose(sim.pairwise_numpy([[3.0, 4.0]], [[3.0, 0.0]]), [[0.6]], rtol=1e-6)
    with pytest.raises(ValueError, match="unknown distance"):
        get_distance("manhattan")
    with pytest.raises(ValueError, match="embedding sizes differ"):
        get_distance("l2").pairwise_numpy(a, b[:, :3])
