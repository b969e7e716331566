"""Open-set training: validation classes, selection on them (epoch -1 included), heads that start at
the frozen features, catalogue images in training, the cached evaluation path and the sweep driver."""

from __future__ import annotations

import json

import numpy as np
import pytest

from itemrec.training.config import ConfigError, ExperimentConfig

SMALL = {
    "name": "small",
    "seed": 3,
    "data": {"name": "synthetic", "synthetic_products": 16, "synthetic_photos": 6, "synthetic_image_size": 40},
    "split": {"kind": "open", "unseen_fraction": 0.5, "val_fraction": 0.34, "calib_fraction": 0.34,
              "val_classes_fraction": 0.25},
    "model": {"backbone": "mobilenet_v2", "weights": "local", "input_size": 64, "head": "linear",
              "embedding_dim": None, "dropout": 0.0},
    "loss": {"class_name": "SoftmaxLoss", "config": {"head": {"class_name": "CosineSoftmax", "config": {"scale": 16.0}}}},
    "train": {"frozen_epochs": 3, "frozen_lr": 1e-3, "p": 3, "k": 2, "catalogue_copies": 2, "tensorboard": False,
              "init_from_catalogue": True},
    "eval": {"cmc_draws": 10, "far_targets": [0.1]},
}


def _config(tmp_path, **overrides) -> ExperimentConfig:
    base = ExperimentConfig.from_dict({**SMALL, "output_dir": str(tmp_path)})
    return base.with_overrides(overrides) if overrides else base


# -- the split ------------------------------------------------------------------------------------------
def test_validation_classes_are_disjoint_seeded_and_saved(tmp_path):
    from itemrec.training.data import SplitData, experiment_splits

    cfg = _config(tmp_path)
    s = experiment_splits(cfg)
    val_classes = set(s.validation_classes)
    # 16 products, half unseen -> 8 seen; round(0.25 * 8) = 2 validation classes, 6 training classes
    assert len(val_classes) == 2 and s.n_train_classes == 6
    train_original = {s.train_classes[c] for c in np.unique(s.train.labels)}
    val_original = {s.train_classes[c] for c in np.unique(s.val.labels)}
    assert not val_classes & train_original and not val_classes & val_original
    assert not val_classes & set(np.unique(s.test.labels).tolist())
    assert not val_classes & set(np.unique(s.calib.labels).tolist())
    # every image of the validation classes, none lost: 2 classes x 6 photos
    assert len(s.val_classes) == 12
    again = experiment_splits(cfg)
    assert again.validation_classes == s.validation_classes
    others = {tuple(experiment_splits(cfg.with_overrides({"split.seed": seed})).validation_classes)
              for seed in range(1, 6)}
    assert len(others | {tuple(s.validation_classes)}) > 1  # the seed moves them
    s.save(tmp_path / "splits")
    loaded = SplitData.load(tmp_path / "splits")
    assert loaded.validation_classes == s.validation_classes
    assert json.loads((tmp_path / "splits" / "splits.json").read_text())["validation_classes"] == s.validation_classes
    off = experiment_splits(cfg.with_overrides({"split.val_classes_fraction": 0.0}))
    assert off.val_classes is None and off.n_train_classes == 8


def test_grocery_validation_classes(dataset_path):
    from itemrec.data.loaders import load_grocery
    from itemrec.data.splits import GROCERY_UNSEEN
    from itemrec.training.config import SplitConfig
    from itemrec.training.data import make_splits

    ds = load_grocery(dataset_path("grocery-store"))
    s = make_splits(ds, SplitConfig(kind="open"), "grocery")
    # 81 - 40 unseen = 41 seen; round(0.25 * 41) = 10 validation classes, 31 training classes
    assert len(s.validation_classes) == 10 and s.n_train_classes == 31
    assert not set(s.validation_classes) & set(GROCERY_UNSEEN.tolist())
    assert not set(s.validation_classes) & set(s.train_classes)
    # their official train + val photos, each with a catalogue image
    expected = int((np.isin(ds.labels, s.validation_classes) & (ds.frame["split"] != "test").to_numpy()).sum())
    assert len(s.val_classes) == expected
    assert all(c in s.val_classes.representatives for c in s.validation_classes)


def test_config_checks():
    with pytest.raises(ConfigError, match="identity"):
        ExperimentConfig.from_dict({"model": {"head": "linear", "embedding_dim": 64}})
    with pytest.raises(ConfigError, match="class vectors"):
        ExperimentConfig.from_dict({"loss": {"class_name": "TripletLoss"}, "train": {"init_from_catalogue": True}})
    with pytest.raises(ConfigError, match="val_classes_fraction"):
        ExperimentConfig.from_dict({"split": {"val_classes_fraction": 1.0}})
    with pytest.raises(ConfigError, match="local"):
        ExperimentConfig.from_dict({"model": {"backbone": "vgg16", "weights": "local"}})
    ExperimentConfig.from_dict({"model": {"backbone": "inception_v3_mixed8", "weights": "local", "input_size": 75}})


# -- selection --------------------------------------------------------------------------------------------
def test_open_set_scores_hand_example():
    from itemrec.training.selection import open_set_scores

    # gallery: class 0 at (1, 0), class 1 at (0, 1). Queries (cosine):
    #   a (1, 0.1) class 0 -> nearest gallery 0: hit; b (0.2, 1) class 1 -> gallery 1: hit;
    #   c (1, 0.2) class 1 -> gallery 0 first: miss at rank 1, hit at rank 2.
    # CMC@1 = 2/3, CMC@2 = 1.
    # MAP@R among the queries: a (class 0) has R = 0 relevant -> left out;
    #   b (class 1): R = 1, its nearest other query is a or c: cos(b, a) = (0.2 + 0.1)/(|b||a|),
    #   cos(b, c) = (0.2 + 0.2)/(|b||c|) > cos(b, a) so c (class 1) ranks first: AP = 1;
    #   c (class 1): nearest is a (almost parallel), then b: AP@R (R = 1) = 0.
    # MAP@R = (1 + 0) / 2 = 0.5; score = (2/3 + 0.5) / 2.
    q = np.array([[1, 0.1], [0.2, 1], [1, 0.2]], np.float32)
    s = open_set_scores(q, np.array([0, 1, 1]), np.eye(2, dtype=np.float32), np.array([0, 1]))
    assert s["valcls_cmc1"] == pytest.approx(2 / 3)
    assert s["valcls_cmc5"] == pytest.approx(1.0)
    assert s["valcls_map_at_r"] == pytest.approx(0.5)
    assert s["valcls_score"] == pytest.approx((2 / 3 + 0.5) / 2)


def test_best_checkpoint_keeps_starting_weights(tmp_path):
    import keras

    from itemrec.training.callbacks import BestCheckpoint

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    cb = BestCheckpoint(tmp_path / "best.weights.h5", "valcls_score")
    cb.set_model(model)
    assert cb.mode == "max" and not cb.has_saved()
    start = [w.copy() for w in model.get_weights()]
    assert cb.consider(0.5, -1)
    model.set_weights([w + 1 for w in start])
    cb.on_epoch_end(0, {"valcls_score": 0.4})  # worse: not saved
    assert not cb.consider(float("nan"), 1)
    assert json.loads((tmp_path / "best.weights.h5.json").read_text())["epoch"] == -1
    model.load_weights(tmp_path / "best.weights.h5")
    np.testing.assert_array_equal(model.get_weights()[0], start[0])


def test_selection_restores_the_start_when_training_hurts(tmp_path):
    """Every epoch scores below the start: fit ends on changed weights, the checkpoint gives the start back."""
    import keras

    from itemrec.losses import CosineSoftmax, SoftmaxLoss
    from itemrec.models import MetricLearningModel, build_head
    from itemrec.training.callbacks import phase_callbacks
    from itemrec.training.selection import OpenSetSelection

    class Scripted(OpenSetSelection):  # the scores themselves are tested in test_open_set_scores_hand_example
        sequence = iter([0.9, 0.5, 0.7, 0.6])

        def scores(self):
            value = next(self.sequence)
            return {"valcls_cmc1": value, "valcls_cmc5": 1.0, "valcls_map_at_r": value, "valcls_score": value}

    keras.utils.set_random_seed(0)
    head = build_head(4, None, 0.0, kind="linear")
    model = MetricLearningModel(head, SoftmaxLoss(head=CosineSoftmax(2, scale=16.0)))
    model.compile(optimizer=keras.optimizers.Adam(0.1))
    x = np.random.default_rng(0).normal(size=(32, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(int)
    sel = Scripted(x[:4], np.array([5, 5, 6, 6]), x[4:6], np.array([5, 6]), tmp_path / "selection.json")
    hist = model.fit(x, y, epochs=3, batch_size=8, verbose=0,
                     callbacks=phase_callbacks(tmp_path, "valcls_score", selection=sel))
    assert hist.history["valcls_score"] == [0.5, 0.7, 0.6]
    assert json.loads((tmp_path / "selection.json").read_text())["before_training"]["valcls_score"] == 0.9
    kernel = head.get_layer("adapter").kernel
    assert np.abs(kernel.numpy() - np.eye(4)).max() > 0.1  # training moved the weights
    meta = json.loads((tmp_path / "best.weights.h5.json").read_text())
    assert meta == {"monitor": "valcls_score", "mode": "max", "best": 0.9, "epoch": -1}
    model.load_weights(tmp_path / "best.weights.h5")
    np.testing.assert_array_equal(kernel.numpy(), np.eye(4))


def test_training_that_does_not_help_keeps_the_frozen_features(tmp_path, mobilenet_weights):
    """No epoch beats the start (a vanishing learning rate, ties): the identity head is kept, epoch -1."""
    from itemrec.embedder import ImageEmbedder
    from itemrec.models import build_feature_extractor
    from itemrec.training.data import SplitData
    from itemrec.training.runner import run_experiment

    import warnings

    cfg = _config(tmp_path, **{"train.frozen_lr": 1e-12, "train.frozen_epochs": 2})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run_experiment(cfg, evaluate=False)
    # the epoch -1 checkpoint holds the optimizer's variables too, so restoring it loads cleanly
    assert not [w for w in caught if "Skipping variable loading for optimizer" in str(w.message)]
    phase = result.training["phases"]["phase1"]
    assert phase["monitor"] == "valcls_score" and phase["best_epoch"] == -1 and phase["kept_starting_weights"]
    assert phase["best_score"] == pytest.approx(phase["before_training"]["valcls_score"])
    paths = list(SplitData.load(result.run_dir / "splits").test.paths)[:6]
    emb = ImageEmbedder.load(result.run_dir / "embedding.keras").embed(paths).vectors
    feats = ImageEmbedder(build_feature_extractor("mobilenet_v2", 64, str(mobilenet_weights)), 64).embed(paths).vectors
    feats /= np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-6)  # as L2Normalize
    np.testing.assert_allclose(emb, feats, atol=1e-5)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, mobilenet_weights):
    from itemrec.training.runner import run_experiment

    return run_experiment(_config(tmp_path_factory.mktemp("runs")))


def test_catalogue_init_and_copies(trained, tmp_path):
    """The anchors start at the catalogue images' embeddings; the copies join the training rows."""
    import keras

    from itemrec.training.runner import _Trainer

    cfg = trained.config
    trainer = _Trainer(cfg, tmp_path, progress=False)
    trainer.build()
    cat = trainer.features(trainer.catalogue_paths()).features
    emb = cat / np.linalg.norm(cat, axis=1, keepdims=True)  # the untrained identity head
    anchors = keras.ops.convert_to_numpy(trainer.loss.head.anchors).T
    np.testing.assert_allclose(anchors, emb, atol=1e-5)
    x, y = trainer.with_catalogue(np.zeros((4, cat.shape[1]), np.float32), np.array([0, 1, 2, 3]), cat)
    # 4 rows + 2 copies x 6 training classes
    assert len(x) == 4 + 2 * 6 and np.array_equal(y[4:], np.tile(np.arange(6), 2))
    np.testing.assert_array_equal(x[4:10], cat)


def test_run_reports_protocols_and_selection(trained):
    m = trained.metrics
    for key in ("rank1", "rank1_image", "rank5_image", "recall_at_1", "map_at_r"):
        assert 0.0 <= m[key] <= 1.0
    # Floors against an embedding that does not tell the unseen products apart; set at about 0.6x the values
    # observed on 2026-12-01 (identical in two runs). 8 unseen test products, 4 photos each (32 queries):
    # chance CMC@1 against the 8 catalogue images = 1/8 = 0.125 (observed rank1 0.36, rank1_image 0.375),
    # chance CMC@5 = 5/8 = 0.625 (observed rank5_image 0.91);
    # photos vs photos: 3 same-product photos among the 31 others, chance Recall@1 = 3/31 = 0.10 (observed 0.34),
    # chance MAP@R (R = 3) about 0.06 (observed 0.19).
    assert m["rank1"] > 0.22 and m["rank1_image"] > 0.22, m
    assert m["rank5_image"] >= 0.75 and m["rank5_image"] >= m["rank1_image"], m
    assert m["recall_at_1"] > 0.2, m
    assert m["map_at_r"] > 0.12, m
    assert m["rank1_image_ci"][0] <= m["rank1_image"] <= m["rank1_image_ci"][1]
    assert set(m["k_shot"]) == {"1", "3"} and m["k_shot"]["3"]["n_queries_per_draw"] < m["n_test_images"]
    assert set(m["backbone_features"]) >= {"rank1_image", "recall_at_1", "map_at_r"}
    v = m["validation_classes"]
    phase = trained.training["phases"]["phase1"]
    # the final embedding's validation score is the checkpoint's best score
    assert v["valcls_score"] == pytest.approx(phase["best_score"], abs=1e-6)


def test_cached_evaluation_matches_the_image_path(trained):
    from itemrec.embedder import ImageEmbedder
    from itemrec.training.data import SplitData
    from itemrec.training.run_embedders import CachedHeadEmbedder

    run = trained.run_dir
    paths = list(SplitData.load(run / "splits").test.paths)
    image = ImageEmbedder.load(run / "embedding.keras")
    cached = CachedHeadEmbedder(image.model, trained.config)
    labels = np.arange(len(paths))
    a = image.embed(paths, labels)
    b = cached.embed(paths, labels)
    assert a.paths == b.paths == tuple(paths) and not a.skipped and not b.skipped
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_allclose(a.vectors, b.vectors, atol=1e-5)


def test_sweep_chooses_on_validation_without_reading_test(tmp_path, mobilenet_weights):
    from itemrec.experiments.open_set import choose, validation_sweep

    base = _config(tmp_path)
    frame = validation_sweep(base, {"train.frozen_lr": [1e-4, 50.0]})
    assert len(frame) == 2 and frame["valcls_score"].is_monotonic_decreasing
    best = choose(frame)
    assert best == frame.iloc[0]["run"]
    for run in frame["run"]:
        assert (tmp_path / run / "training.json").is_file()
        assert not (tmp_path / run / "metrics.json").exists()  # test never read during the sweep


def test_sweep_refuses_a_different_config_under_its_name_and_runs_not_selected_on_classes(tmp_path, mobilenet_weights,
                                                                                        capsys):
    from itemrec.experiments.open_set import main, validation_sweep

    base = _config(tmp_path, **{"train.frozen_epochs": 1})
    validation_sweep(base, {"train.frozen_lr": [1e-3]})
    other = base.with_overrides({"loss.class_name": "ProxyAnchorLoss"})  # same name, other loss: must not be reused
    with pytest.raises(ConfigError, match="different config"):
        validation_sweep(other, {"train.frozen_lr": [1e-3]})
    # refused before anything trains: the new grid value gets no run folder, and the message names the change
    with pytest.raises(ConfigError, match="loss.class_name: 'SoftmaxLoss' -> 'ProxyAnchorLoss'"):
        validation_sweep(other, {"train.frozen_lr": [1e-4, 1e-3]})
    assert not (tmp_path / "small__frozen_lr=0.0001").exists()
    no_classes = base.with_overrides({"name": "noval", "split.val_classes_fraction": 0.0,
                                      "train.init_from_catalogue": False, "train.catalogue_copies": 0})
    with pytest.raises(ConfigError, match="not selected on validation classes"):
        validation_sweep(no_classes, {"train.frozen_lr": [1e-3]})
    assert not (tmp_path / "noval__frozen_lr=0.001").exists()
    cfg = tmp_path / "c.json"
    base.to_json(cfg)
    assert main([str(cfg), "--set", "split.val_classes_fraction=1.5"]) == 2
    assert main([str(cfg), "--grid", "train.frozen_lr"]) == 2
    assert "error" in capsys.readouterr().err


def test_too_few_training_classes_is_a_config_error_and_leaves_no_run(tmp_path, mobilenet_weights):
    from itemrec.training.runner import run_experiment

    # 6 products, 3 unseen: 3 seen, 2 of them validation classes, 1 left to train on
    cfg = _config(tmp_path, **{"data.synthetic_products": 6, "train.p": None, "train.k": None,
                               "train.batch_size": 4})
    with pytest.raises(ConfigError, match="fewer than 2 for training"):
        run_experiment(cfg)
    assert not cfg.run_dir.exists()  # the corrected config can reuse the name
    # with P x K sampling the config check counts the training classes left after the hold-out: 4 seen - 2 = 2 < P
    with pytest.raises(ConfigError, match="2 synthetic training classes"):
        _config(tmp_path, **{"data.synthetic_products": 8, "train.p": 4})
