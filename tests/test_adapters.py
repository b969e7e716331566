"""LinearAdapter / ResidualAdapter (itemrec.models.adapters) and build_head(kind=...).

Every expected value comes from a NumPy reference, scikit-learn, or arithmetic
written in the comments, never from the implementation itself.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
from sklearn.decomposition import PCA

from itemrec.models import build_head
from itemrec.models.adapters import LinearAdapter, ResidualAdapter

SRC = Path(__file__).resolve().parents[1] / "src"


def _weights(layer) -> dict[str, np.ndarray]:
    return {w.name: np.asarray(w.numpy()) for w in layer.weights}


def _total_loss(model) -> float:
    return float(sum(float(np.sum(np.asarray(loss))) for loss in model.losses))


# --------------------------------------------------------------------------- LinearAdapter


def test_linear_identity_output_equals_input_exactly():
    x = np.random.default_rng(0).normal(size=(7, 16)).astype(np.float32)
    layer = LinearAdapter()  # units=None, init="identity"
    out = np.asarray(layer(x))
    # x @ I + 0 is exact in float32 (every other product is x * 0 = 0)
    np.testing.assert_array_equal(out, x)
    assert out.dtype == np.float32
    w = _weights(layer)
    np.testing.assert_array_equal(w["kernel"], np.eye(16, dtype=np.float32))
    np.testing.assert_array_equal(w["bias"], np.zeros(16, np.float32))
    # the anchors start at the same point
    np.testing.assert_array_equal(w["kernel_init"], w["kernel"])
    np.testing.assert_array_equal(w["bias_init"], w["bias"])
    # units = D explicitly is the same
    np.testing.assert_array_equal(np.asarray(LinearAdapter(16, "identity")(x)), x)


def test_linear_identity_wrong_units_raises():
    with pytest.raises(ValueError, match="identity"):
        LinearAdapter(4, "identity").build((None, 8))
    with pytest.raises(ValueError):
        LinearAdapter(12, "identity")(np.zeros((2, 8), np.float32))


def test_linear_pca_more_units_than_inputs_raises():
    with pytest.raises(ValueError, match="PCA"):
        LinearAdapter(9, "pca").build((None, 8))


def test_linear_unknown_init_raises():
    with pytest.raises(ValueError, match="init"):
        LinearAdapter(4, "orthogonal")


def test_linear_bad_units_and_decay_raise():
    with pytest.raises(ValueError):
        LinearAdapter(0, "pca")
    with pytest.raises(ValueError):
        LinearAdapter(None, "identity", decay_to_init=-0.1)
    with pytest.raises(ValueError):
        ResidualAdapter(hidden=0)


def test_linear_pca_before_fit_passes_first_coordinates():
    # documented: until fit_pca the kernel is eye(D, units), so y = x[:, :units]
    x = np.random.default_rng(1).normal(size=(5, 6)).astype(np.float32)
    out = np.asarray(LinearAdapter(3, "pca")(x))
    np.testing.assert_array_equal(out, x[:, :3])


def test_linear_fit_pca_matches_sklearn_and_sets_anchors():
    rng = np.random.default_rng(2)
    # anisotropic data with a non-zero mean so both W and b matter; distinct variances
    # (scales 5, 4, ..., 0.2) keep the principal directions well defined
    scales = np.array([5.0, 4.0, 3.0, 2.0, 1.5, 1.0, 0.8, 0.6, 0.4, 0.3, 0.25, 0.2])
    rotation, _ = np.linalg.qr(rng.normal(size=(12, 12)))
    x = (rng.normal(size=(300, 12)) * scales) @ rotation.T + rng.normal(size=12) * 3.0
    units = 5
    layer = LinearAdapter(units, "pca")
    assert layer.fit_pca(x) is layer
    out = np.asarray(layer(x.astype(np.float32)))

    expected = PCA(n_components=units).fit(x).transform(x)
    assert out.shape == (300, units)
    np.testing.assert_allclose(out, expected, atol=1e-4, rtol=1e-4)

    # anchors moved with the weights
    pca = PCA(n_components=units, svd_solver="full").fit(x)
    w = _weights(layer)
    np.testing.assert_allclose(w["kernel"], pca.components_.T, atol=1e-6)
    np.testing.assert_allclose(w["bias"], -pca.mean_ @ pca.components_.T, atol=1e-5)
    np.testing.assert_array_equal(w["kernel_init"], w["kernel"])
    np.testing.assert_array_equal(w["bias_init"], w["bias"])


def test_linear_fit_pca_rejects_bad_features():
    layer = LinearAdapter(5, "pca")
    with pytest.raises(ValueError):
        layer.fit_pca(np.random.default_rng(0).normal(size=(4, 8)))  # 4 rows < 5 units
    layer = LinearAdapter(3, "pca")
    layer.build((None, 8))
    with pytest.raises(ValueError):
        layer.fit_pca(np.random.default_rng(0).normal(size=(20, 6)))  # wrong width


def test_linear_random_init_is_glorot_uniform():
    keras.utils.set_random_seed(3)
    d = 256
    layer = LinearAdapter(None, "random")
    x = np.random.default_rng(3).normal(size=(4, d)).astype(np.float32)
    out = np.asarray(layer(x))
    kernel = _weights(layer)["kernel"]
    # glorot_uniform: U(-limit, limit), limit = sqrt(6 / (fan_in + fan_out)) = sqrt(6 / 512) = 0.10825;
    # std of U(-a, a) is a / sqrt(3) = sqrt(2 / 512) = 0.0625. 65536 draws: the sample std is within ~0.2%.
    limit = np.sqrt(6.0 / (d + d))
    assert np.abs(kernel).max() <= limit + 1e-7
    assert np.abs(kernel).max() > 0.95 * limit  # the range is really used
    assert kernel.std() == pytest.approx(limit / np.sqrt(3.0), rel=0.03)
    assert abs(kernel.mean()) < 0.01 * limit
    np.testing.assert_array_equal(_weights(layer)["bias"], np.zeros(d, np.float32))
    # not the identity: the diagonal is no different from the rest
    assert np.abs(np.diag(kernel)).max() <= limit + 1e-7
    assert np.abs(out - x).mean() > 0.5
    np.testing.assert_allclose(out, x @ kernel, rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------- ResidualAdapter


def test_residual_identity_at_init_and_numpy_reference_after():
    rng = np.random.default_rng(4)
    d, hidden = 10, 6
    x = rng.normal(size=(9, d)).astype(np.float32)
    layer = ResidualAdapter(hidden)
    # W2 = 0, b2 = 0: relu(...) @ 0 + 0 = 0 exactly, so y = x exactly
    np.testing.assert_array_equal(np.asarray(layer(x)), x)
    w = _weights(layer)
    assert w["down_kernel"].shape == (d, hidden) and w["up_kernel"].shape == (hidden, d)
    np.testing.assert_array_equal(w["up_kernel"], 0.0)

    w1 = rng.normal(size=(d, hidden)).astype(np.float32)
    b1 = rng.normal(size=hidden).astype(np.float32)
    w2 = rng.normal(size=(hidden, d)).astype(np.float32)
    b2 = rng.normal(size=d).astype(np.float32)
    layer.down.assign(w1)
    layer.down_bias.assign(b1)
    layer.up.assign(w2)
    layer.up_bias.assign(b2)
    x64 = x.astype(np.float64)
    h = np.maximum(x64 @ w1 + b1, 0.0)
    assert 0 < (h > 0).mean() < 1  # the ReLU really cuts some units
    expected = x64 + h @ w2 + b2
    np.testing.assert_allclose(np.asarray(layer(x)), expected, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- decay_to_init (L2-SP)


@pytest.mark.parametrize("lam", [0.3, 2.5])
def test_linear_decay_to_init_penalty(lam):
    d = 8
    rng = np.random.default_rng(5)
    head = build_head(d, None, 0.0, kind="linear", decay_to_init=lam)
    adapter = head.get_layer("adapter")
    delta_w = (rng.normal(size=(d, d)) * 0.1).astype(np.float32)
    delta_b = (rng.normal(size=d) * 0.1).astype(np.float32)
    adapter.kernel.assign(np.eye(d, dtype=np.float32) + delta_w)
    adapter.bias.assign(delta_b)
    x = rng.normal(size=(4, d)).astype(np.float32)

    head(x, training=True)
    # λ Σ (θ − θ₀)² over kernel and bias, θ₀ = (I, 0)
    expected = lam * (np.sum(delta_w.astype(np.float64) ** 2) + np.sum(delta_b.astype(np.float64) ** 2))
    assert len(head.losses) == 1
    assert _total_loss(head) == pytest.approx(expected, rel=1e-4)

    head(x, training=False)
    assert head.losses == []


def test_linear_decay_zero_adds_no_loss():
    d = 8
    head = build_head(d, None, 0.0, kind="linear", decay_to_init=0.0)
    adapter = head.get_layer("adapter")
    adapter.kernel.assign(np.eye(d, dtype=np.float32) + 0.5)
    head(np.ones((2, d), np.float32), training=True)
    assert head.losses == []


def test_linear_decay_is_zero_at_the_anchor_and_follows_reset_anchor():
    d = 6
    head = build_head(d, None, 0.0, kind="linear", decay_to_init=4.0)
    adapter = head.get_layer("adapter")
    x = np.ones((2, d), np.float32)
    head(x, training=True)
    assert _total_loss(head) == 0.0  # untouched weights: θ = θ₀
    adapter.kernel.assign(np.full((d, d), 0.25, np.float32))
    adapter.reset_anchor()
    head(x, training=True)
    assert _total_loss(head) == 0.0
    adapter.bias.assign(np.full(d, 0.5, np.float32))
    head(x, training=True)
    # 4 · 6 · 0.5² = 6
    assert _total_loss(head) == pytest.approx(6.0, rel=1e-6)


@pytest.mark.parametrize("lam", [0.0, 1.7])
def test_residual_decay_to_init_penalty(lam):
    d, hidden = 8, 5
    rng = np.random.default_rng(6)
    head = build_head(d, None, 0.0, hidden=hidden, kind="residual", decay_to_init=lam)
    adapter = head.get_layer("adapter")
    assert isinstance(adapter, ResidualAdapter) and adapter.hidden == hidden
    w0 = _weights(adapter)
    delta_up = (rng.normal(size=(hidden, d)) * 0.2).astype(np.float32)
    delta_down = (rng.normal(size=(d, hidden)) * 0.2).astype(np.float32)
    delta_b1 = (rng.normal(size=hidden) * 0.2).astype(np.float32)
    adapter.up.assign(delta_up)  # from 0
    adapter.down.assign(w0["down_kernel"] + delta_down)
    adapter.down_bias.assign(delta_b1)  # from 0
    x = rng.normal(size=(3, d)).astype(np.float32)

    head(x, training=True)
    if lam == 0.0:
        assert head.losses == []
        return
    # the down kernel's delta passes through float32 rounding of (w0 + δ) − w0
    d_down = (w0["down_kernel"] + delta_down).astype(np.float64) - w0["down_kernel"]
    expected = lam * (np.sum(delta_up.astype(np.float64) ** 2) + np.sum(d_down ** 2)
                      + np.sum(delta_b1.astype(np.float64) ** 2))
    assert _total_loss(head) == pytest.approx(expected, rel=1e-4)
    head(x, training=False)
    assert head.losses == []


# --------------------------------------------------------------------------- training with L2-SP


def _clustered(seed: int, n_classes: int = 4, per_class: int = 40, d: int = 12):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, d)) * 2.0
    y = np.repeat(np.arange(n_classes), per_class)
    x = centres[y] + rng.normal(size=(len(y), d))
    return x.astype(np.float32), y.astype(np.int32)


def _train_kernel_distance(lam: float, x: np.ndarray, y: np.ndarray, kind: str = "linear") -> float:
    from itemrec.losses import CosineSoftmax, SoftmaxLoss
    from itemrec.models import MetricLearningModel

    keras.utils.set_random_seed(11)
    d = x.shape[1]
    head = build_head(d, None, 0.0, hidden=8, kind=kind, decay_to_init=lam)
    adapter = head.get_layer("adapter")
    start = {k: v.copy() for k, v in _weights(adapter).items()}
    model = MetricLearningModel(head, SoftmaxLoss(head=CosineSoftmax(int(y.max()) + 1)))
    model.compile(optimizer=keras.optimizers.Adam(0.02))
    model.fit(x, y, batch_size=32, epochs=6, shuffle=False, verbose=0)
    now = _weights(adapter)
    # Frobenius distance of all trainable weights from where they started (identity for the linear adapter)
    if kind == "linear":
        np.testing.assert_array_equal(start["kernel"], np.eye(d, dtype=np.float32))
    trainable = [w.name for w in adapter.trainable_weights]
    # anchors never train
    for name in trainable:
        np.testing.assert_array_equal(now[f"{name}_init"], start[f"{name}_init"])
    return float(np.sqrt(sum(np.sum((now[n].astype(np.float64) - start[n]) ** 2) for n in trainable)))


@pytest.mark.parametrize("kind", ["linear", "residual"])
def test_decay_to_init_keeps_weights_near_start_in_training(kind):
    x, y = _clustered(7)
    free = _train_kernel_distance(0.0, x, y, kind)
    held = _train_kernel_distance(10.0, x, y, kind)
    assert free > 0.3  # training really moved the adapter
    assert held < 0.25 * free


# --------------------------------------------------------------------------- serialisation


def _model_with(layer: keras.layers.Layer, d: int) -> keras.Model:
    inputs = keras.Input((d,))
    return keras.Model(inputs, layer(inputs))


def _linear_saved_case(d: int = 10):
    rng = np.random.default_rng(8)
    feats = rng.normal(size=(50, d)) * np.linspace(3.0, 0.5, d) + 1.0
    layer = LinearAdapter(4, "pca", decay_to_init=0.7, name="lin")
    model = _model_with(layer, d)
    layer.fit_pca(feats)
    # move the kernel off its anchor so that both must be restored separately
    layer.kernel.assign(layer.kernel.numpy() + 0.05)
    return model, layer


def _residual_saved_case(d: int = 10):
    rng = np.random.default_rng(9)
    layer = ResidualAdapter(6, decay_to_init=1.3, name="res")
    model = _model_with(layer, d)
    layer.up.assign(rng.normal(size=(6, d)).astype(np.float32))
    layer.up_bias.assign(rng.normal(size=d).astype(np.float32))
    return model, layer


@pytest.mark.parametrize("case", [_linear_saved_case, _residual_saved_case])
def test_adapter_save_load_round_trip(case, tmp_path):
    d = 10
    model, layer = case(d)
    x = np.random.default_rng(10).normal(size=(6, d)).astype(np.float32)
    before = np.asarray(model(x))
    model(x, training=True)
    penalty_before = _total_loss(model)
    assert penalty_before > 0  # the weights differ from the anchors
    # the output is not the identity (a trivially restorable layer would prove nothing)
    assert np.abs(before[:, : before.shape[1]] - x[:, : before.shape[1]]).max() > 1e-2

    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    new_layer = loaded.get_layer(layer.name)
    assert type(new_layer) is type(layer)
    np.testing.assert_allclose(np.asarray(loaded(x)), before, rtol=1e-6, atol=1e-6)
    for name, value in _weights(layer).items():
        np.testing.assert_array_equal(_weights(new_layer)[name], value)
    assert new_layer.decay_to_init == layer.decay_to_init
    loaded(x, training=True)
    assert _total_loss(loaded) == pytest.approx(penalty_before, rel=1e-6)


def test_adapter_get_config_round_trips():
    lin = LinearAdapter(7, "random", decay_to_init=0.25, name="a")
    cfg = lin.get_config()
    assert (cfg["units"], cfg["init"], cfg["decay_to_init"]) == (7, "random", 0.25)
    assert LinearAdapter.from_config(cfg).get_config() == cfg
    res = ResidualAdapter(33, decay_to_init=3.0, name="b")
    cfg = res.get_config()
    assert (cfg["hidden"], cfg["decay_to_init"]) == (33, 3.0)
    assert ResidualAdapter.from_config(cfg).get_config() == cfg
    none_units = LinearAdapter(None, "identity")
    assert LinearAdapter.from_config(none_units.get_config()).units is None


def test_register_custom_objects_is_enough_to_load(tmp_path):
    d = 10
    lin_model, _ = _linear_saved_case(d)
    res_model, _ = _residual_saved_case(d)
    x = np.random.default_rng(12).normal(size=(5, d)).astype(np.float32)
    for tag, model in (("lin", lin_model), ("res", res_model)):
        model.save(tmp_path / f"{tag}.keras")
        np.save(tmp_path / f"{tag}_out.npy", np.asarray(model(x)))
    np.save(tmp_path / "x.npy", x)
    # a fresh interpreter: only the registration call may make the classes known
    script = textwrap.dedent(
        f"""
        import os, sys
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
        import numpy as np, keras
        root = {str(tmp_path)!r}
        x = np.load(os.path.join(root, "x.npy"))
        assert "itemrec.models.adapters" not in sys.modules
        try:
            keras.saving.load_model(os.path.join(root, "lin.keras"))
        except Exception:
            print("UNREGISTERED_FAILS")
        from itemrec.models import register_custom_objects
        register_custom_objects()
        for tag in ("lin", "res"):
            model = keras.saving.load_model(os.path.join(root, tag + ".keras"))
            want = np.load(os.path.join(root, tag + "_out.npy"))
            np.testing.assert_allclose(np.asarray(model(x)), want, rtol=1e-6, atol=1e-6)
        print("LOADED_OK")
        """
    )
    env = {**__import__("os").environ, "PYTHONPATH": str(SRC), "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "LOADED_OK" in proc.stdout
    # without registration Keras cannot find the classes (so the check above is meaningful)
    assert "UNREGISTERED_FAILS" in proc.stdout


# --------------------------------------------------------------------------- build_head(kind=...)


def test_build_head_linear_pca_shape_and_unit_norm():
    d, b = 128, 9
    x = np.random.default_rng(13).normal(size=(b, d)).astype(np.float32)
    head = build_head(d, 64, 0.0, kind="linear", init="pca")
    out = np.asarray(head(x))
    assert out.shape == (b, 64)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-6)
    adapter = head.get_layer("adapter")
    assert isinstance(adapter, LinearAdapter) and adapter.init == "pca" and adapter.units == 64
    # before fit_pca the adapter passes the first 64 features; then L2 normalisation
    first = x[:, :64].astype(np.float64)
    np.testing.assert_allclose(out, first / np.linalg.norm(first, axis=1, keepdims=True), atol=1e-6)


def test_build_head_linear_default_is_identity_then_normalised():
    d = 20
    x = np.random.default_rng(14).normal(size=(5, d)).astype(np.float32)
    head = build_head(d, None, 0.0, kind="linear")
    out = np.asarray(head(x))
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(out, x64 / np.linalg.norm(x64, axis=1, keepdims=True), atol=1e-6)
    raw = np.asarray(build_head(d, None, 0.0, kind="linear", l2_normalize=False)(x))
    np.testing.assert_array_equal(raw, x)


def test_build_head_residual_is_identity_at_start():
    d = 12
    x = np.random.default_rng(15).normal(size=(4, d)).astype(np.float32)
    head = build_head(d, 64, 0.0, hidden=16, kind="residual", l2_normalize=False)
    assert head.output_shape == (None, d)  # the residual adapter keeps D
    np.testing.assert_array_equal(np.asarray(head(x)), x)


def test_build_head_unknown_kind_raises():
    with pytest.raises(ValueError, match="kind"):
        build_head(16, 8, 0.0, kind="transformer")
