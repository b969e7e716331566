"""Losses against slow NumPy reference loops over every pair/triplet.

This file runs under any Keras backend (``KERAS_BACKEND=torch`` too, see
``test_losses_backends.py``); it uses only ``keras.ops`` and NumPy.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

keras = pytest.importorskip("keras")
from keras import ops  # noqa: E402

from itemrec.losses import ArcFace, CenterLoss, CosFace, CosineSoftmax, SoftmaxLoss, TripletLoss  # noqa: E402
from itemrec.distances import CosineDistance  # noqa: E402
from itemrec.mining import BatchAllMiner, BatchHardMiner, RandomTripletMiner, SemiHardMiner  # noqa: E402

SEEDS = (0, 1, 2)
METRICS = ("squared_l2", "l2", "cosine", "mse")
RTOL = 1e-5


# ----------------------------------------------------------------- references
def np_dist(u: np.ndarray, v: np.ndarray, metric: str) -> float:
    u = u.astype(np.float64)
    v = v.astype(np.float64)
    if metric == "cosine":
        return 1.0 - float(u @ v / (np.linalg.norm(u) * np.linalg.norm(v)))
    sq = float(np.sum((u - v) ** 2))
    return {"squared_l2": sq, "l2": math.sqrt(sq), "mse": sq / len(u)}[metric]


def np_ell(d_ap: float, d_an: float, margin: float, soft: bool) -> float:
    return math.log1p(math.exp(d_ap - d_an)) if soft else max(d_ap - d_an + margin, 0.0)


def ref_triplets(x, y, metric, miner, margin):
    """List of (a, p, n) triplets the miner should pick, by explicit loops."""
    b = len(y)
    d = np.array([[np_dist(x[i], x[j], metric) for j in range(b)] for i in range(b)])
    np.fill_diagonal(d, 0.0)
    out = []
    for a in range(b):
        pos = [p for p in range(b) if p != a and y[p] == y[a]]
        neg = [n for n in range(b) if y[n] != y[a]]
        if not pos or not neg:
            continue
        if miner == "batch_all":
            out += [(a, p, n) for p in pos for n in neg]
        elif miner == "batch_hard":
            out.append((a, max(pos, key=lambda p: d[a, p]), min(neg, key=lambda n: d[a, n])))
        elif miner == "semi_hard":
            for p in pos:
                farther = [n for n in neg if d[a, n] > d[a, p]]
                n = min(farther, key=lambda n: d[a, n]) if farther else max(neg, key=lambda n: d[a, n])
                out.append((a, p, n))
    return out, d


def ref_triplet_loss(x, y, metric, miner, margin, soft, reduction):
    triplets, d = ref_triplets(x, y, metric, miner, margin)
    losses = [np_ell(d[a, p], d[a, n], margin, soft) for a, p, n in triplets]
    active = [v for v in losses if v > 1e-16]
    pool = active if reduction == "active" else losses
    loss = sum(pool) / len(pool) if pool else 0.0
    dap = np.mean([d[a, p] for a, p, _ in triplets]) if triplets else 0.0
    dan = np.mean([d[a, n] for a, _, n in triplets]) if triplets else 0.0
    frac = len(active) / len(losses) if losses else 0.0
    return loss, dap, dan, frac


def batch(seed: int, b: int = 12, dim: int = 5, classes: int = 4):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(b, dim)).astype(np.float32)
    y = rng.integers(0, classes, size=b)
    return x, y


def run(loss, x, y=None, training=False):
    value, diag = loss.compute(ops.convert_to_tensor(x), None if y is None else ops.convert_to_tensor(y), training)
    return float(ops.convert_to_numpy(value)), {k: float(ops.convert_to_numpy(v)) for k, v in diag.items()}


# ----------------------------------------------------------------- triplet
@pytest.mark.parametrize("miner", ["batch_all", "batch_hard", "semi_hard"])
@pytest.mark.parametrize("metric", METRICS)
def test_triplet_loss_matches_reference_loop(miner, metric):
    margin = 0.3 if metric != "squared_l2" else 1.0
    for seed in SEEDS:
        x, y = batch(seed)
        loss = TripletLoss(margin=margin, miner=miner, distance=metric)
        got, diag = run(loss, x, y)
        reduction = "active" if miner == "batch_all" else "mined"
        want, dap, dan, frac = ref_triplet_loss(x, y, metric, miner, margin, False, reduction)
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=1e-6)
        np.testing.assert_allclose(diag["d_ap"], dap, rtol=RTOL, atol=1e-6)
        np.testing.assert_allclose(diag["d_an"], dan, rtol=RTOL, atol=1e-6)
        np.testing.assert_allclose(diag["active_fraction"], frac, rtol=RTOL)
        assert want > 0  # random embeddings: the reference is not trivially zero


@pytest.mark.parametrize("miner", ["batch_all", "batch_hard", "semi_hard"])
def test_soft_margin_and_reduction_override(miner):
    for seed in SEEDS:
        x, y = batch(seed)
        got, _ = run(TripletLoss(miner=miner, distance="l2", soft_margin=True), x, y)
        want = ref_triplet_loss(x, y, "l2", miner, 0.0, True, "mined")[0]
        np.testing.assert_allclose(got, want, rtol=RTOL)
        got, _ = run(TripletLoss(margin=0.5, miner=miner, distance="l2", reducer="mean"), x, y)
        want = ref_triplet_loss(x, y, "l2", miner, 0.5, False, "mined")[0]
        np.testing.assert_allclose(got, want, rtol=RTOL)


def test_random_miner_picks_one_valid_triplet_per_anchor_and_loss_matches():
    x, y = batch(3, b=16)
    loss = TripletLoss(margin=0.4, miner=RandomTripletMiner(seed=7), distance="l2")
    d = np.array([[np_dist(u, v, "l2") for v in x] for u in x])
    seen = set()
    for _ in range(5):
        dist = ops.convert_to_tensor(d.astype(np.float32))
        mask = ops.convert_to_numpy(loss.miner(ops.convert_to_tensor(y), dist).dense())
        triplets = list(zip(*np.nonzero(mask)))
        valid_anchors = [a for a in range(16) if (y == y[a]).sum() > 1 and (y != y[a]).any()]
        assert sorted(a for a, _, _ in triplets) == valid_anchors
        for a, p, n in triplets:
            assert p != a and y[p] == y[a] and y[n] != y[a]
        seen.add(tuple(triplets))
    assert len(seen) > 1  # the draw changes between steps


def test_random_miner_loss_equals_reference_on_its_own_mask():
    x, y = batch(4, b=10)
    loss = TripletLoss(margin=0.5, miner=RandomTripletMiner(seed=3), distance="squared_l2")
    # same seed generator state => same draw: clone the generator by seed
    mask_loss = TripletLoss(margin=0.5, miner=RandomTripletMiner(seed=3), distance="squared_l2")
    d = np.array([[np_dist(u, v, "squared_l2") for v in x] for u in x], np.float32)
    mask = ops.convert_to_numpy(mask_loss.miner(ops.convert_to_tensor(y), ops.convert_to_tensor(d)).dense())
    got, _ = run(loss, x, y)
    terms = [max(d[a, p] - d[a, n] + 0.5, 0.0) for a, p, n in zip(*np.nonzero(mask))]
    np.testing.assert_allclose(got, np.mean(terms), rtol=RTOL)


@pytest.mark.parametrize("metric", METRICS)
def test_stacked_triples_match_reference(metric):
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        t = rng.normal(size=(9, 3, 6)).astype(np.float32)
        got, diag = run(TripletLoss(margin=0.5, miner=RandomTripletMiner(), distance=metric), t)
        d_ap = [np_dist(r[0], r[1], metric) for r in t]
        d_an = [np_dist(r[0], r[2], metric) for r in t]
        want = np.mean([max(a - n + 0.5, 0.0) for a, n in zip(d_ap, d_an)])
        np.testing.assert_allclose(got, want, rtol=RTOL)
        np.testing.assert_allclose(diag["d_ap"], np.mean(d_ap), rtol=RTOL)


# ----------------------------------------------------------------- edge cases
@pytest.mark.parametrize("miner", ["batch_all", "batch_hard", "semi_hard", "random"])
def test_one_class_batch_and_no_valid_triplet_give_zero(miner):
    x, _ = batch(0, b=6)
    loss = TripletLoss(miner=RandomTripletMiner(seed=0) if miner == "random" else miner)
    got, diag = run(loss, x, np.zeros(6, int))  # one class: no negatives
    assert got == 0.0 and diag["active_fraction"] == 0.0
    got, _ = run(loss, x, np.arange(6))  # all distinct: no positives
    assert got == 0.0


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("miner", ["batch_all", "batch_hard", "semi_hard"])
def test_gradient_finite_at_zero_distance(metric, miner):
    # identical embeddings: every distance is 0, the hinge is active (= margin)
    x = np.tile(np.array([[0.3, -0.2, 0.9]], np.float32), (6, 1))
    y = np.array([0, 0, 1, 1, 2, 2])
    loss = TripletLoss(margin=0.2, miner=miner, distance=metric)
    grad = _grad(lambda e: loss.compute(e, ops.convert_to_tensor(y))[0], x)
    assert np.all(np.isfinite(grad)), grad


def _grad(fn, x):
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        v = tf.Variable(x)
        with tf.GradientTape() as tape:
            out = fn(v)
        return tape.gradient(out, v).numpy()
    if backend == "torch":
        import torch

        v = torch.tensor(x, requires_grad=True)
        fn(v).backward()
        return v.grad.numpy()
    if backend == "jax":
        import jax

        return np.asarray(jax.grad(lambda v: fn(v))(x))
    pytest.skip(f"no gradient helper for backend {backend}")


def test_mixed_float16_embeddings_stay_finite():
    rng = np.random.default_rng(0)
    x16 = ops.convert_to_tensor((rng.normal(size=(8, 4)) * 300).astype(np.float16))  # ‖x‖² ≈ 4e5 > fp16 max
    y = ops.convert_to_tensor(np.array([0, 0, 1, 1, 2, 2, 3, 3]))
    for loss in (TripletLoss(miner="batch_hard", distance="squared_l2"), CenterLoss(4), SoftmaxLoss(head=ArcFace(4))):
        value = float(ops.convert_to_numpy(loss.compute(x16, y)[0]))
        assert np.isfinite(value) and value > 0


# ----------------------------------------------------------------- softmax family
def np_log_softmax_ce(logits: np.ndarray, y: np.ndarray) -> float:
    total = 0.0
    for row, t in zip(logits.astype(np.float64), y):
        m = row.max()
        total += -(row[t] - m - math.log(sum(math.exp(v - m) for v in row)))
    return total / len(y)


def test_softmax_loss_matches_reference():
    for seed in SEEDS:
        x, y = batch(seed, classes=5)
        loss = SoftmaxLoss(5)
        loss.build_for(x.shape[1])
        w, b = (ops.convert_to_numpy(v) for v in loss.head.weights)
        logits = np.array([[sum(xi[k] * w[k, j] for k in range(len(xi))) + b[j] for j in range(5)] for xi in x])
        got, diag = run(loss, x, y)
        np.testing.assert_allclose(got, np_log_softmax_ce(logits, y), rtol=RTOL)
        np.testing.assert_allclose(diag["accuracy"], np.mean(logits.argmax(1) == y), rtol=RTOL)


def np_cos(x, w):
    return np.array([[float(u @ w[:, j] / (np.linalg.norm(u) * np.linalg.norm(w[:, j]))) for j in range(w.shape[1])]
                     for u in x.astype(np.float64)])


@pytest.mark.parametrize("kind", ["cosine", "arcface", "cosface", "arcface_easy"])
def test_cosine_heads_match_reference(kind):
    n, s, m = 5, 12.0, 0.4
    for seed in SEEDS:
        x, y = batch(seed, classes=n)
        head = {
            "cosine": lambda: CosineSoftmax(n, scale=s),
            "arcface": lambda: ArcFace(n, scale=s, margin=m),
            "cosface": lambda: CosFace(n, scale=s, margin=m),
            "arcface_easy": lambda: ArcFace(n, scale=s, margin=m, easy_margin=True),
        }[kind]()
        loss = SoftmaxLoss(head=head)
        loss.build_for(x.shape[1])
        cos = np_cos(x, ops.convert_to_numpy(head.anchors).astype(np.float64))
        ref = s * cos
        for i, t in enumerate(y):
            c = cos[i, t]
            theta = math.acos(c)
            if kind == "cosface":
                ref[i, t] = s * (c - m)
            elif kind == "arcface":
                ref[i, t] = s * (math.cos(theta + m) if theta + m < math.pi else c - m * math.sin(m))
            elif kind == "arcface_easy":
                ref[i, t] = s * (math.cos(theta + m) if c > 0 else c)
        got_logits = ops.convert_to_numpy(head(ops.convert_to_tensor(x), ops.convert_to_tensor(y)))
        np.testing.assert_allclose(got_logits, ref, rtol=RTOL, atol=1e-4)
        np.testing.assert_allclose(ops.convert_to_numpy(head(ops.convert_to_tensor(x))), s * cos, rtol=RTOL, atol=1e-4)
        got, _ = run(loss, x, y)
        np.testing.assert_allclose(got, np_log_softmax_ce(ref, y), rtol=RTOL, atol=1e-5)


def test_arcface_gradient_finite_when_feature_equals_anchor():
    head = ArcFace(3, scale=10.0, margin=0.5)
    head.build((None, 3))
    head.anchors.assign(np.eye(3, dtype=np.float32))
    x = np.eye(3, dtype=np.float32)  # cos θ = 1 exactly for the target class
    grad = _grad(lambda e: ops.sum(head(e, ops.convert_to_tensor(np.arange(3)))), x)
    assert np.all(np.isfinite(grad))


# ----------------------------------------------------------------- centre loss
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_center_loss_matches_reference(reduction):
    for seed in SEEDS:
        x, y = batch(seed, classes=4)
        loss = CenterLoss(4, alpha=0.5, lam=0.3, reduction=reduction)
        loss.build_for(x.shape[1])
        rng = np.random.default_rng(seed + 10)
        c = rng.normal(size=(4, x.shape[1])).astype(np.float32)
        loss.centers.assign(c)
        w, b = (ops.convert_to_numpy(v) for v in loss.head.weights)
        ce = np_log_softmax_ce(x.astype(np.float64) @ w + b, y)
        lc = sum(0.5 * sum((x[i, k] - c[y[i], k]) ** 2 for k in range(x.shape[1])) for i in range(len(y)))
        lc = lc / len(y) if reduction == "mean" else lc
        got, diag = run(loss, x, y, training=False)
        np.testing.assert_allclose(diag["center"], lc, rtol=RTOL)
        np.testing.assert_allclose(got, ce + 0.3 * lc, rtol=RTOL)
        np.testing.assert_allclose(ops.convert_to_numpy(loss.centers), c)  # not in training: unchanged
        # centre update in training, by the per-class loop of Wen et al.
        run(loss, x, y, training=True)
        want = c.astype(np.float64).copy()
        for j in range(4):
            members = [i for i in range(len(y)) if y[i] == j]
            delta = sum((c[j] - x[i] for i in members), np.zeros(x.shape[1])) / (1 + len(members))
            want[j] = c[j] - 0.5 * delta
        np.testing.assert_allclose(ops.convert_to_numpy(loss.centers), want, rtol=RTOL, atol=1e-6)


def test_center_update_hand_worked_example():
    loss = CenterLoss(3, alpha=0.5, lam=1.0)
    loss.build_for(2)
    loss.centers.assign(np.array([[0.0, 0.0], [2.0, 2.0], [5.0, 5.0]], np.float32))
    x = np.array([[1.0, 0.0], [3.0, 0.0], [2.0, 4.0]], np.float32)
    y = np.array([0, 0, 1])
    run(loss, x, y, training=True)
    # class 0: n=2, Σ(c−x) = (0−1, 0−0) + (0−3, 0−0) = (−4, 0); Δ = (−4, 0)/3
    #          c ← (0, 0) − 0.5·(−4/3, 0) = (2/3, 0)
    # class 1: n=1, Σ(c−x) = (2−2, 2−4) = (0, −2); Δ = (0, −1); c ← (2, 2) − 0.5·(0, −1) = (2, 2.5)
    # class 2: absent, n=0, Δ = 0: stays (5, 5)
    np.testing.assert_allclose(
        ops.convert_to_numpy(loss.centers), [[2 / 3, 0.0], [2.0, 2.5], [5.0, 5.0]], rtol=1e-6
    )


def test_bad_input_errors_name_the_problem():
    with pytest.raises(ValueError, match="unknown distance 'manhattan'"):
        TripletLoss(distance="manhattan")
    with pytest.raises(ValueError, match="miner"):
        TripletLoss(miner="hardest")
    with pytest.raises(ValueError, match="labels"):
        TripletLoss().compute(ops.convert_to_tensor(np.zeros((4, 3), np.float32)))
    with pytest.raises(ValueError, match=r"\(B, 3, D\)"):
        TripletLoss().compute(ops.convert_to_tensor(np.zeros((4, 2, 3), np.float32)))
    with pytest.raises(ValueError, match="reduction"):
        CenterLoss(3, reduction="median")


def test_miner_objects_are_accepted_and_serialised():
    for miner in (BatchAllMiner(), BatchHardMiner(), SemiHardMiner(), RandomTripletMiner(seed=5)):
        loss = TripletLoss(miner=miner, margin=0.7, distance="cosine", soft_margin=True)
        clone = TripletLoss.from_config(loss.get_config())
        assert type(clone.miner) is type(miner) and clone.margin == 0.7 and clone.distance == CosineDistance()
        assert clone.soft_margin
    assert TripletLoss.from_config(TripletLoss(miner=RandomTripletMiner(seed=5)).get_config()).miner.seed == 5
