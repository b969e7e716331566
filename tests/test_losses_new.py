"""Multi-similarity (+ miner), contrastive and proxy-anchor losses.

Each loss is checked against a slow float64 loop written from the paper's
equation (values, and gradients by central finite differences of that loop),
against pytorch-metric-learning 2.x (values and autograd gradients on the same
embeddings, labels and proxies), through Keras serialisation, and in a short
``model.fit``. Values and embedding gradients use ``keras.ops`` only; the proxy
gradient uses ``tf.GradientTape`` and skips on other backends.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

keras = pytest.importorskip("keras")
from keras import ops  # noqa: E402

from itemrec.losses import (  # noqa: E402
    ArcFace,
    ContrastiveLoss,
    CosineSoftmax,
    MultiSimilarityLoss,
    MultiSimilarityMiner,
    ProxyAnchorLoss,
)

SEEDS = (0, 1, 2)
RTOL = 1e-5
N_CLASSES = 12
# label patterns of a 12-sample batch; "singletons": labels 2, 3, 4 and 6 have one sample (anchors with no positive)
PATTERNS = {
    "random": None,
    "singletons": [0, 0, 0, 1, 1, 1, 2, 3, 4, 5, 5, 6],
    "pairs": [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5],
    "one_class": [7] * 12,
    "all_distinct": list(range(12)),
}


def batch(seed: int, pattern: str = "random", b: int = 12, dim: int = 6):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(b, dim)).astype(np.float32)
    y = rng.integers(0, 4, size=b) if PATTERNS[pattern] is None else np.array(PATTERNS[pattern][:b])
    return x, y


def run(loss, x, y):
    value, diag = loss.compute(ops.convert_to_tensor(x), ops.convert_to_tensor(y))
    return float(ops.convert_to_numpy(value)), {k: float(ops.convert_to_numpy(v)) for k, v in diag.items()}


# ----------------------------------------------------------------- references (float64 loops)
def unit(v):
    v = np.asarray(v, np.float64)
    return v / math.sqrt(float(v @ v))


def cos(u, v):
    return float(unit(u) @ unit(v))


def ref_ms_pairs(x, y, eps):
    """Eq. 7-8 of Wang et al. 2019: the mined (i, j) positive and negative pairs (all pairs if eps is None)."""
    b = len(y)
    pos, neg = set(), set()
    for i in range(b):
        p_i = [k for k in range(b) if k != i and y[k] == y[i]]
        n_i = [k for k in range(b) if y[k] != y[i]]
        for j in p_i:
            if eps is None or (n_i and cos(x[i], x[j]) - eps < max(cos(x[i], x[k]) for k in n_i)):
                pos.add((i, j))
        for j in n_i:
            if eps is None or (p_i and cos(x[i], x[j]) + eps > min(cos(x[i], x[k]) for k in p_i)):
                neg.add((i, j))
    return pos, neg


def ref_ms_loss(x, y, alpha, beta, base, pairs):
    """Eq. 10, averaged over all anchors, on the given (pos, neg) pair sets."""
    pos, neg = pairs
    total = 0.0
    for i in range(len(y)):
        sp = sum(math.exp(-alpha * (cos(x[i], x[j]) - base)) for (a, j) in pos if a == i)
        sn = sum(math.exp(beta * (cos(x[i], x[j]) - base)) for (a, j) in neg if a == i)
        total += math.log1p(sp) / alpha + math.log1p(sn) / beta
    return total / len(y)


def ref_contrastive(x, y, pm, nm, metric):
    pos, neg = [], []
    for i in range(len(y)):
        for j in range(len(y)):
            if i == j:
                continue
            u, v = unit(x[i]), unit(x[j])
            sq = float(np.sum((u - v) ** 2))
            d = {"l2": math.sqrt(sq), "squared_l2": sq, "mse": sq / len(u), "cosine": 1.0 - float(u @ v)}[metric]
            (pos if y[i] == y[j] else neg).append(max(d - pm, 0.0) if y[i] == y[j] else max(nm - d, 0.0))
    mean_nz = lambda ls: sum(ls) / max(sum(v > 0 for v in ls), 1)  # noqa: E731
    return mean_nz(pos) + mean_nz(neg)


def ref_proxy_anchor(x, y, proxies, margin, alpha):
    """Eq. 4 of Kim et al. 2020."""
    present = {int(c) for c in y}
    pos = neg = 0.0
    for c, p in enumerate(proxies):
        if c in present:
            pos += math.log1p(sum(math.exp(-alpha * (cos(xi, p) - margin)) for xi, yi in zip(x, y) if yi == c))
        neg += math.log1p(sum(math.exp(alpha * (cos(xi, p) + margin)) for xi, yi in zip(x, y) if yi != c))
    return pos / len(present) + neg / len(proxies)


def fd_grad(f, x, h=1e-6):
    x = np.asarray(x, np.float64)
    g = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[idx] += h
        down[idx] -= h
        g[idx] = (f(up) - f(down)) / (2 * h)
    return g


from test_losses import _grad as grad  # noqa: E402  (the backend-agnostic gradient helper)

from itemrec.losses.pairs import cosine_similarity  # noqa: E402


# ----------------------------------------------------------------- miner
@pytest.mark.parametrize("pattern", list(PATTERNS))
@pytest.mark.parametrize("eps", [0.0, 0.1, 0.5])
def test_miner_keeps_the_pairs_of_eq_7_8(pattern, eps):
    miner = MultiSimilarityMiner(eps)
    for seed in SEEDS:
        x, y = batch(seed, pattern)
        sim = cosine_similarity(ops.convert_to_tensor(x))
        pos, neg = (ops.convert_to_numpy(m) for m in miner(ops.convert_to_tensor(y), sim, inverted=True))
        # the same rule on the cosine distance 1 − S (smaller is closer) keeps the same pairs
        pos_d, neg_d = (ops.convert_to_numpy(m) for m in miner(ops.convert_to_tensor(y), 1.0 - sim))
        np.testing.assert_array_equal(pos_d, pos)
        np.testing.assert_array_equal(neg_d, neg)
        want_pos, want_neg = ref_ms_pairs(x, y, eps)
        assert set(zip(*np.nonzero(pos))) == want_pos and set(zip(*np.nonzero(neg))) == want_neg
        assert set(np.unique(pos)) <= {0.0, 1.0} and pos.dtype == np.float32
        if pattern in ("one_class", "all_distinct"):
            assert not want_pos and not want_neg
        elif pattern == "singletons":
            assert not any(y[i] in (2, 3, 4, 6) for i, _ in want_neg)  # no positive -> no negative mined
        if pattern in ("random", "pairs") and eps == 0.1:  # mining keeps some pairs and drops others
            all_pos, all_neg = ref_ms_pairs(x, y, None)
            assert 0 < len(want_neg) < len(all_neg) and len(want_pos) <= len(all_pos)


def test_miner_validates_and_serialises():
    with pytest.raises(ValueError):
        MultiSimilarityMiner(-0.1)
    config = keras.saving.serialize_keras_object(MultiSimilarityMiner(0.3))
    back = keras.saving.deserialize_keras_object(config)
    assert isinstance(back, MultiSimilarityMiner) and back.epsilon == 0.3


# ----------------------------------------------------------------- values against the equations
@pytest.mark.parametrize("pattern", list(PATTERNS))
@pytest.mark.parametrize("eps", [0.1, None])
def test_multi_similarity_matches_eq_10(pattern, eps):
    alpha, beta, base = 2.0, 50.0, 0.5
    loss = MultiSimilarityLoss(alpha, beta, base, miner=None if eps is None else MultiSimilarityMiner(eps))
    for seed in SEEDS:
        x, y = batch(seed, pattern)
        got, diag = run(loss, x, y)
        pairs = ref_ms_pairs(x, y, eps)
        want = ref_ms_loss(x, y, alpha, beta, base, pairs)
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=1e-7)
        assert diag["pos_pairs"] == pytest.approx(len(pairs[0]) / 12)
        assert diag["neg_pairs"] == pytest.approx(len(pairs[1]) / 12)
        if pairs[1]:
            mean_neg = np.mean([cos(x[i], x[j]) for i, j in pairs[1]])
            assert diag["mean_neg_sim"] == pytest.approx(mean_neg, abs=1e-6)
        if pattern in ("random", "pairs"):
            assert want > 0.01


@pytest.mark.parametrize("metric", ["l2", "squared_l2", "mse", "cosine"])
@pytest.mark.parametrize("pattern", list(PATTERNS))
def test_contrastive_matches_reference(metric, pattern):
    margins = {"l2": (0.2, 1.2), "squared_l2": (0.3, 1.5), "mse": (0.05, 0.3), "cosine": (0.1, 0.8)}[metric]
    loss = ContrastiveLoss(*margins, distance=metric)
    for seed in SEEDS:
        x, y = batch(seed, pattern)
        got, diag = run(loss, x, y)
        want = ref_contrastive(x, y, *margins, metric)
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=1e-7)
        np.testing.assert_allclose(diag["pos_loss"] + diag["neg_loss"], want, rtol=RTOL, atol=1e-7)
        assert want > 0.01


@pytest.mark.parametrize("pattern", list(PATTERNS))
def test_proxy_anchor_matches_eq_4(pattern):
    for seed in SEEDS:
        x, y = batch(seed, pattern)
        proxies = np.random.default_rng(100 + seed).normal(size=(N_CLASSES, x.shape[1])).astype(np.float32)
        loss = ProxyAnchorLoss(N_CLASSES, margin=0.1, alpha=32.0)
        loss.set_proxies(proxies)
        got, diag = run(loss, x, y)
        want = ref_proxy_anchor(x, y, proxies, 0.1, 32.0)
        np.testing.assert_allclose(got, want, rtol=RTOL)
        np.testing.assert_allclose(diag["pos_term"] + diag["neg_term"], want, rtol=RTOL)
        assert want > 1.0


# ----------------------------------------------------------------- gradients against finite differences
CASES = {
    "ms_mined": lambda: MultiSimilarityLoss(2.0, 10.0, 0.5),
    "ms_all": lambda: MultiSimilarityLoss(2.0, 10.0, 0.5, miner=None),
    "contrastive": lambda: ContrastiveLoss(0.2, 1.2),
    "contrastive_cosine": lambda: ContrastiveLoss(0.1, 0.8, distance="cosine"),
    "proxy_anchor": lambda: ProxyAnchorLoss(N_CLASSES, margin=0.1, alpha=8.0),
}


def reference_of(name, x, y, proxies=None):
    """The float64 reference as a function of the embeddings (mined pairs frozen at ``x``, as stop_gradient does)."""
    if name.startswith("ms"):
        pairs = ref_ms_pairs(x, y, 0.1 if name == "ms_mined" else None)
        return lambda e: ref_ms_loss(e, y, 2.0, 10.0, 0.5, pairs)
    if name == "contrastive":
        return lambda e: ref_contrastive(e, y, 0.2, 1.2, "l2")
    if name == "contrastive_cosine":
        return lambda e: ref_contrastive(e, y, 0.1, 0.8, "cosine")
    return lambda e: ref_proxy_anchor(e, y, proxies, 0.1, 8.0)


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("pattern", ["random", "singletons"])
def test_embedding_gradient_matches_finite_differences(name, pattern):
    for seed in SEEDS[:2]:
        x, y = batch(seed, pattern, b=8, dim=4)
        loss = CASES[name]()
        proxies = np.random.default_rng(seed + 7).normal(size=(N_CLASSES, 4)).astype(np.float32)
        if name == "proxy_anchor":
            loss.set_proxies(proxies)
        got = grad(lambda e: loss.compute(e, ops.convert_to_tensor(y))[0], x)
        want = fd_grad(reference_of(name, x, y, proxies), x)
        assert np.abs(want).max() > 1e-3
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=2e-5)


def test_proxy_gradient_matches_finite_differences():
    if keras.backend.backend() != "tensorflow":
        pytest.skip("proxy gradient via tf.GradientTape")
    import tensorflow as tf

    for pattern in ("random", "singletons"):
        x, y = batch(5, pattern, b=8, dim=4)
        proxies = np.random.default_rng(9).normal(size=(N_CLASSES, 4)).astype(np.float32)
        loss = ProxyAnchorLoss(N_CLASSES, margin=0.1, alpha=8.0)
        loss.set_proxies(proxies)
        with tf.GradientTape() as tape:
            value = loss.compute(x, y)[0]
        got = tape.gradient(value, loss.proxies.value).numpy()
        want = fd_grad(lambda p: ref_proxy_anchor(x, y, p, 0.1, 8.0), proxies)
        assert np.abs(want).max() > 1e-3
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=2e-5)


# ----------------------------------------------------------------- pytorch-metric-learning
def assert_grad_close(got, want, rtol=1e-4):
    """Float32 gradients: elementwise ``rtol``, plus an absolute slack of 1e-5 of the largest component."""
    np.testing.assert_allclose(got, want, rtol=rtol, atol=1e-5 * float(np.abs(want).max()) + 1e-7)


def pml_value_and_grad(pml_loss, x, y, miner=None, proxies=None):
    import torch

    xt = torch.tensor(x, requires_grad=True)
    yt = torch.tensor(y)
    indices = None if miner is None else miner(xt, yt)
    value = pml_loss(xt, yt, indices)
    value.backward()
    return float(value.detach()), xt.grad.numpy()


@pytest.mark.parametrize("pattern", list(PATTERNS))
def test_miner_agrees_with_pml(pattern):
    pytest.importorskip("pytorch_metric_learning")
    import torch
    from pytorch_metric_learning import miners

    for seed in SEEDS:
        x, y = batch(seed, pattern)
        for eps in (0.05, 0.1, 0.4):
            a1, p, a2, n = (t.numpy() for t in miners.MultiSimilarityMiner(epsilon=eps)(torch.tensor(x), torch.tensor(y)))
            sim = cosine_similarity(ops.convert_to_tensor(x))
            pos, neg = (ops.convert_to_numpy(m) for m in MultiSimilarityMiner(eps)(y, sim, inverted=True))
            assert set(zip(*np.nonzero(pos))) == set(zip(a1, p)) and set(zip(*np.nonzero(neg))) == set(zip(a2, n))
            assert pos.sum() == len(a1) and neg.sum() == len(a2)  # PML lists each pair once


@pytest.mark.parametrize("pattern", ["random", "singletons", "pairs", "one_class", "all_distinct"])
def test_multi_similarity_agrees_with_pml(pattern):
    pml = pytest.importorskip("pytorch_metric_learning")
    from pytorch_metric_learning import losses, miners

    for seed in SEEDS:
        x, y = batch(seed, pattern)
        for alpha, beta, base, eps in [(2.0, 50.0, 0.5, 0.1), (1.0, 20.0, 0.3, 0.3), (2.0, 40.0, 0.5, None)]:
            ours = MultiSimilarityLoss(alpha, beta, base, miner=None if eps is None else MultiSimilarityMiner(eps))
            theirs = losses.MultiSimilarityLoss(alpha=alpha, beta=beta, base=base)
            miner = None if eps is None else miners.MultiSimilarityMiner(epsilon=eps)
            want, want_grad = pml_value_and_grad(theirs, x, y, miner)
            got, _ = run(ours, x, y)
            np.testing.assert_allclose(got, want, rtol=RTOL, atol=1e-6)
            got_grad = grad(lambda e: ours.compute(e, ops.convert_to_tensor(y))[0], x)
            assert_grad_close(got_grad, want_grad)
    assert pml.__version__


@pytest.mark.parametrize("metric", ["l2", "squared_l2", "cosine"])
@pytest.mark.parametrize("pattern", ["random", "singletons", "pairs", "one_class", "all_distinct"])
def test_contrastive_agrees_with_pml(metric, pattern):
    pytest.importorskip("pytorch_metric_learning")
    from pytorch_metric_learning import distances, losses

    pm, nm = {"l2": (0.2, 1.2), "squared_l2": (0.3, 1.5), "cosine": (0.1, 0.8)}[metric]
    if metric == "l2":
        theirs = losses.ContrastiveLoss(pos_margin=pm, neg_margin=nm)  # default LpDistance on normalised embeddings
    elif metric == "squared_l2":
        theirs = losses.ContrastiveLoss(pos_margin=pm, neg_margin=nm, distance=distances.LpDistance(power=2))
    else:  # PML's cosine is a similarity s = 1 − d: [d − m]_+ = [(1 − m) − s]_+, so its margins are 1 − ours
        theirs = losses.ContrastiveLoss(pos_margin=1 - pm, neg_margin=1 - nm, distance=distances.CosineSimilarity())
    ours = ContrastiveLoss(pm, nm, distance=metric)
    for seed in SEEDS:
        x, y = batch(seed, pattern)
        want, want_grad = pml_value_and_grad(theirs, x, y)
        got, _ = run(ours, x, y)
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=1e-6)
        got_grad = grad(lambda e: ours.compute(e, ops.convert_to_tensor(y))[0], x)
        assert_grad_close(got_grad, want_grad)
        assert want > 0.01


@pytest.mark.parametrize("pattern", ["random", "singletons", "pairs", "one_class", "all_distinct"])
def test_proxy_anchor_agrees_with_pml(pattern):
    pytest.importorskip("pytorch_metric_learning")
    import torch
    from pytorch_metric_learning import losses

    for seed in SEEDS:
        x, y = batch(seed, pattern)
        for margin, alpha in [(0.1, 32.0), (0.2, 16.0)]:
            ours = ProxyAnchorLoss(N_CLASSES, margin=margin, alpha=alpha)
            ours.build_for(x.shape[1])  # our own (random) initial proxies, copied into PML's
            theirs = losses.ProxyAnchorLoss(N_CLASSES, x.shape[1], margin=margin, alpha=alpha)
            with torch.no_grad():
                theirs.proxies.copy_(torch.tensor(ops.convert_to_numpy(ours.proxies)))
            want, want_grad = pml_value_and_grad(theirs, x, y)
            got, _ = run(ours, x, y)
            np.testing.assert_allclose(got, want, rtol=RTOL)
            got_grad = grad(lambda e: ours.compute(e, ops.convert_to_tensor(y))[0], x)
            assert_grad_close(got_grad, want_grad)
            if keras.backend.backend() == "tensorflow":
                import tensorflow as tf

                with tf.GradientTape() as tape:
                    value = ours.compute(x, y)[0]
                got_p = tape.gradient(value, ours.proxies.value).numpy()
                assert_grad_close(got_p, theirs.proxies.grad.numpy())


def test_proxy_initialiser_has_pml_scale():
    """kaiming_normal_(mode="fan_out") on (n_classes, D): std √(2 / n_classes) (torch's fan_out is n_classes)."""
    keras.utils.set_random_seed(0)
    loss = ProxyAnchorLoss(50)
    loss.build_for(400)
    p = ops.convert_to_numpy(loss.proxies)
    assert p.shape == (50, 400)
    assert np.std(p) == pytest.approx(math.sqrt(2 / 50), rel=0.03) and abs(np.mean(p)) < 0.01
    assert np.abs(p).max() > 2.5 * math.sqrt(2 / 50)  # untruncated


# ----------------------------------------------------------------- serialisation and set_* methods
SERIALISED = {
    "ms_mined": lambda: MultiSimilarityLoss(1.5, 30.0, 0.4, miner=MultiSimilarityMiner(0.2)),
    "ms_all": lambda: MultiSimilarityLoss(miner=None),
    "contrastive": lambda: ContrastiveLoss(0.1, 0.9, distance="cosine"),
    "proxy_anchor": lambda: ProxyAnchorLoss(N_CLASSES, margin=0.2, alpha=16.0),
}


@pytest.mark.parametrize("name", list(SERIALISED))
def test_serialisation_round_trip(name):
    loss = SERIALISED[name]()
    x, y = batch(4)
    proxies = np.random.default_rng(1).normal(size=(N_CLASSES, x.shape[1])).astype(np.float32)
    if name == "proxy_anchor":
        loss.set_proxies(proxies)
    config = keras.saving.serialize_keras_object(loss)
    back = keras.saving.deserialize_keras_object(config)
    assert type(back) is type(loss) and back.get_config() == loss.get_config()
    assert keras.saving.serialize_keras_object(back) == config
    if name == "proxy_anchor":  # weights are not part of the config
        back.set_proxies(proxies)
    assert run(back, x, y)[0] == pytest.approx(run(loss, x, y)[0], rel=1e-6)
    if name == "ms_mined":
        assert isinstance(back.miner, MultiSimilarityMiner) and back.miner.epsilon == 0.2
        assert config["config"]["miner"]["config"] == {"epsilon": 0.2}
    if name == "ms_all":
        assert back.miner is None


def test_constructor_validation():
    with pytest.raises(ValueError):
        MultiSimilarityLoss(alpha=0.0)
    with pytest.raises(ValueError, match="unknown miner"):
        MultiSimilarityLoss(miner="multi_similarity")
    with pytest.raises(ValueError, match="not a PairMiner"):
        MultiSimilarityLoss(miner="batch_hard")  # a triplet miner
    with pytest.raises(TypeError):
        MultiSimilarityLoss(miner=3)
    with pytest.raises(ValueError):
        ContrastiveLoss(distance="manhattan")
    with pytest.raises(ValueError):
        ProxyAnchorLoss(0)
    with pytest.raises(ValueError):
        MultiSimilarityLoss().compute(np.zeros((4, 3), np.float32), None)


def test_set_proxies_builds_assigns_and_checks_shape():
    loss = ProxyAnchorLoss(3)
    values = np.arange(12, dtype=np.float32).reshape(3, 4)
    loss.set_proxies(values)
    assert loss.built and np.array_equal(ops.convert_to_numpy(loss.proxies), values)
    for bad in (np.zeros((4, 4)), np.zeros((3, 5)), np.zeros(12), np.zeros((3, 4, 1))):
        with pytest.raises(ValueError):
            loss.set_proxies(bad)
    assert np.array_equal(ops.convert_to_numpy(loss.proxies), values)  # unchanged by the failed calls


@pytest.mark.parametrize("cls", [CosineSoftmax, ArcFace])
def test_set_anchors_builds_assigns_transposed_and_checks_shape(cls):
    head = cls(3, scale=4.0)
    classes = np.random.default_rng(0).normal(size=(3, 5)).astype(np.float32)
    head.set_anchors(classes)
    assert head.built and np.array_equal(ops.convert_to_numpy(head.anchors), classes.T)
    x = np.random.default_rng(1).normal(size=(7, 5)).astype(np.float32)
    want = np.stack([[cos(u, c) for c in classes] for u in x])
    np.testing.assert_allclose(ops.convert_to_numpy(head.cosine(x)), want, atol=1e-6)
    for bad in (classes.T, np.zeros((3, 4)), np.zeros(15), np.zeros((2, 5))):
        with pytest.raises(ValueError):
            head.set_anchors(bad)
    built = cls(3)
    built.build((None, 5))
    built.set_anchors(classes)
    assert np.array_equal(ops.convert_to_numpy(built.anchors), classes.T)


# ----------------------------------------------------------------- model.fit
FIT = {
    "ms_mined": lambda: MultiSimilarityLoss(),
    "ms_all": lambda: MultiSimilarityLoss(miner=None),
    "contrastive": lambda: ContrastiveLoss(0.0, 1.0),
    "proxy_anchor": lambda: ProxyAnchorLoss(4),
}


@pytest.mark.parametrize("name", list(FIT))
def test_trains_through_metric_learning_model(name):
    from itemrec.models import MetricLearningModel

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 8)
    x = (rng.normal(size=(4, 16))[y] + 1.5 * rng.normal(size=(32, 16))).astype(np.float32)
    inputs = keras.Input((16,))
    head = keras.Model(inputs, keras.layers.Dense(8)(keras.layers.Dense(32, activation="relu")(inputs)))
    loss = FIT[name]()
    model = MetricLearningModel(head, loss)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    before = [ops.convert_to_numpy(w).copy() for w in loss.trainable_weights]
    hist = model.fit(x, y, epochs=8, batch_size=32, shuffle=False, verbose=0).history
    assert np.isfinite(hist["loss"]).all() and hist["loss"][-1] < 0.9 * hist["loss"][0], hist["loss"]
    assert set(loss.metric_names) <= set(hist)
    if name == "proxy_anchor":  # the proxies train with the model
        assert not np.allclose(before[0], ops.convert_to_numpy(loss.proxies))
