"""ExperimentConfig: JSON round trip, overrides and validation errors (no TensorFlow work)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from itemrec.training.config import ConfigError, ExperimentConfig


def test_json_round_trip_keeps_every_field(tmp_path):
    cfg = ExperimentConfig.from_dict(
        {
            "name": "r",
            "seed": 3,
            "data": {"name": "grocery", "max_images_per_class": 5},
            "split": {"kind": "closed", "val_fraction": 0.1},
            "model": {"backbone": "small_cnn", "weights": None, "input_size": 32, "hidden": None},
            "loss": {"class_name": "SoftmaxLoss",
                     "config": {"head": {"class_name": "ArcFace", "config": {"scale": 30.0, "margin": 0.5}}}},
            "train": {"p": 4, "k": 2, "finetune_layers": "all", "frozen_epochs": 0, "finetune_epochs": 3},
            "eval": {"far_targets": [0.1, 0.01]},
        }
    )
    path = tmp_path / "c.json"
    cfg.to_json(path)
    back = ExperimentConfig.from_json(path)
    assert back == cfg
    assert back.to_dict() == json.loads(path.read_text())
    assert back.eval.far_targets == (0.1, 0.01)
    assert back.train.global_batch == 8  # P*K = 4*2
    assert back.run_dir == Path("models") / "r"
    assert back.cache_dir == Path("models") / ".feature_cache"


def test_configs_folder_loads():
    folder = Path(__file__).resolve().parents[1] / "configs"
    files = sorted(folder.glob("*.json"))
    assert len(files) >= 8
    names = set()
    for f in files:
        cfg = ExperimentConfig.from_json(f)
        assert cfg.name == f.stem
        names.add(cfg.name)
    # the README's open-set table runs every loss on these two configs (--set loss.class_name=...)
    assert {"grocery_open_linear", "grocery_open_mlp", "grocery_open_frozen_baseline"} <= names
    from itemrec.training.loss_config import convert_old_loss

    losses = ("softmax", "center", "triplet", "cosine", "arcface", "cosface", "multi_similarity", "proxy_anchor",
              "contrastive")
    for name in ("grocery_open_linear", "grocery_open_mlp"):
        base = ExperimentConfig.from_json(folder / f"{name}.json")
        for loss in losses:
            init = name.endswith("linear") and loss in ("cosine", "arcface", "cosface", "proxy_anchor")
            spec, _ = convert_old_loss({"name": loss}, warn=False)
            cfg = base.with_overrides({"loss": spec, "train.init_from_catalogue": init})
            assert cfg.loss.name == loss and cfg.split.val_classes_fraction == 0.25 and cfg.train.monitor == "auto"


@pytest.mark.parametrize(
    "raw, words",
    [
        ({"loss": {"name": "hinge"}}, ["loss.name", "hinge", "triplet"]),
        ({"loss": {"class_name": "HingeLoss"}}, ["loss.class_name", "HingeLoss", "register_keras_serializable"]),
        ({"loss": {"class_name": "TripletLoss", "config": {"mragin": 0.3}}}, ["loss.config", "mragin"]),
        ({"loss": {"class_name": "TripletLoss", "config": {"miner": "hardest"}}}, ["loss.config", "unknown miner"]),
        ({"loss": {"class_name": "BatchHardMiner"}}, ["loss.class_name", "not an itemrec.losses.MetricLoss"]),
        ({"loss": {"class_name": "TripletLoss"}, "train": {"init_from_catalogue": True}},
         ["train.init_from_catalogue", "TripletLoss"]),
        ({"imports": ["no_such_module_xyz"]}, ["imports", "no_such_module_xyz"]),
        ({"train": {"p": 4}}, ["train.p", "train.k"]),
        ({"split": {"unseen_fraction": 1.5}}, ["split.unseen_fraction", "1.5"]),
        ({"model": {"backbone": "small_cnn", "weights": "imagenet"}}, ["small_cnn", "weights"]),
        ({"model": {"input_size": 8}}, ["model.input_size", ">= 32"]),
        ({"model": {"dropout": 1.0}}, ["model.dropout"]),
        ({"train": {"frozen_epochs": 0, "finetune_epochs": 0}}, ["frozen_epochs", "finetune_epochs"]),
        ({"strategy": "tpu"}, ["strategy", "mirrored"]),
        ({"name": "a/b"}, ["name", "slashes"]),
        ({"data": {"name": "imagenet"}}, ["data.name", "csv"]),
        ({"data": {"name": "folder"}}, ["data.root", "folder"]),
        ({"batch": 3}, ["unknown keys", "batch"]),
        ({"train": {"bach_size": 3}}, ["unknown keys", "bach_size", "train"]),
        ({"train": {"batch_size": "32"}}, ["train.batch_size", "integer"]),
        ({"eval": {"far_targets": 0.01}}, ["eval.far_targets", "list"]),
    ],
)
def test_validation_errors_name_the_field(raw, words):
    with pytest.raises(ConfigError) as err:
        ExperimentConfig.from_dict(raw)
    for w in words:
        assert w in str(err.value)


def test_overrides_parse_json_values_and_reject_unknown_keys():
    cfg = ExperimentConfig()
    new = cfg.with_overrides(["train.batch_size=16", "loss.class_name=TripletLoss", "loss.config.margin=0.3",
                              "model.weights=null", "eval.far_targets=[0.1]"])
    assert new.train.batch_size == 16 and new.loss.name == "triplet" and new.model.weights is None
    assert new.loss.config == {"margin": 0.3} and new.loss.build(3).margin == 0.3
    assert new.eval.far_targets == (0.1,)
    assert cfg.train.batch_size == 32  # the original is untouched
    with pytest.raises(ConfigError, match="unknown key"):
        cfg.with_overrides(["train.batchsize=3"])
    with pytest.raises(ConfigError, match="not a config section"):
        cfg.with_overrides(["nope.x=3"])
    with pytest.raises(ConfigError, match="key=value"):
        cfg.with_overrides(["train.batch_size"])
    with pytest.raises(ConfigError, match="train.batch_size must be >= 2"):
        cfg.with_overrides(["train.batch_size=1"])


def test_bad_json_file_names_the_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="bad.json"):
        ExperimentConfig.from_json(bad)
    with pytest.raises(FileNotFoundError, match="missing.json"):
        ExperimentConfig.from_json(tmp_path / "missing.json")


def test_untrained_baseline_head_needs_zero_frozen_epochs():
    base = {"model": {"head": "none"}, "train": {"frozen_epochs": 0, "finetune_epochs": 0}}
    assert ExperimentConfig.from_dict(base).model.head == "none"
    with pytest.raises(ConfigError, match="nothing to train"):
        ExperimentConfig.from_dict({"model": {"head": "none"}, "train": {"frozen_epochs": 3}})
    with pytest.raises(ConfigError, match="must be >= 1"):
        ExperimentConfig.from_dict({"train": {"frozen_epochs": 0, "finetune_epochs": 0}})
    with pytest.raises(ConfigError, match="model.head"):
        ExperimentConfig.from_dict({"model": {"head": "linear"}})


def test_finetune_augment_defaults_to_augment_and_can_differ():
    assert ExperimentConfig.from_dict({"train": {"augment": True}}).train.phase2_augment is True
    cfg = ExperimentConfig.from_dict({"train": {"augment": False, "finetune_augment": True}})
    assert cfg.train.phase2_augment is True and cfg.train.augment is False
    with pytest.raises(ConfigError, match="finetune_augment"):
        ExperimentConfig.from_dict({"train": {"finetune_augment": "yes"}})


def test_far_keys_of_the_report_stay_distinct_and_keep_their_usual_spelling():
    from itemrec.training.report import _far_key

    # the usual targets keep the keys of every metrics.json so far ("val_at_far_1e-02", ...)
    assert [_far_key(f) for f in (0.1, 0.01, 1e-3)] == ["1e-01", "1e-02", "1e-03"]
    # 0.015 and 0.02 both printed "2e-02" with one digit, and the second overwrote the first
    assert _far_key(0.015) == "1.5e-02" and _far_key(0.02) == "2e-02"
    assert len({_far_key(f) for f in (0.015, 0.02, 0.0125, 0.01)}) == 4


def test_grid_values_split_at_top_level_commas_so_a_whole_miner_is_one_value():
    from itemrec.experiments.open_set import _parse_grid

    assert _parse_grid(["train.frozen_lr=1e-4,3e-4"]) == {"train.frozen_lr": [1e-4, 3e-4]}
    assert _parse_grid(["loss.class_name=TripletLoss,ProxyAnchorLoss"]) == {
        "loss.class_name": ["TripletLoss", "ProxyAnchorLoss"]}
    miners = ('loss.config.miner={"class_name": "BatchHardMiner", "config": {}},'
              '{"class_name": "MultiSimilarityMiner", "config": {"epsilon": 0.1, "note": "a, b"}}')
    assert _parse_grid([miners]) == {"loss.config.miner": [
        {"class_name": "BatchHardMiner", "config": {}},
        {"class_name": "MultiSimilarityMiner", "config": {"epsilon": 0.1, "note": "a, b"}}]}
