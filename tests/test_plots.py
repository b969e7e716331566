"""Plots render headless (Agg) to files; the projector files and the feature-monitor GIF are checked."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from itemrec.evaluation import cmc, fit_threshold, evaluate_threshold, knn, val_far_curve
from itemrec.plots import (
    export_projector,
    plot_cmc,
    plot_confusion_matrix,
    plot_features_2d,
    plot_history,
    plot_query_matches,
    plot_roc,
    plot_val_far,
)


def clustered(n_classes=4, per_class=10, dim=6, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(n_classes), per_class)
    return rng.normal(size=(n_classes, dim))[labels] + 0.5 * rng.normal(size=(len(labels), dim)), labels


def png_ok(path):
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[0] > 100 and im.size[1] > 100
        return np.asarray(im.convert("RGB"))


def test_history_and_curves(tmp_path):
    hist = {"softmax_loss": [2.0, 1.5, 1.0], "center_loss": [5.0, 3.0, 2.0], "val_softmax_loss": [2.1, 1.7, 1.3]}
    fig = plot_history(hist, path=tmp_path / "h.png")
    assert [ax.get_title() for ax in fig.axes] == ["softmax_loss, val_softmax_loss", "center_loss"]
    # the plotted data are the history values
    np.testing.assert_allclose(fig.axes[1].lines[0].get_ydata(), [5.0, 3.0, 2.0])
    png_ok(tmp_path / "h.png")
    fig = plot_history(hist, panels=[["softmax_loss"], ["center_loss"]])
    assert len(fig.axes) == 2
    with pytest.raises(ValueError, match="no series"):
        plot_history(hist, panels=[["accuracy"]])
    with pytest.raises(ValueError, match="different lengths"):
        plot_history({"a": [1, 2], "b": [1]})

    x, y = clustered()
    a = cmc(x, y, x, y, max_rank=5, exclude_self=True)
    b = cmc(x + np.random.default_rng(1).normal(size=x.shape), y, x, y, max_rank=5)
    fig = plot_cmc({"model A": a, "model B": b}, path=tmp_path / "cmc.png")
    assert len(fig.axes[0].lines) == 2 and len(fig.axes[0].collections) == 2  # two lines, two CI bands
    png_ok(tmp_path / "cmc.png")

    curve = val_far_curve(x, y, 100)
    th = fit_threshold(x[y < 2], y[y < 2], 0.1)
    rep = evaluate_threshold(th, x[y >= 2], y[y >= 2])
    fig = plot_val_far(curve, th, path=tmp_path / "valfar.png")
    assert any(line.get_xdata()[0] == pytest.approx(th.value) for line in fig.axes[0].lines[2:])
    fig = plot_roc({"m": curve}, rep, path=tmp_path / "roc.png")
    assert f"AUC {curve.auc:.3f}" in fig.axes[0].get_legend().get_texts()[0].get_text()
    png_ok(tmp_path / "valfar.png")
    png_ok(tmp_path / "roc.png")


def test_features_confusion_and_matches(tmp_path):
    x, y = clustered()
    fig = plot_features_2d(x, y, "pca", class_names=list("abcd"), path=tmp_path / "f.png")
    # 4 classes: 4 scatter sets + 4 centre stars
    assert len(fig.axes[0].collections) == 8
    png_ok(tmp_path / "f.png")
    plot_features_2d(x, y, "tsne", path=tmp_path / "t.png")
    png_ok(tmp_path / "t.png")
    with pytest.raises(ValueError, match="method"):
        plot_features_2d(x, y, "umap")

    cm = np.array([[5, 1], [2, 7]])
    fig = plot_confusion_matrix(cm, ["a", "b"], normalize=True, path=tmp_path / "cm.png")
    # normalised rows: 5/6 = 0.83, 1/6 = 0.17, 2/9 = 0.22, 7/9 = 0.78
    assert [t.get_text() for t in fig.axes[0].texts] == ["0.83", "0.17", "0.22", "0.78"]
    png_ok(tmp_path / "cm.png")
    with pytest.raises(ValueError, match="square"):
        plot_confusion_matrix(np.ones((2, 3)))

    rng = np.random.default_rng(0)
    images = (rng.random((len(x), 20, 20, 3)) * 255).astype(np.uint8)
    q = [0, 15]
    _, nb = knn(x[q], x, 3)
    # force one wrong match so both colours appear
    nb[1, 2] = 0
    fig = plot_query_matches(images[q], y[q], images, y, nb, path=tmp_path / "m.png")
    edge = [tuple(np.round(ax.spines["top"].get_edgecolor()[:3], 2)) for ax in fig.axes if ax.spines["top"].get_linewidth() == 4]
    want = [(0.1, 0.7, 0.1) if y[g] == y[qi] else (0.85, 0.1, 0.1) for qi, row in zip(q, nb) for g in row]
    assert edge == want and (0.85, 0.1, 0.1) in edge
    pix = png_ok(tmp_path / "m.png").astype(int)
    assert np.any((pix[..., 1] > 150) & (pix[..., 0] < 60)) and np.any((pix[..., 0] > 190) & (pix[..., 1] < 60))
    with pytest.raises(ValueError, match="outside the gallery"):
        plot_query_matches(images[q], y[q], images, y, nb + 100)


def test_export_projector(tmp_path):
    x, y = clustered(n_classes=2, per_class=3, dim=4)
    images = [np.full((8, 8, 3), 40 * i, dtype=np.uint8) for i in range(6)]
    out = export_projector(x, y, images, tmp_path / "proj", class_names=["cat", "dog"], thumb_size=16)
    back = np.loadtxt(out.tensors, delimiter="\t")
    np.testing.assert_allclose(back, x, rtol=1e-5)
    lines = out.metadata.read_text().splitlines()
    assert lines[0] == "label\tclass_name" and lines[1] == "0\tcat" and lines[-1] == "1\tdog"
    sprite = np.asarray(Image.open(out.sprite))
    # 6 images -> 3 × 3 grid of 16 px; image 4 sits at row 1, column 1 with value 160
    assert sprite.shape == (48, 48, 3) and np.all(sprite[16:32, 16:32] == 160)
    cfg = out.config.read_text()
    assert 'tensor_path: "tensors.tsv"' in cfg and "single_image_dim: 16" in cfg and 'image_path: "sprite.png"' in cfg
    with pytest.raises(ValueError, match="labels"):
        export_projector(x, y[:2], None, tmp_path / "bad")


def test_deep_feature_monitor_in_training(tmp_path):
    keras = pytest.importorskip("keras")
    from itemrec.plots import DeepFeatureMonitor

    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 5)).astype("float32")
    y = (x[:, 0] > 0).astype("int64") + 2 * (x[:, 1] > 0)
    inputs = keras.Input((5,))
    feat = keras.layers.Dense(2, name="feat")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(4, activation="softmax")(feat))
    embed = keras.Model(inputs, feat)
    model.compile("adam", "sparse_categorical_crossentropy")
    mon = DeepFeatureMonitor(x, y, embed, tmp_path / "mon", every=1, duration_ms=100)
    model.fit(x, y, epochs=3, batch_size=32, verbose=0, callbacks=[mon])
    assert [p.name for p in mon.frames] == ["frame_001.png", "frame_002.png", "frame_003.png"]
    for p in mon.frames:
        png_ok(p)
    with Image.open(mon.gif_path) as gif:
        assert gif.format == "GIF" and gif.n_frames == 3
    # a plain callable works too, and every=2 draws epochs 2 and 4 only
    mon2 = DeepFeatureMonitor(x, y, lambda d: d[:, :3] * 2.0, tmp_path / "mon2", every=2)
    for epoch in range(4):
        mon2.on_epoch_end(epoch)
    mon2.on_train_end()
    assert [p.name for p in mon2.frames] == ["frame_002.png", "frame_004.png"]
    with Image.open(mon2.gif_path) as gif:
        assert gif.n_frames == 2
    with pytest.raises(ValueError, match="features"):
        DeepFeatureMonitor(x, y, lambda d: d[:5], tmp_path / "bad").draw(0)


def test_deep_feature_monitor_fits_one_projection_for_every_frame(tmp_path):
    from sklearn.decomposition import PCA

    from itemrec.plots import DeepFeatureMonitor

    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 6)) * np.array([5.0, 3.0, 1.0, 0.5, 0.2, 0.1])
    y = np.arange(40) % 4
    proj = tmp_path / "projection.npz"
    first = DeepFeatureMonitor(x, y, lambda d: d, tmp_path / "a", projection=proj, title="center, λ=0.001")
    xy1 = first._fixed_projection(first._embed())
    ref = PCA(n_components=2, random_state=0).fit(x)  # fitted independently on the first frame's features
    assert np.allclose(xy1, ref.transform(x))
    # a later frame (or the next phase's monitor) with moved features keeps the first frame's axes
    moved = x * 0.5
    second = DeepFeatureMonitor(x, y, lambda d: d * 0.5, tmp_path / "b", projection=proj)
    assert np.allclose(second._fixed_projection(second._embed()), (moved - ref.mean_) @ ref.components_.T)
    png_ok(first.draw(0))
    assert first.frames[0].name == "frame_001.png"
    with pytest.raises(ValueError, match="projects 6-d features"):
        third = DeepFeatureMonitor(x[:, :3], y, lambda d: d, tmp_path / "c", projection=proj)
        third._fixed_projection(third._embed())
