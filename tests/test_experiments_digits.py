"""MNIST drivers: splits, the triplet network, triplet accuracy, Gini rejection of non-digits."""

from __future__ import annotations

import numpy as np
import pytest

from itemrec.experiments import digits as dg


def _toy_digits(n_per_class: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two 'digits': a bright block top-left or bottom-right, with noise."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 40, size=(2 * n_per_class, 28, 28)).astype(np.uint8)
    y = np.repeat([0, 1], n_per_class)
    x[y == 0, 3:13, 3:13] = 230
    x[y == 1, 15:25, 15:25] = 230
    return x, y


def test_split_digits_is_stratified_disjoint_and_seeded():
    y = np.repeat(np.arange(10), 50)
    x = np.zeros((500, 28, 28), np.uint8)
    x[:, 0, 0] = np.arange(500) % 256
    x[:, 0, 1] = np.arange(500) // 256  # each image unique: (x[0,0], x[0,1]) encodes its index
    s = dg.split_digits(x, y, (0.6, 0.2, 0.2), seed=0)
    assert s.sizes() == {"train": 300, "val": 100, "test": 100}
    for part, n in (("train", 30), ("val", 10), ("test", 10)):
        assert np.bincount(getattr(s, f"y_{part}"), minlength=10).tolist() == [n] * 10
    def index(images):
        return images[:, 0, 0].astype(int) + 256 * images[:, 0, 1].astype(int)

    ids = {p: set(index(getattr(s, f"x_{p}")).tolist()) for p in ("train", "val", "test")}
    assert not ids["train"] & ids["val"] and not ids["train"] & ids["test"] and not ids["val"] & ids["test"]
    assert len(ids["train"] | ids["val"] | ids["test"]) == 500
    # labels travel with their images
    assert (y[index(s.x_train)] == s.y_train).all()
    again = dg.split_digits(x, y, seed=0)
    np.testing.assert_array_equal(again.y_test, s.y_test)
    small = dg.split_digits(x, y, seed=0, limit=100)
    assert sum(small.sizes().values()) == 100 and np.bincount(small.y_train).tolist() == [6] * 10
    with pytest.raises(ValueError, match="fractions"):
        dg.split_digits(x, y, (0.5, 0.5))
    with pytest.raises(ValueError, match="images"):
        dg.split_digits(x[:, 0], y)


def test_to_rgb_write_digits_and_config(tmp_path):
    from itemrec.data.records import ImageDataset
    from PIL import Image

    x, y = _toy_digits(3)
    rgb = dg.to_rgb(x)
    assert rgb.shape == (6, 28, 28, 3) and (rgb[..., 1] == x).all()
    splits = dg.DigitSplits(x[:2], y[:2], x[2:4], y[2:4], x[4:], y[4:])
    manifest = dg.write_digits(splits, tmp_path / "d")
    ds = ImageDataset.read_csv(manifest)
    assert ds.frame["split"].tolist() == ["train"] * 2 + ["val"] * 2 + ["test"] * 2
    assert ds.labels.tolist() == y.tolist()
    with Image.open(ds.paths[3]) as im:  # the PNG holds the digit exactly
        assert (np.asarray(im.convert("L")) == x[3]).all()
    cfg = dg.digit_config("d", tmp_path, manifest, margin=0.5, filters=(4, 8), n_triplets=100, k=5, epochs=2)
    assert (cfg.model.backbone, cfg.model.cnn_filters, cfg.model.embedding_dim, cfg.model.input_size) == \
        ("small_cnn", [4, 8], 10, 28)
    miner = cfg.loss.get("miner")
    assert (cfg.loss.name, miner["class_name"], miner["config"]["seed"], cfg.loss.get("margin")) == \
        ("triplet", "RandomTripletMiner", cfg.seed, 0.5)
    assert (cfg.train.p, cfg.train.k, cfg.train.steps_per_epoch) == (10, 5, 2)  # ceil(100 / 50)
    from itemrec.training import ConfigError

    with pytest.raises(ConfigError, match="margin must be >= 0"):
        dg.digit_config("d", tmp_path, manifest, margin=-1.0)


def test_triplet_accuracy_hand_worked():
    y = np.array([0, 0, 0, 1, 1, 1])
    separated = np.array([[1, 0]] * 3 + [[0, 1]] * 3, float)
    assert dg.triplet_accuracy(separated, y, n=200) == 1.0  # d(a, p) = 0 < d(a, n) = 2
    assert dg.triplet_accuracy(np.ones((6, 2)), y, n=200) == 0.0  # all distances 0: never strictly closer
    # Points A, B alternate regardless of class (A B A | B A B). A triplet counts only when the
    # positive is the anchor's own point (d = 0) and the negative the other (d = 2). Anchors at
    # positions 0, 2, 3, 5: P(positive same) = 1/2, P(negative other) = 2/3 -> 1/3; anchors 1, 4:
    # both positives are the other point -> 0. Expected accuracy (4 · 1/3) / 6 = 2/9.
    mixed = np.array([[1, 0], [0, 1], [1, 0], [0, 1], [1, 0], [0, 1]], float)
    assert dg.triplet_accuracy(mixed, y, n=4000) == pytest.approx(2 / 9, abs=0.04)


def test_margin_sweep_learns_two_toy_digits(tmp_path):
    x, y = _toy_digits()
    splits = dg.DigitSplits(x[::2], y[::2], x[1::2], y[1::2], x[1::2], y[1::2])
    sweep = dg.margin_sweep(splits, margins=(0.5,), out_dir=tmp_path / "runs", n_triplets=600, epochs=4,
                            filters=(4, 8), embedding_dim=4, learning_rate=3e-3, seed=0)
    table = sweep.table()
    assert table["margin"].tolist() == [0.5]
    assert table[["val_recall_at_1", "val_map_at_r", "val_triplet_accuracy"]].stack().between(0, 1).all()
    run = sweep.best()
    h = run.history
    assert len(h["loss"]) == 4 and np.isfinite(h["loss"]).all()
    # training opens a gap between negatives and positives and the loss falls
    assert h["loss"][-1] < h["loss"][0]
    assert h["d_an"][-1] - h["d_ap"][-1] > h["d_an"][0] - h["d_ap"][0]
    emb = dg.embed_digits(run.model, splits.x_test)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    # the run is kept under its margin and read back, not retrained, by a second sweep
    (run_dir,) = [p for p in (tmp_path / "runs").iterdir() if p.name.startswith("digits_margin0.5_")]
    stamp = (run_dir / "done.json").stat().st_mtime_ns
    dg.margin_sweep(splits, margins=(0.5,), out_dir=tmp_path / "runs", n_triplets=600, epochs=4, filters=(4, 8),
                    embedding_dim=4, learning_rate=3e-3, seed=0)
    assert (run_dir / "done.json").stat().st_mtime_ns == stamp
    with pytest.raises(ValueError, match="at least one margin"):
        dg.margin_sweep(splits, margins=(), out_dir=tmp_path / "runs")


class _FixedProbs:
    """A stand-in classifier whose ``predict_proba`` returns rows chosen by the first feature."""

    def __init__(self, table: dict[int, list[float]]):
        self.table = table

    def predict_proba(self, x):
        return np.array([self.table[int(v)] for v in np.asarray(x)[:, 0]])


def test_gini_rejection_hand_worked():
    # impurities 1 - Σp²: [1, 0] -> 0; [.5, .5] -> 0.5; [.9, .1] -> 1 - .81 - .01 = 0.18; [.6, .4] -> 0.48
    clf = _FixedProbs({0: [1.0, 0.0], 1: [0.5, 0.5], 2: [0.9, 0.1], 3: [0.6, 0.4]})
    val = np.array([[0], [0], [2], [2], [2], [2], [2], [2], [2], [3]], float)  # impurities: 0, 0, 0.18 x7, 0.48
    test = np.array([[0], [2], [3], [3]], float)
    out = np.array([[1], [1], [3], [2]], float)
    exp = dg.gini_rejection(clf, val, test, out, target_in_rejection=0.1)
    # k = floor(0.1 * 10) = 1 rejected: τ = (0.48 + 0.18) / 2 = 0.33
    assert exp.report.threshold.value == pytest.approx(0.33)
    assert exp.report.threshold.in_rejection_val == pytest.approx(0.1)
    assert exp.report.in_rejection_rate == pytest.approx(0.5)  # 0.48, 0.48 of [0, 0.18, 0.48, 0.48]
    assert exp.report.out_rejection_rate == pytest.approx(0.75)  # 0.5, 0.5, 0.48 of 4
    np.testing.assert_allclose(exp.in_impurity, [0.0, 0.18, 0.48, 0.48])
    np.testing.assert_allclose(exp.out_impurity, [0.5, 0.5, 0.48, 0.18])
    # AUC = P(out score > in score) + ½ P(tie) over the 16 (out, in) pairs: out 0.5 beats all 4 in
    # scores (twice), 0.48 beats 2 and ties 2 (3), 0.18 beats 1 and ties 1 (1.5): (4 + 4 + 3 + 1.5) / 16
    assert exp.report.auc == pytest.approx(12.5 / 16)
    fig = dg.plot_rejection(exp)
    assert len(fig.axes) == 2


def test_softmax_classifier_on_embeddings():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 20)
    emb = np.eye(3)[y] + 0.1 * rng.normal(size=(60, 3))
    clf = dg.softmax_classifier(emb, y)
    p = clf.predict_proba(emb)
    assert p.shape == (60, 3) and np.allclose(p.sum(axis=1), 1.0)
    assert (p.argmax(axis=1) == y).mean() == 1.0


def test_plot_samples():
    x, _ = _toy_digits(3)
    fig = dg.plot_samples(x, x[::-1], n=4)
    assert len(fig.axes) == 8


def test_original_gini_coefficient_rule_hand_worked():
    class Fixed:  # a classifier whose softmax outputs are the embeddings themselves
        def predict_proba(self, x):
            return np.asarray(x, np.float64)

    one_hot, uniform = np.eye(10)[3], np.full(10, 0.1)
    # Gini coefficient: one-hot over 10 classes: sum|p_i - p_j| = 2*9 = 18, / (2*10*1) = 0.9 > 0.87, rejected;
    # uniform: 0, kept
    r = dg.original_gini_rule(Fixed(), np.stack([one_hot, uniform]), np.stack([uniform, uniform]), threshold=0.87)
    assert r["digit_rejection"] == 0.5 and r["letter_rejection"] == 0.0
    # AUC with letters positive: letter scores (0, 0) vs digit scores (0.9, 0): pairs 0<0.9 -> 0, ties -> 0.5 each
    assert r["auc"] == pytest.approx((0 + 0.5 + 0 + 0.5) / 4)
