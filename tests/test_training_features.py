"""FeatureCache hits, misses and invalidation; cached frozen phase == naive frozen phase."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from itemrec.training.features import FeatureCache, decode_images, features_of


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    from itemrec.data.synthetic import write_catalogue

    ds = write_catalogue(tmp_path_factory.mktemp("cat"), n_products=3, photos_per_product=3, image_size=40, seed=1)
    return [str(p) for p in ds.paths]


@pytest.fixture(scope="module")
def extractor(tmp_path_factory):
    import keras

    from itemrec.models import attach_head, build_backbone, set_trainable

    keras.utils.set_random_seed(0)
    backbone = set_trainable(build_backbone("small_cnn", 32, None), "frozen")
    wfile = tmp_path_factory.mktemp("w") / "cnn.weights.h5"
    backbone.save_weights(wfile)
    return attach_head(backbone, None, preprocess="small_cnn"), wfile


def test_hit_miss_and_invalidation(tmp_path, images, extractor):
    model, wfile = extractor
    cache = FeatureCache(tmp_path / "cache")
    args = dict(backbone="small_cnn", weights=str(wfile), input_size=32, resize_mode="pad")
    first = cache.get_or_compute(model, images, **args)
    assert (cache.hits, cache.misses) == (0, 1) and not first.hit
    expected = features_of(model, decode_images(images, 32, "pad")[0])
    np.testing.assert_array_equal(first.features, expected)
    np.testing.assert_array_equal(first.keep, np.arange(len(images)))

    # a hit never builds the model: the factory would raise if called
    def factory():
        raise AssertionError("the extractor was built on a cache hit")

    again = cache.get_or_compute(factory, images, **args)
    assert again.hit and again.key == first.key and (cache.hits, cache.misses) == (1, 1)
    np.testing.assert_array_equal(again.features, first.features)
    # a second cache object over the same folder reuses the entry (across runs)
    assert FeatureCache(tmp_path / "cache").get_or_compute(factory, images, **args).hit

    # touching one image (new mtime) invalidates
    st = os.stat(images[4])
    os.utime(images[4], ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    touched = cache.get_or_compute(model, images, **args)
    assert not touched.hit and touched.key != first.key
    # so do a different resize mode, a different list (order) of images and other weights
    keys = {touched.key}
    for change in ({"resize_mode": "crop"}, {"preprocessing": "something else"}):
        r = cache.get_or_compute(model, images, **{**args, **change})
        assert not r.hit and r.key not in keys
        keys.add(r.key)
    r = cache.get_or_compute(model, images[::-1], **args)
    assert not r.hit and r.key not in keys
    np.testing.assert_allclose(r.features, touched.features[::-1], rtol=1e-5, atol=1e-5)
    other = tmp_path / "other.weights.h5"
    w = model.get_layer("small_cnn")
    old = [v.numpy().copy() for v in w.weights]
    w.weights[0].assign(old[0] * 2.0)
    w.save_weights(other)
    w.weights[0].assign(old[0])
    r = cache.get_or_compute(model, images, **{**args, "weights": str(other)})
    assert not r.hit and r.key not in keys
    meta = json.loads((tmp_path / "cache" / f"{first.key}.json").read_text())
    assert meta["backbone"] == "small_cnn" and meta["n_images"] == len(images) and meta["weights"].startswith("file:")


def test_random_weights_are_identified_by_their_values(tmp_path, images, extractor):
    import keras

    from itemrec.models import attach_head, build_backbone

    model, _ = extractor
    cache = FeatureCache(tmp_path)
    a = cache.get_or_compute(model, images, "small_cnn", None, 32)
    assert not a.hit and cache.get_or_compute(model, images, "small_cnn", None, 32).hit
    keras.utils.set_random_seed(123)
    fresh = attach_head(build_backbone("small_cnn", 32, None), None, preprocess="small_cnn")
    b = cache.get_or_compute(fresh, images, "small_cnn", None, 32)
    assert not b.hit and b.key != a.key


def test_bad_image_is_skipped_and_damaged_entry_is_reported(tmp_path, images, extractor):
    model, wfile = extractor
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    cache = FeatureCache(tmp_path / "c")
    r = cache.get_or_compute(model, images[:2] + [str(bad)] + images[2:3], "small_cnn", str(wfile), 32)
    np.testing.assert_array_equal(r.keep, [0, 1, 3])
    assert len(r.features) == 3 and r.skipped[0][0] == str(bad)
    (tmp_path / "c" / f"{r.key}.npz").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="damaged"):
        cache.get_or_compute(model, images[:2] + [str(bad)] + images[2:3], "small_cnn", str(wfile), 32)
    with pytest.raises(FileNotFoundError, match="missing.jpg"):
        cache.get_or_compute(model, [str(tmp_path / "missing.jpg")], "small_cnn", str(wfile), 32)


def test_cached_frozen_phase_equals_naive_fit(tmp_path):
    """Same seed, frozen backbone: head trained on cached features == full model trained on images.

    Tolerance: the two paths run the same float32 arithmetic except that the
    backbone runs on batches of different composition (cache: 64 images per
    forward pass; naive: the training batch), so results agree to float
    rounding: |Δw| <= 1e-5 after 4 epochs of Adam (observed: identical).
    """
    from itemrec.training import ExperimentConfig, run_experiment

    base = {
        "output_dir": str(tmp_path),
        "data": {"name": "synthetic", "synthetic_products": 6, "synthetic_photos": 6, "synthetic_image_size": 40},
        "split": {"val_classes_fraction": 0.0},  # too few seen classes to hold any out for selection
        "model": {"backbone": "small_cnn", "weights": None, "input_size": 32, "embedding_dim": 8, "hidden": 16, "dropout": 0.2},
        "loss": {"class_name": "CenterLoss"},
        "train": {"frozen_epochs": 4, "frozen_lr": 0.01, "batch_size": 5, "tensorboard": False},
    }
    runs = {}
    for cached in (True, False):
        cfg = ExperimentConfig.from_dict({**base, "name": f"cache_{cached}",
                                          "train": {**base["train"], "use_feature_cache": cached}})
        runs[cached] = run_experiment(cfg, evaluate=False)
    assert runs[True].training["phases"]["phase1"]["feature_cache"] is True
    assert runs[False].training["phases"]["phase1"]["feature_cache"] is False
    with np.load(runs[True].run_dir / "phase1" / "weights.npz") as a, np.load(runs[False].run_dir / "phase1" / "weights.npz") as b:
        assert sorted(a.files) == sorted(b.files) and len(a.files) >= 6  # head + classifier + centres
        for k in a.files:
            np.testing.assert_allclose(a[k], b[k], rtol=0, atol=1e-5, err_msg=k)
        # and training did move the weights: the centres (initialised at zero) have moved
        centres = [a[k] for k in a.files if k.startswith("loss/") and a[k].shape == (3, 8)]  # 3 classes x D=8
        assert len(centres) == 1 and np.abs(centres[0]).min() > 0
    ha, hb = runs[True].history, runs[False].history
    np.testing.assert_allclose(ha["loss"], hb["loss"], rtol=1e-5)
    np.testing.assert_allclose(ha["val_loss"], hb["val_loss"], rtol=1e-5)
    assert ha["loss"].iloc[-1] < ha["loss"].iloc[0]


def test_augmentation_falls_back_to_images(tmp_path, caplog):
    import logging

    from itemrec.training import ExperimentConfig, run_experiment

    cfg = ExperimentConfig.from_dict({
        "name": "aug", "output_dir": str(tmp_path),
        "data": {"name": "synthetic", "synthetic_products": 4, "synthetic_photos": 5, "synthetic_image_size": 40},
        "split": {"val_classes_fraction": 0.0},  # too few seen classes to hold any out for selection
        "model": {"backbone": "small_cnn", "weights": None, "input_size": 32, "embedding_dim": 8, "hidden": 16},
        "train": {"frozen_epochs": 1, "batch_size": 4, "augment": True, "tensorboard": False},
    })
    with caplog.at_level(logging.WARNING, logger="itemrec.training"):
        r = run_experiment(cfg, evaluate=False)
    assert r.training["phases"]["phase1"] == {**r.training["phases"]["phase1"], "feature_cache": False,
                                              "reason": "augmentation is on"}
    assert "augmentation is on" in caplog.text
    assert not (tmp_path / ".feature_cache").exists()
