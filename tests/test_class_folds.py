"""Class-fold cross-validation: the folds of the seen classes, the refit's epoch count, the sweep over
folds and the refit on every seen class (``experiments.open_set --folds``)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from itemrec.training.config import ConfigError, ExperimentConfig, n_validation_folds

from test_open_set_training import SMALL


def _config(tmp_path, **overrides) -> ExperimentConfig:
    base = ExperimentConfig.from_dict({**SMALL, "output_dir": str(tmp_path)})
    return base.with_overrides(overrides) if overrides else base


def _original(s, part):
    return {s.train_classes[c] for c in np.unique(getattr(s, part).labels)}


def test_folds_partition_the_seen_classes(tmp_path):
    from itemrec.training.data import experiment_splits

    # 24 products, half unseen -> 12 seen; 0.25 -> round(3) = 3 validation classes and round(1/0.25) = 4 folds:
    # fold 0 draws 3, the other 9 are cut into 3 + 3 + 3
    cfg = _config(tmp_path, **{"data.synthetic_products": 24})
    assert n_validation_folds(0.25) == 4
    splits = [experiment_splits(cfg.with_overrides({"split.val_fold": f})) for f in range(4)]
    folds = [set(s.validation_classes) for s in splits]
    assert [len(f) for f in folds] == [3, 3, 3, 3]
    seen = set().union(*folds)
    assert len(seen) == 12  # disjoint (4 x 3 distinct) and covering every seen class
    unseen = set(np.unique(splits[0].test.labels).tolist())
    assert not seen & unseen
    for s, fold in zip(splits, folds):
        # each fold trains on the other 9 seen classes, and its validation classes are in no training split
        assert _original(s, "train") == seen - fold and _original(s, "val") == seen - fold
        assert set(np.unique(s.test.labels).tolist()) == unseen  # the test split never moves
    # fold 0 is the split without the field, so runs made before folds existed stay fold 0
    assert folds[0] == set(experiment_splits(cfg).validation_classes)
    # seeded: the same seed gives the same folds, another seed other folds
    assert set(experiment_splits(cfg.with_overrides({"split.val_fold": 2})).validation_classes) == folds[2]
    moved = [set(experiment_splits(cfg.with_overrides({"split.val_fold": 2, "split.seed": k})).validation_classes)
             for k in range(1, 4)]
    assert any(m != folds[2] for m in moved)


def test_grocery_folds(dataset_path):
    from itemrec.data.loaders import load_grocery
    from itemrec.data.splits import GROCERY_UNSEEN
    from itemrec.training.config import SplitConfig
    from itemrec.training.data import make_splits

    ds = load_grocery(dataset_path("grocery-store"))
    folds = [make_splits(ds, SplitConfig(kind="open", val_fold=f), "grocery").validation_classes for f in range(4)]
    # 41 seen classes: fold 0 holds round(0.25 * 41) = 10, the other 31 split 11 + 10 + 10
    assert [len(f) for f in folds] == [10, 11, 10, 10]
    seen = sorted(set(range(81)) - set(GROCERY_UNSEEN.tolist()))
    assert sorted(sum(folds, [])) == seen
    # fold 0 as documented (README): 10 of the seen classes drawn by default_rng(split.seed + 7919)
    assert folds[0] == sorted(np.random.default_rng(0 + 7919).choice(np.array(seen), 10, replace=False).tolist())


def test_fold_and_monitor_config_checks():
    with pytest.raises(ConfigError, match="4 folds"):
        ExperimentConfig.from_dict({"split": {"val_classes_fraction": 0.25, "val_fold": 4}})
    with pytest.raises(ConfigError, match="needs validation classes"):
        ExperimentConfig.from_dict({"split": {"val_classes_fraction": 0.0, "val_fold": 1}})
    with pytest.raises(ConfigError, match="val_fold"):
        ExperimentConfig.from_dict({"split": {"val_fold": -1}})
    with pytest.raises(ConfigError, match="early_stopping_patience"):
        ExperimentConfig.from_dict({"train": {"monitor": "last", "early_stopping_patience": 3}})
    assert n_validation_folds(0.0) == 0 and n_validation_folds(0.2) == 5 and n_validation_folds(0.6) == 2


def test_cross_validate_without_validation_classes_is_a_config_error(tmp_path):
    from itemrec.experiments.open_set import cross_validate

    # no validation classes make no class folds: refused up front (it used to fail with an IndexError)
    base = _config(tmp_path, **{"split.val_classes_fraction": 0.0})
    with pytest.raises(ConfigError, match="val_classes_fraction > 0"):
        cross_validate(base, {"train.frozen_lr": [1e-3]})
    assert not any(tmp_path.iterdir())  # nothing trained


def test_refit_epochs_is_the_rounded_median_epoch_count():
    from itemrec.experiments.open_set import epochs_from_folds

    # best epochs (0-based) 10, 17, 18, 13 -> counts 11, 18, 19, 14 -> median (14 + 18) / 2 = 16
    assert epochs_from_folds([10, 17, 18, 13]) == 16
    # 3, 4, 8, 3 -> 4, 5, 9, 4 -> median 4.5, half up -> 5
    assert epochs_from_folds([3, 4, 8, 3]) == 5
    # the folds kept the starting weights (-1) three times out of four -> 0, 0, 0, 6 -> median 0: no training
    assert epochs_from_folds([-1, -1, -1, 5]) == 0
    assert epochs_from_folds([2]) == 3


def test_cross_validate_then_refit_on_every_seen_class(tmp_path, mobilenet_weights):
    from itemrec.experiments.open_set import cross_validate, main, results_table, retrain_on_seen_classes
    from itemrec.training.data import SplitData

    base = _config(tmp_path, **{"train.frozen_epochs": 2})
    frame = cross_validate(base, {"train.frozen_lr": [1e-3]})
    row = frame.iloc[0].to_dict()
    # 8 seen classes, 4 folds: fold 0 is the plain run, folds 1-3 carry their number
    names = ["small__frozen_lr=0.001"] + [f"small__frozen_lr=0.001__val_fold={f}" for f in (1, 2, 3)]
    assert row["run"] == names[0]
    fold_classes = []
    for name, score, epoch in zip(names, row["fold_scores"], row["best_epochs"]):
        info = json.loads((tmp_path / name / "training.json").read_text())["phases"]["phase1"]
        assert info["best_score"] == pytest.approx(score) and info["best_epoch"] == epoch
        assert not (tmp_path / name / "metrics.json").exists()  # test never read
        fold_classes.append(set(SplitData.load(tmp_path / name / "splits").validation_classes))
    assert len(set().union(*fold_classes)) == 8  # every seen class validated once
    assert row["valcls_score"] == pytest.approx(np.mean(row["fold_scores"]))
    expected_epochs = int(np.floor(np.median(np.array(row["best_epochs"]) + 1) + 0.5))
    assert row["refit_epochs"] == expected_epochs

    config = retrain_on_seen_classes(base, row, ["train.frozen_lr"])
    run = config.run_dir
    assert run.name == "small__frozen_lr=0.001__refit" and not (run / "metrics.json").exists()
    assert config.split.val_classes_fraction == 0 and config.train.frozen_epochs == expected_epochs
    assert config.train.monitor == "last"
    splits = SplitData.load(run / "splits")
    assert splits.val_classes is None and splits.n_train_classes == 8  # trained on every seen class
    if expected_epochs:
        phase = json.loads((run / "training.json").read_text())["phases"]["phase1"]
        assert phase["best_epoch"] == expected_epochs - 1 and phase["monitor"] == "last"
        assert not (run / "phase1" / "best.weights.h5").exists()  # no checkpoint choice: the final weights
    assert json.loads((run / "cross_validation.json").read_text())["fold_scores"] == pytest.approx(row["fold_scores"])
    assert results_table(tmp_path).empty  # nothing was evaluated on test yet

    cfg = tmp_path / "c.json"
    base.to_json(cfg)
    assert main([str(cfg), "--folds", "--grid", "train.frozen_lr=0.001", "--test"]) == 0  # reuses every run
    table = results_table(tmp_path)
    assert list(table["run"]) == [run.name] and table.iloc[0]["selection"] == "class folds"
    assert table.iloc[0]["valcls_score"] == pytest.approx(row["valcls_score"])
    # fine-tuning recipes are refused up front (the folds choose the frozen phase's epochs only)
    with pytest.raises(ConfigError, match="finetune_epochs"):
        retrain_on_seen_classes(base.with_overrides({"train.finetune_epochs": 1}), row, ["train.frozen_lr"])


def test_eval_metric_is_what_evaluation_computes(tmp_path):
    from itemrec.evaluation import cmc_image_averaged
    from itemrec.evaluation._chunked import METRICS

    # squared_l2 passed the config before and failed in evaluation after training (issue 14)
    with pytest.raises(ConfigError, match="eval.metric"):
        ExperimentConfig.from_dict({"eval": {"metric": "squared_l2"}})
    # every metric the config accepts, evaluation computes: two queries, two catalogue images
    q, g = np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([[0.9, 0.1], [0.1, 0.9]])
    for metric in METRICS:
        ExperimentConfig.from_dict({"eval": {"metric": metric}})
        res = cmc_image_averaged(q, np.array([0, 1]), g, np.array([0, 1]), max_rank=2, metric=metric)
        assert res.mean[0] == 1.0  # each query is nearest its own class under cosine and L2 alike
