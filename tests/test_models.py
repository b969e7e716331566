"""Backbones, freezing, the embedding model and saving/loading with every loss."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")
from keras import ops  # noqa: E402

from itemrec.losses import ArcFace, CenterLoss, CosFace, CosineSoftmax, SoftmaxLoss, TripletLoss  # noqa: E402
from itemrec.mining import RandomTripletMiner  # noqa: E402
from itemrec.models import (  # noqa: E402
    BACKBONES,
    L2Normalize,
    MetricLearningModel,
    attach_head,
    build_backbone,
    build_classifier,
    build_embedding_model,
    build_head,
    preprocess_input_for,
    set_trainable,
)


def tiny_embedding_model(dim: int = 8, **kw):
    kw.setdefault("dropout", 0.0)
    return build_embedding_model("small_cnn", 32, None, embedding_dim=dim, hidden=16, **kw)


def images(n=8, size=32, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3)).astype("float32")


# ----------------------------------------------------------------- backbones
def test_preprocess_functions_are_the_backbones_own():
    x = np.array([[[[0.0, 127.5, 255.0]]]], np.float32)
    # MobileNetV2 / InceptionV3 ("tf" mode): x / 127.5 − 1 → −1, 0, 1
    np.testing.assert_allclose(ops.convert_to_numpy(preprocess_input_for("mobilenet_v2")(x)), [[[[-1, 0, 1]]]])
    np.testing.assert_allclose(ops.convert_to_numpy(preprocess_input_for("inception_v3")(x)), [[[[-1, 0, 1]]]])
    # VGG16 / ResNet50 ("caffe" mode): RGB → BGR, minus the ImageNet BGR means 103.939, 116.779, 123.68
    np.testing.assert_allclose(
        ops.convert_to_numpy(preprocess_input_for("vgg16")(x)),
        [[[[255 - 103.939, 127.5 - 116.779, 0 - 123.68]]]], rtol=1e-5,
    )
    np.testing.assert_allclose(ops.convert_to_numpy(preprocess_input_for("small_cnn")(x)), [[[[0, 0.5, 1]]]])
    assert BACKBONES["inception_v3"].min_size == 75 and BACKBONES["mobilenet_v2"].default_size == 224


@pytest.mark.parametrize("size", [96, 160])
def test_mobilenet_v2_loads_local_imagenet_weights(mobilenet_weights, size):
    import h5py

    model = build_backbone("mobilenet_v2", size, mobilenet_weights)
    assert model.output_shape == (None, size // 32, size // 32, 1280)
    with h5py.File(mobilenet_weights, "r") as f:
        kernel = np.asarray(f["Conv1"]["Conv1"]["kernel"])
    np.testing.assert_array_equal(model.get_layer("Conv1").kernel.numpy(), kernel)


@pytest.mark.slow
@pytest.mark.parametrize(
    "name,size,channels",
    [("inception_v3", 75, 2048), ("vgg16", 32, 512), ("resnet50", 32, 2048), ("efficientnet_b0", 32, 1280)],
)
def test_other_backbones_build_without_weights(name, size, channels):
    model = build_backbone(name, size, weights=None)
    assert model.output_shape[-1] == channels and len(model.output_shape) == 4


def test_backbone_errors():
    with pytest.raises(ValueError, match="unknown backbone 'alexnet'"):
        build_backbone("alexnet", 64, None)
    with pytest.raises(ValueError, match="input_size >= 75"):
        build_backbone("inception_v3", 64, None)
    with pytest.raises(FileNotFoundError, match="nowhere.h5"):
        build_backbone("mobilenet_v2", 96, "/nowhere.h5")


def test_set_trainable_modes_keep_batchnorm_frozen():
    base = build_backbone("small_cnn", 32, None)
    weighted = [layer for layer in base.layers if layer.weights]  # 4 × (conv, bn)
    assert len(weighted) == 8
    set_trainable(base, "frozen")
    assert base.trainable_weights == []
    set_trainable(base, "all")
    assert [layer.trainable for layer in weighted] == [True, False] * 4  # BN never trains
    set_trainable(base, 3)  # top 3 weighted layers: block3_bn, block4_conv, block4_bn
    assert [layer.name for layer in weighted if layer.trainable] == ["block4_conv"]
    assert len(base.trainable_weights) == 1
    with pytest.raises(ValueError, match="trainable mode"):
        set_trainable(base, "some")


def test_fine_tuned_pretrained_backbone_keeps_bn_in_inference_mode(mobilenet_weights):
    keras.utils.set_random_seed(0)
    emb = build_embedding_model(
        "mobilenet_v2", 96, mobilenet_weights, embedding_dim=8, hidden=16, dropout=0.0, trainable="all"
    )
    backbone = emb.layers[2]
    assert backbone.name.startswith("mobilenetv2")
    bn = backbone.get_layer("bn_Conv1")
    before = [v.numpy().copy() for v in bn.weights]
    conv_before = backbone.get_layer("Conv1").kernel.numpy().copy()
    x = images(8, 96)
    y = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    head_before = emb.get_layer("head").get_layer("embedding").kernel.numpy().copy()
    model = MetricLearningModel(emb, TripletLoss(miner="batch_all"))
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    for a, b in zip(before, bn.weights):
        np.testing.assert_array_equal(a, b.numpy())  # moving mean/var and gamma/beta untouched
    assert not np.allclose(conv_before, backbone.get_layer("Conv1").kernel.numpy())  # convs fine-tune
    assert not np.allclose(head_before, emb.get_layer("head").get_layer("embedding").kernel.numpy())
    # BN in inference mode: training=True and training=False give the same embeddings
    np.testing.assert_allclose(
        ops.convert_to_numpy(emb(x, training=True)), ops.convert_to_numpy(emb(x, training=False)), atol=1e-5
    )


# ----------------------------------------------------------------- heads
def test_head_shapes_activations_and_normalisation():
    feats = np.random.default_rng(0).normal(size=(5, 12)).astype("float32")
    for act in ("linear", "prelu", "sigmoid"):
        head = build_head(12, embedding_dim=6, hidden=10, activation=act, dropout=0.1)
        out = ops.convert_to_numpy(head(feats))
        assert out.shape == (5, 6)
        np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)
    raw = ops.convert_to_numpy(build_head(12, 6, hidden=None, activation="sigmoid", l2_normalize=False)(feats))
    assert raw.min() > 0 and raw.max() < 1
    with pytest.raises(ValueError, match="activation"):
        build_head(12, activation="tanh")


def test_attach_head_composes_backbone_and_cached_feature_head():
    base = build_backbone("small_cnn", 32, None)
    head = build_head(256, embedding_dim=8, hidden=16, dropout=0.0)
    full = attach_head(base, head, preprocess="small_cnn", bn_inference=True)
    features = attach_head(base, None, preprocess="small_cnn")
    x = images(4)
    # the full model equals the head applied to the cached GAP features
    np.testing.assert_allclose(
        ops.convert_to_numpy(full(x)), ops.convert_to_numpy(head(features(x))), rtol=1e-5, atol=1e-6
    )
    with pytest.raises(ValueError, match="head expects 100 features"):
        attach_head(base, build_head(100))


def test_l2_normalize_layer_handles_zero_vector():
    out = ops.convert_to_numpy(L2Normalize()(np.array([[0.0, 0.0], [3.0, 4.0]], np.float32)))
    np.testing.assert_allclose(out, [[0, 0], [0.6, 0.8]], rtol=1e-6)


# ----------------------------------------------------------------- save / load
LOSSES = {
    "triplet_batch_hard": lambda: TripletLoss(0.3, "batch_hard", "l2"),
    "triplet_random": lambda: TripletLoss(0.3, RandomTripletMiner(seed=3), "cosine"),
    "softmax": lambda: SoftmaxLoss(4),
    "center": lambda: CenterLoss(4, alpha=0.3, lam=0.1),
    "cosine": lambda: SoftmaxLoss(head=CosineSoftmax(4, scale=8.0)),
    "arcface": lambda: SoftmaxLoss(head=ArcFace(4, scale=8.0, margin=0.3)),
    "cosface": lambda: SoftmaxLoss(head=CosFace(4, scale=8.0, margin=0.3)),
}


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_save_load_safe_mode_gives_identical_outputs(tmp_path, name):
    keras.utils.set_random_seed(0)
    model = MetricLearningModel(tiny_embedding_model(activation="prelu"), LOSSES[name]())
    x = images(8)
    y = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    if isinstance(model.metric_loss, CenterLoss):  # non-trivial centres
        model.metric_loss.centers.assign(np.random.default_rng(1).normal(size=(4, 8)).astype("float32"))
    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert type(loaded) is MetricLearningModel and type(loaded.metric_loss) is type(model.metric_loss)
    np.testing.assert_array_equal(ops.convert_to_numpy(loaded(x)), ops.convert_to_numpy(model(x)))
    for a, b in zip(model.metric_loss.weights, loaded.metric_loss.weights):
        np.testing.assert_array_equal(ops.convert_to_numpy(a), ops.convert_to_numpy(b))
    if name != "triplet_random":  # the random miner draws afresh
        want = float(ops.convert_to_numpy(model.metric_loss.compute(model(x), y)[0]))
        got = float(ops.convert_to_numpy(loaded.metric_loss.compute(loaded(x), y)[0]))
        assert got == want
    # the inference model saves on its own too and takes raw pixels
    model.embedding_model.save(tmp_path / "emb.keras")
    emb = keras.saving.load_model(tmp_path / "emb.keras", safe_mode=True)
    np.testing.assert_array_equal(ops.convert_to_numpy(emb(x)), ops.convert_to_numpy(model.embedding_model(x)))


def test_classifier_and_mobilenet_embedding_model_round_trip(tmp_path):
    keras.utils.set_random_seed(0)
    emb = build_embedding_model("mobilenet_v2", 32, None, embedding_dim=8, hidden=16)
    for head in (None, ArcFace(5, scale=4.0)):
        clf = build_classifier(emb, 5, head=head)
        x = images(3)
        assert clf(x).shape == (3, 5)
        clf.save(tmp_path / "clf.keras")
        again = keras.saving.load_model(tmp_path / "clf.keras", safe_mode=True)
        np.testing.assert_array_equal(ops.convert_to_numpy(again(x)), ops.convert_to_numpy(clf(x)))


def test_stacked_triples_train_through_the_model():
    keras.utils.set_random_seed(0)
    model = MetricLearningModel(tiny_embedding_model(), TripletLoss(0.5, "random", "squared_l2"))
    model.compile(optimizer="adam")
    x = images(12).reshape(4, 3, 32, 32, 3)
    assert model(x).shape == (4, 3, 8)
    hist = model.fit(x, None, epochs=2, batch_size=4, verbose=0)
    assert set(hist.history) >= {"loss", "d_ap", "d_an", "active_fraction"}
    assert np.isfinite(hist.history["loss"]).all()


def test_mixed_float16_training_step_is_finite():
    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        keras.utils.set_random_seed(0)
        for loss in (TripletLoss(0.2, "semi_hard"), CenterLoss(4)):
            model = MetricLearningModel(tiny_embedding_model(), loss)
            model.compile(optimizer="adam")
            x = images(8)
            y = np.array([0, 0, 1, 1, 2, 2, 3, 3])
            assert keras.backend.standardize_dtype(model(x).dtype) == "float32"
            hist = model.fit(x, y, epochs=2, batch_size=8, verbose=0)
            assert all(np.isfinite(v).all() for v in hist.history.values())
    finally:
        keras.config.set_dtype_policy(policy)


def test_metric_learning_model_rejects_keras_losses_and_sample_weights():
    with pytest.raises(TypeError, match="MetricLoss"):
        MetricLearningModel(tiny_embedding_model(), keras.losses.MeanSquaredError())
    model = MetricLearningModel(tiny_embedding_model(), SoftmaxLoss(2))
    with pytest.raises(ValueError, match="sample_weight"):
        model.compute_loss(None, np.array([0, 1]), np.zeros((2, 8), "float32"), sample_weight=np.ones(2))


def test_head_without_embedding_layer_is_the_normalised_features():
    x = np.random.default_rng(0).normal(size=(4, 10)).astype("float32")
    head = build_head(10, embedding_dim=None, dropout=0.0, hidden=None)
    assert not head.trainable_weights
    np.testing.assert_allclose(np.asarray(head(x)), x / np.linalg.norm(x, axis=1, keepdims=True), rtol=1e-5)
