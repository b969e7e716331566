"""Losses, miners, distances and reducers as Keras-serialisable objects, and the config that holds them.

* every object's ``get_config`` is its constructor arguments and round-trips through the
  ``{"class_name", "config"}`` dict;
* a config written in the older flat format still loads, converted (with a warning) to the
  same objects the older ``build_loss`` if-chain built;
* a miner and a loss defined *outside* the package train through ``itemrec train``, save in the
  ``.keras`` file and load in a fresh process, with no change to itemrec.
"""

from __future__ import annotations

import json
import re
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")
from keras import ops  # noqa: E402

from itemrec import distances, losses, mining, reducers  # noqa: E402
from itemrec.serialization import deserialize, serialize  # noqa: E402
from itemrec.training import ConfigError, ExperimentConfig  # noqa: E402
from itemrec.training.loss_config import convert_old_loss  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LAYER_KEYS = {"name", "trainable", "dtype"}  # keras.layers.Layer's own constructor arguments


def _own(config: dict) -> dict:
    return {k: v for k, v in config.items() if k not in LAYER_KEYS}


OBJECTS = [
    distances.SquaredL2Distance(), distances.L2Distance(), distances.CosineDistance(),
    distances.MeanSquaredDistance(), distances.CosineSimilarity(),
    mining.BatchAllMiner(), mining.BatchHardMiner(), mining.SemiHardMiner(), mining.RandomTripletMiner(seed=4),
    mining.MultiSimilarityMiner(0.3), reducers.MeanReducer(), reducers.AvgNonZeroReducer(),
]


@pytest.mark.parametrize("obj", OBJECTS, ids=lambda o: type(o).__name__)
def test_small_objects_round_trip_and_their_config_is_their_arguments(obj):
    spec = serialize(obj)
    assert spec["class_name"] == type(obj).__name__  # itemrec's are written by class name alone
    back = deserialize(json.loads(json.dumps(spec)))
    assert type(back) is type(obj) and back.get_config() == obj.get_config()
    assert type(type(obj)(**obj.get_config())) is type(obj)  # the config is the constructor's arguments
    # keras's own functions read and write them too
    assert type(keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(obj))) is type(obj)


LOSSES = [
    losses.SoftmaxLoss(5),
    losses.CenterLoss(5, alpha=0.3, lam=0.2),
    losses.SoftmaxLoss(5, head={"class_name": "ArcFace", "config": {"scale": 20.0, "margin": 0.4}}),
    losses.TripletLoss(0.3, mining.SemiHardMiner(), distances.L2Distance(), soft_margin=True,
                       reducer=reducers.AvgNonZeroReducer()),
    losses.TripletLoss(0.1, mining.RandomTripletMiner(seed=9), "cosine"),
    losses.MultiSimilarityLoss(3.0, 40.0, 0.4, miner=mining.MultiSimilarityMiner(0.2)),
    losses.MultiSimilarityLoss(miner=None),
    losses.ProxyAnchorLoss(5, margin=0.2, alpha=16.0),
    losses.ContrastiveLoss(0.1, 0.8, distance="cosine", reducer="mean"),
]


@pytest.mark.parametrize("loss", LOSSES, ids=lambda o: type(o).__name__)
def test_losses_rebuild_from_their_config_and_compute_the_same(loss):
    config = json.loads(json.dumps(loss.get_config()))  # plain JSON, nested objects as dicts
    rebuilt = type(loss)(**_own(config))
    assert _own(rebuilt.get_config()) == _own(config)
    via_keras = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert _own(via_keras.get_config()) == _own(config)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(10, 4)).astype(np.float32)
    y = np.array([0, 0, 1, 1, 2, 2, 3, 3, 4, 4])
    for other in (rebuilt, via_keras):
        loss.build_for(4)
        other.build_for(4)
        for a, b in zip(loss.weights, other.weights):
            b.assign(a)
        if isinstance(getattr(loss, "miner", None), mining.RandomTripletMiner):
            continue  # random draws: the value is checked by test_losses' reference on its own mask
        want = float(loss.compute(ops.convert_to_tensor(x), y)[0])
        assert float(other.compute(ops.convert_to_tensor(x), y)[0]) == pytest.approx(want, rel=1e-6)


# what the older build_loss built for each older name (its if-chain, by hand), with n_classes = 6, seed 3
OLDER = {
    "softmax": lambda: losses.SoftmaxLoss(6),
    "center": lambda: losses.CenterLoss(6, alpha=0.25, lam=0.05),
    "triplet": lambda: losses.TripletLoss(0.4, mining.RandomTripletMiner(seed=3), "l2", True),
    "cosine": lambda: losses.SoftmaxLoss(head=losses.CosineSoftmax(6, scale=12.0)),
    "arcface": lambda: losses.SoftmaxLoss(head=losses.ArcFace(6, scale=12.0, margin=0.2)),
    "cosface": lambda: losses.SoftmaxLoss(head=losses.CosFace(6, scale=12.0, margin=0.2)),
    "multi_similarity": lambda: losses.MultiSimilarityLoss(2.5, 45.0, 0.45, miner=mining.MultiSimilarityMiner(0.15)),
    "proxy_anchor": lambda: losses.ProxyAnchorLoss(6, margin=0.15, alpha=30.0),
    "contrastive": lambda: losses.ContrastiveLoss(0.05, 0.9),
}
OLDER_PARAMS = {"alpha": 0.25, "lam": 0.05, "margin": 0.4, "miner": "random", "distance": "l2", "soft_margin": True,
                "scale": 12.0, "angular_margin": 0.2, "ms_alpha": 2.5, "ms_beta": 45.0, "ms_base": 0.45,
                "ms_epsilon": 0.15, "proxy_margin": 0.15, "proxy_alpha": 30.0, "pos_margin": 0.05, "neg_margin": 0.9}


@pytest.mark.parametrize("name", list(OLDER))
def test_older_config_loads_converted_with_a_warning_to_the_same_loss(name):
    older = {"seed": 3, "loss": {"name": name, **OLDER_PARAMS}}
    if name == "center":
        older["loss"]["finetune_lam"] = 0.5
    if name in ("cosine", "proxy_anchor"):
        older["loss"]["init_from_catalogue"] = True
    with pytest.warns(FutureWarning, match="older format"):
        cfg = ExperimentConfig.from_dict(older)
    assert cfg.loss.name == name
    assert cfg.train.finetune_lam == (0.5 if name == "center" else None)
    assert cfg.train.init_from_catalogue == (name in ("cosine", "proxy_anchor"))
    built, want = cfg.loss.build(6), OLDER[name]()
    assert type(built) is type(want)
    assert _own(built.get_config()) == _own(want.get_config())
    # and the converted config is written in the new form, which reads back without a warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = ExperimentConfig.from_dict(json.loads(cfg.to_json()))
    assert again.loss == cfg.loss and "class_name" in cfg.to_dict()["loss"]


def test_the_older_format_warning_names_the_config_file(tmp_path):
    path = tmp_path / "old_run.json"
    path.write_text(json.dumps({"loss": {"name": "triplet", "margin": 0.3}}))
    with pytest.warns(FutureWarning, match=f"^{re.escape(str(path))}: the loss section"):
        ExperimentConfig.from_json(path)


def test_older_override_keys_name_their_new_place_and_class_change_resets_arguments():
    cfg = ExperimentConfig.from_dict({"loss": {"class_name": "TripletLoss", "config": {"margin": 0.5}}})
    for key, place in (("loss.name", "loss.class_name"), ("loss.margin", "loss.config.<argument>"),
                       ("loss.init_from_catalogue", "train.init_from_catalogue")):
        with pytest.raises(ConfigError, match=place.replace(".", r"\.")):
            cfg.with_overrides({key: 1})
    moved = cfg.with_overrides({"loss.class_name": "ProxyAnchorLoss"})  # margin 0.5 is TripletLoss's
    assert moved.loss.config == {} and type(moved.loss.build(3)) is losses.ProxyAnchorLoss
    both = cfg.with_overrides({"loss.class_name": "ProxyAnchorLoss", "loss.config.alpha": 8.0})
    assert both.loss.config == {"margin": 0.5, "alpha": 8.0} and both.loss.build(3).alpha == 8.0
    with pytest.raises(ConfigError, match="margin must be >= 0"):
        cfg.with_overrides({"loss.config.margin": -0.1})


USER_MODULE = '''
"""Objects a user defines outside itemrec."""
import keras
from keras import ops

from itemrec.losses import TripletLoss
from itemrec.mining import TripletMiner, Triplets, pair_masks


@keras.saving.register_keras_serializable(package="shop")
class EasiestNegativeMiner(TripletMiner):
    """Per positive pair, the negative farthest from the anchor; pairs farther than max_pos are dropped."""

    def __init__(self, max_pos=100.0):
        self.max_pos = float(max_pos)

    def mine(self, labels, distances):
        pos, neg = pair_masks(labels)
        pos = pos * ops.cast(ops.less_equal(distances, self.max_pos), "float32")
        far = ops.argmax(distances * neg - (1.0 - neg) * 1e9, axis=1)
        negatives = ops.broadcast_to(ops.expand_dims(ops.cast(far, "int32"), 1), ops.shape(pos))
        return Triplets(pair_mask=pos, negatives=negatives)

    def get_config(self):
        return {"max_pos": self.max_pos}


@keras.saving.register_keras_serializable(package="shop")
class ScaledTripletLoss(TripletLoss):
    """The triplet loss times a constant weight."""

    def __init__(self, weight=1.0, **kwargs):
        super().__init__(**kwargs)
        self.weight = float(weight)

    def compute(self, embeddings, labels=None, training=False):
        loss, metrics = super().compute(embeddings, labels, training)
        return self.weight * loss, metrics

    def get_config(self):
        return {**super().get_config(), "weight": self.weight}
'''

CHECK = '''
import json, sys
import numpy as np
import keras
import shop_objects  # registers the user's classes, as any Keras custom object needs
from itemrec.models import register_custom_objects
register_custom_objects()
model = keras.saving.load_model(sys.argv[1], compile=False, safe_mode=True)
loss = model.metric_loss
x = np.array(json.loads(sys.argv[2]), np.float32)
y = np.array(json.loads(sys.argv[3]))
print(json.dumps({"loss": type(loss).__name__, "miner": type(loss.miner).__name__, "weight": loss.weight,
                  "max_pos": loss.miner.max_pos, "margin": loss.margin, "distance": type(loss.distance).__name__,
                  "value": float(loss.compute(x, y)[0])}))
'''


def _reference(x: np.ndarray, y: np.ndarray, margin: float, weight: float, max_pos: float) -> float:
    """The user's loss by loops: every (a, p) with d_ap <= max_pos, the farthest negative, hinge, mean."""
    d = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    terms = []
    for a in range(len(y)):
        negs = [n for n in range(len(y)) if y[n] != y[a]]
        for p in range(len(y)):
            if p != a and y[p] == y[a] and d[a, p] <= max_pos:
                n = max(negs, key=lambda j: d[a, j])
                terms.append(max(d[a, p] - d[a, n] + margin, 0.0))
    return weight * float(np.mean(terms))


def test_user_defined_miner_and_loss_train_save_and_load_in_a_fresh_process(tmp_path):
    (tmp_path / "shop_objects.py").write_text(textwrap.dedent(USER_MODULE))
    (tmp_path / "check.py").write_text(textwrap.dedent(CHECK))
    config = {
        "name": "user", "output_dir": str(tmp_path / "runs"), "seed": 0, "imports": ["shop_objects"],
        "data": {"name": "synthetic", "synthetic_products": 8, "synthetic_photos": 6, "synthetic_image_size": 40},
        "split": {"kind": "open", "unseen_fraction": 0.5, "val_fraction": 0.34, "calib_fraction": 0.34,
                  "val_classes_fraction": 0.0},
        "model": {"backbone": "small_cnn", "weights": None, "input_size": 32, "embedding_dim": 8, "hidden": None,
                  "dropout": 0.0, "cnn_filters": [4]},
        "loss": {"class_name": "shop>ScaledTripletLoss", "config": {
            "weight": 2.5, "margin": 0.3, "miner": {"class_name": "shop>EasiestNegativeMiner",
                                                    "config": {"max_pos": 50.0}}}},
        "train": {"frozen_epochs": 0, "finetune_epochs": 2, "finetune_layers": "all", "finetune_lr": 1e-3,
                  "batch_size": 8, "monitor": "last", "tensorboard": False},
        "eval": {"cmc_draws": 2},
    }
    path = tmp_path / "user.json"
    path.write_text(json.dumps(config))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT / "src")])}
    cli = "import sys; from itemrec.cli import main; sys.exit(main(sys.argv[1:]))"
    done = subprocess.run([sys.executable, "-c", cli, "train", str(path), "--quiet"], env=env,
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "runs" / "user"
    saved = json.loads((run / "config.json").read_text())
    assert saved["loss"]["class_name"] == "shop>ScaledTripletLoss" and saved["imports"] == ["shop_objects"]
    history = (run / "history.csv").read_text().splitlines()
    assert len(history) == 3  # header + 2 epochs, trained with the user's loss
    rng = np.random.default_rng(1)
    x = rng.normal(size=(8, 3)).astype(np.float32)
    y = np.array([0, 0, 1, 1, 2, 2, 0, 1])
    out = subprocess.run([sys.executable, str(tmp_path / "check.py"), str(run / "model.keras"),
                          json.dumps(x.tolist()), json.dumps(y.tolist())], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert (got["loss"], got["miner"], got["weight"], got["max_pos"], got["margin"], got["distance"]) == \
        ("ScaledTripletLoss", "EasiestNegativeMiner", 2.5, 50.0, 0.3, "SquaredL2Distance")
    assert got["value"] == pytest.approx(_reference(x, y, 0.3, 2.5, 50.0), rel=1e-5)


def test_unregistered_object_cannot_be_serialised_and_unimported_class_is_named():
    class Loose(mining.TripletMiner):
        def mine(self, labels, distances):
            return mining.BatchHardMiner().mine(labels, distances)

    with pytest.raises(ValueError, match="register_keras_serializable"):
        serialize(Loose())
    with pytest.raises(ConfigError, match="'imports'"):
        ExperimentConfig.from_dict({"loss": {"class_name": "nowhere>Loss"}})


def test_old_loss_conversion_keeps_every_older_name():
    names = {convert_old_loss({"name": n}, warn=False)[0]["class_name"] for n in OLDER}
    assert names == {"SoftmaxLoss", "CenterLoss", "TripletLoss", "MultiSimilarityLoss", "ProxyAnchorLoss",
                     "ContrastiveLoss"}


def test_nested_bad_argument_names_the_root_cause_and_imports_search_the_current_folder(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match=r"TypeError: BatchHardMiner\(\) takes no arguments"):
        ExperimentConfig.from_dict({"loss": {"class_name": "TripletLoss", "config": {
            "miner": {"class_name": "BatchHardMiner", "config": {"foo": 1}}}}})
    (tmp_path / "shop_here.py").write_text(textwrap.dedent('''
        import keras
        from itemrec.mining import BatchHardMiner

        @keras.saving.register_keras_serializable(package="here")
        class HereMiner(BatchHardMiner):
            """Batch-hard under another name."""
    '''))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    cfg = ExperimentConfig.from_dict({"imports": ["shop_here"], "loss": {"class_name": "TripletLoss", "config": {
        "miner": {"class_name": "here>HereMiner", "config": {}}}}})
    assert type(cfg.loss.build(3).miner).__name__ == "HereMiner"
