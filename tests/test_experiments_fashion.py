"""itemrec.experiments.fashion: the driver of notebook 03."""

from __future__ import annotations

import numpy as np
import pytest

from itemrec.experiments import fashion as f


def test_fashion_splits_drop_rare_classes_and_stratify(dataset_path):
    import pandas as pd

    root = dataset_path("fashion-products")
    s = f.fashion_splits(root, min_count=200, max_per_class=40, seed=3)
    styles = pd.read_csv(root / "styles.csv", dtype=str, on_bad_lines="skip")
    names = s.train.class_names
    assert len(names) >= 2
    for part in (s.train, s.val, s.test):
        counts = part.class_counts()
        assert (counts > 0).all(), "closed set: every class in every split"
    total = s.train.class_counts() + s.val.class_counts() + s.test.class_counts()
    assert (total == 40).all()  # every kept class has >= 200 >= 40 images, capped at 40
    # the kept classes are exactly the article types with >= 200 images on disk
    ids = {p.split("/")[-1][:-4] for p in np.concatenate([s.train.paths, s.val.paths, s.test.paths])}
    assert len(ids) == 40 * len(names)  # no image in two splits
    have = styles[styles["id"].isin({q.stem for q in (root / "images").glob("*.jpg")})]
    vc = have["articleType"].value_counts()
    assert sorted(names) == sorted(vc[vc >= 200].index)
    again = f.fashion_splits(root, min_count=200, max_per_class=40, seed=3)
    assert list(again.test.paths) == list(s.test.paths)


def test_classifier_heads():
    head = f.classifier_head(10, 4, "fc", hidden=8)
    assert head.output_shape == (None, 4)
    assert [type(layer).__name__ for layer in head.layers] == ["InputLayer", "Dense", "Dense"]
    bn = f.classifier_head(10, 4, "bn_dropout", hidden=8, dropout=0.3)
    kinds = [type(layer).__name__ for layer in bn.layers]
    assert kinds == ["InputLayer", "BatchNormalization", "Dropout", "Dense", "BatchNormalization", "Dropout", "Dense"]
    with pytest.raises(ValueError, match="unknown head 'mlp'"):
        f.classifier_head(10, 4, "mlp")


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory):
    from itemrec.data.synthetic import write_catalogue
    from itemrec.training.config import SplitConfig
    from itemrec.training.data import make_splits

    ds = write_catalogue(tmp_path_factory.mktemp("cat"), n_products=4, photos_per_product=10, image_size=32)
    splits = make_splits(ds, SplitConfig(kind="closed", val_fraction=0.2, test_fraction=0.2), "synthetic")
    return f.ImageStore(splits, 32)


def test_image_store_decodes_once(tiny_store):
    x, y = tiny_store.arrays("train")
    assert x.dtype == np.uint8 and x.shape[1:] == (32, 32, 3) and len(x) == len(y) == len(tiny_store.splits.train)
    assert tiny_store.arrays("train")[0] is x
    with pytest.raises(ValueError, match="part must be"):
        tiny_store.arrays("calib")


@pytest.mark.slow
def test_frozen_then_finetuned_mobilenet(tiny_store, mobilenet_weights, tmp_path):
    from itemrec.training.features import weights_hash

    res = f.train_classifier(tiny_store, "mobilenet_v2", "local", "bn_dropout", frozen_epochs=2, finetune_epochs=1,
                             finetune_layers=3, batch_size=8, cache_dir=tmp_path / "cache", seed=0)
    assert res.frozen_check["backbone_trainable_params"] == 0
    assert res.frozen_check["backbone_unchanged"] is True
    assert res.frozen_check["finetuned_backbone_params"] > 0
    assert list(res.history["phase"]) == [1, 1, 2] and list(res.history["epoch"]) == [0, 1, 2]
    # fine-tuning really moved the backbone: compare with a fresh copy of the ImageNet weights
    from itemrec.models import build_backbone

    backbone = next(layer for layer in res.model.layers if layer.name.startswith("mobilenetv2"))
    assert weights_hash(backbone) != weights_hash(build_backbone("mobilenet_v2", 32, str(mobilenet_weights)))
    m = res.metrics()
    assert 0.0 <= m["accuracy"] <= 1.0
    assert np.isnan(m["top5_accuracy"])  # 4 classes: top-5 accuracy is undefined, not 1
    h = res.history
    assert m["best_val_loss_frozen"] == pytest.approx(h["val_loss"][:2].min())
    assert m["best_val_loss_finetuned"] == pytest.approx(h["val_loss"][2])
    assert m["best_val_loss"] == pytest.approx(min(m["best_val_loss_frozen"], m["best_val_loss_finetuned"]))
    # the report is the test split scored by the returned model
    xt, yt = tiny_store.arrays("test")
    pred = np.argmax(res.model.predict(xt.astype(np.float32), verbose=0), axis=1)
    assert m["accuracy"] == pytest.approx(np.mean(pred == yt))
    assert list((tmp_path / "cache").glob("*.npz")), "frozen features were cached"


def test_small_cnn_from_scratch_and_predictions(tiny_store, tmp_path):
    res = f.train_classifier(tiny_store, "small_cnn", None, "fc", frozen_epochs=1, finetune_epochs=1, batch_size=8)
    assert list(res.history["phase"]) == [2, 2] and res.frozen_check == {}
    assert np.isnan(res.metrics()["best_val_loss_frozen"])
    paths = list(tiny_store.paths("test")[:3])
    table = f.predict_images(res.model, paths, 32, tiny_store.class_names, top=2)
    from itemrec.data.images import load_images

    x, _, _ = load_images(paths, 32)
    logits = res.model.predict(x.astype(np.float32), verbose=0)
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    assert list(table["predicted"]) == [tiny_store.class_names[i] for i in p.argmax(1)]
    assert np.allclose(table["probability"], p.max(1), atol=1e-5)
    assert all(len(t) == 2 and t[0][1] >= t[1][1] for t in table["top"])
    fig = f.plot_predictions(table, [tiny_store.class_names[i] for i in tiny_store.arrays("test")[1][:3]],
                             path=tmp_path / "p.png")
    assert len(fig.axes) == 3 and (tmp_path / "p.png").stat().st_size > 0
    with pytest.raises(ValueError, match="true names for 3"):
        f.plot_predictions(table, ["a"])
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(ValueError, match="bad.jpg"):
        f.predict_images(res.model, [bad], 32, tiny_store.class_names)
    with pytest.raises(ValueError, match="3 class names"):
        f.predict_images(res.model, paths, 32, ["a", "b", "c"])


def test_sweep_head_is_sorted_by_validation_loss(tiny_store, tmp_path):
    table = f.sweep_head(tiny_store, "small_cnn", None, (1e-2, 1e-3), ("adam", "sgd"), epochs=2, batch_size=8,
                         cache_dir=tmp_path / "c")
    assert len(table) == 4 and set(zip(table["optimizer"], table["lr"])) == {
        ("adam", 1e-2), ("adam", 1e-3), ("sgd", 1e-2), ("sgd", 1e-3)}
    assert list(table["best_val_loss"]) == sorted(table["best_val_loss"])
    assert table["best_epoch"].between(1, 2).all() and table["val_accuracy"].between(0, 1).all()
    with pytest.raises(ValueError, match="at least one learning rate"):
        f.sweep_head(tiny_store, "small_cnn", None, (), ("adam",))
