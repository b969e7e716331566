"""itemrec.experiments.grocery and results_io: the drivers of notebooks 01 and 02."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from itemrec.experiments import grocery as g
from itemrec.experiments.results_io import save_results, to_jsonable


# -- results.json ---------------------------------------------------------------------------


def test_save_results_converts_numpy_and_paths(tmp_path):
    import pandas as pd

    path = save_results(tmp_path / "o", {"a": np.float32(0.5), "b": np.int64(3), "c": np.array([1, 2]),
                                         "d": float("nan"), "e": tmp_path, "f": pd.Series({"x": 1.0}),
                                         "g": (np.bool_(True), None)})
    got = json.loads(path.read_text())
    assert got == {"a": 0.5, "b": 3, "c": [1, 2], "d": None, "e": str(tmp_path), "f": {"x": 1.0}, "g": [True, None]}


def test_save_results_names_the_bad_value(tmp_path):
    with pytest.raises(TypeError, match=r"results\.runs\.x: cannot write a object"):
        to_jsonable({"runs": {"x": object()}})
    with pytest.raises(TypeError, match="must be a dict"):
        save_results(tmp_path, [1, 2])


# -- QUICK subset of the real dataset -----------------------------------------------------------


def test_grocery_subset_caps_each_split_and_links_images(tmp_path, dataset_path):
    from itemrec.data import load_grocery

    full = load_grocery(dataset_path("grocery-store"))
    root = g.grocery_subset(tmp_path / "q", {"train": 3, "test": 2}, seed=1, root=dataset_path("grocery-store"))
    sub = load_grocery(root)
    assert (root / "dataset" / "train").is_symlink() and not (root / "dataset" / "train.txt").is_symlink()
    for split, cap in (("train", 3), ("test", 2), ("val", None)):
        f = full.frame[full.frame["split"] == split].groupby("label").size()
        s = sub.frame[sub.frame["split"] == split].groupby("label").size().reindex(f.index, fill_value=0)
        expected = f if cap is None else f.clip(upper=cap)
        assert (s == expected).all(), split
    # every kept image is one of the originals, resolved to the same file
    originals = {str(Path(p).resolve()) for p in full.paths}
    assert {str(Path(p).resolve()) for p in sub.paths} <= originals
    assert all(Path(p).is_file() for p in sub.representatives.values())
    assert sub.class_names == full.class_names
    # same seed, same subset; re-running over the folder is fine
    again = load_grocery(g.grocery_subset(tmp_path / "q", {"train": 3, "test": 2}, seed=1, root=dataset_path("grocery-store")))
    assert list(again.paths) == list(sub.paths)


def test_grocery_subset_rejects_bad_caps(tmp_path):
    with pytest.raises(ValueError, match="max_per_class keys"):
        g.grocery_subset(tmp_path, {"calib": 3})
    with pytest.raises(ValueError, match=r"max_per_class\['train'\]"):
        g.grocery_subset(tmp_path, {"train": 0})


# -- configs ----------------------------------------------------------------------------------


def test_grocery_config_trains_the_schedule_it_is_given(tmp_path):
    from itemrec.training import ConfigError

    # a backbone without weights: nothing is moved between phases behind the caller's back
    with pytest.raises(ConfigError, match="epochs=0, finetune_epochs=5, finetune_layers='all'"):
        g.grocery_config("a", tmp_path, backbone="small_cnn", epochs=4, finetune_epochs=1, lr=3e-3)
    cnn = g.grocery_config("a", tmp_path, backbone="small_cnn", epochs=0, finetune_epochs=5, finetune_layers="all",
                           finetune_lr=3e-3)
    assert cnn.model.weights is None
    assert (cnn.train.frozen_epochs, cnn.train.finetune_epochs, cnn.train.finetune_layers) == (0, 5, "all")
    assert cnn.train.finetune_lr == 3e-3
    mob = g.grocery_config("b", tmp_path, loss="center", lam=0.3, finetune_lam=0.01, alpha=0.2, epochs=4,
                           finetune_epochs=1, optimizer="sgd")
    assert mob.model.weights == "local" and mob.loss.get("lam") == 0.3 and mob.loss.get("alpha") == 0.2
    assert mob.train.finetune_lam == 0.01 and mob.train.optimizer == "sgd"
    assert (mob.train.frozen_epochs, mob.train.finetune_epochs, mob.train.finetune_layers) == (4, 1, 20)
    assert (mob.data.name, mob.split.kind, mob.train.global_batch) == ("grocery", "open", 64)
    assert g.default_weights("inception_v3") == "imagenet"
    with pytest.raises(ConfigError, match="model.input_size"):
        g.grocery_config("c", tmp_path, backbone="inception_v3", input_size=64)
    with pytest.raises(ConfigError, match="finetune_lam"):
        g.grocery_config("d", tmp_path, loss="triplet", finetune_lam=0.01)


def test_keyed_names_carry_swept_values_and_the_training_hash(tmp_path):
    cfg = g.grocery_config("center", tmp_path, loss="center", lam=0.01, alpha=0.5)
    named = g.keyed(cfg, swept=("loss.config.lam", "loss.config.alpha"))
    stem, lam, alpha, key = named.name.split("_")
    assert (stem, lam, alpha) == ("center", "lam0.01", "alpha0.5") and len(key) == 8
    assert key == cfg.training_key()
    # the evaluation settings are not part of what was trained; every training value is
    assert g.keyed(cfg.with_overrides({"eval.cmc_draws": 7, "eval.far_targets": [0.5]}), ("loss.config.lam",)).name \
        == f"center_lam0.01_{key}"
    for change in ({"loss.config.lam": 0.02}, {"train.frozen_epochs": 6}, {"model.input_size": 128}, {"seed": 1}):
        assert cfg.with_overrides(change).training_key() != key, change
    assert cfg.with_overrides({"name": "other", "output_dir": "/elsewhere"}).training_key() == key
    from itemrec.training import ConfigError

    with pytest.raises(ConfigError, match="not a config key"):
        g.keyed(cfg, swept=("loss.lambda",))


# -- a tiny real run (synthetic catalogue, small CNN) ----------------------------------------------


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from itemrec.training import ExperimentConfig

    out = tmp_path_factory.mktemp("runs")
    cfg = ExperimentConfig.from_dict({
        "name": "tiny", "output_dir": str(out), "seed": 0,
        "data": {"name": "synthetic", "synthetic_products": 8, "synthetic_photos": 6, "synthetic_image_size": 32},
        "split": {"kind": "open", "unseen_fraction": 0.5, "calib_fraction": 0.5, "val_classes_fraction": 0.0},
        "model": {"backbone": "small_cnn", "weights": None, "input_size": 32, "embedding_dim": 8, "hidden": 16},
        "loss": {"class_name": "TripletLoss", "config": {"miner": "batch_hard", "margin": 0.2}},
        "train": {"frozen_epochs": 0, "finetune_epochs": 1, "finetune_layers": "all", "finetune_lr": 1e-3,
                  "p": 4, "k": 3, "steps_per_epoch": 2, "tensorboard": False},
        "eval": {"cmc_draws": 5, "far_targets": [0.2, 0.05]},
    })
    return cfg, g.run_or_load(cfg)


def test_run_or_load_reuses_a_finished_identical_run(tiny_run):
    cfg, first = tiny_run
    done = cfg.run_dir / "done.json"
    stamp = done.stat().st_mtime_ns
    again = g.run_or_load(cfg)
    assert done.stat().st_mtime_ns == stamp  # not retrained
    assert again.metrics == json.loads((cfg.run_dir / "metrics.json").read_text())
    assert again.metrics["rank1"] == pytest.approx(first.metrics["rank1"])
    assert list(again.history["epoch"]) == [0]
    assert g.cmc_from_metrics(again.metrics).at(1) == pytest.approx(first.metrics["rank1"])


def test_run_or_load_reevaluates_when_only_the_evaluation_changes(tiny_run, tmp_path):
    import shutil

    cfg, first = tiny_run
    moved = cfg.with_overrides({"output_dir": str(tmp_path)})
    shutil.copytree(cfg.run_dir, moved.run_dir)
    weights = moved.run_dir / "embedding.keras"
    stamps = {p: p.stat().st_mtime_ns for p in (weights, moved.run_dir / "done.json")}
    res = g.run_or_load(moved.with_overrides({"eval.cmc_draws": 3, "eval.far_targets": [0.3]}))
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # not retrained
    saved = json.loads((moved.run_dir / "config.json").read_text())
    assert saved["eval"]["cmc_draws"] == 3 and saved["eval"]["far_targets"] == [0.3]
    assert res.metrics["cmc"]["n_draws"] == 3 and json.loads((moved.run_dir / "metrics.json").read_text()) == res.metrics
    assert res.history.equals(first.history)


def test_run_or_load_never_replaces_another_training_without_overwrite(tiny_run, tmp_path):
    import shutil

    from itemrec.training import ConfigError

    cfg, _ = tiny_run
    moved = cfg.with_overrides({"output_dir": str(tmp_path)})
    shutil.copytree(cfg.run_dir, moved.run_dir)
    other = moved.with_overrides({"loss.config.margin": 0.5})
    with pytest.raises(ConfigError, match=r"differs in \['loss.config.margin'\].*overwrite=True"):
        g.run_or_load(other)
    assert json.loads((moved.run_dir / "config.json").read_text())["loss"]["config"]["margin"] == 0.2  # untouched
    assert (moved.run_dir / "done.json").is_file()
    # keyed names give the other training its own folder: both runs stay
    a, b = g.keyed(moved, ("loss.config.margin",)), g.keyed(other, ("loss.config.margin",))
    assert a.run_dir != b.run_dir and a.name.startswith("tiny_margin0.2_") and b.name.startswith("tiny_margin0.5_")


def test_sibling_runs_are_the_finished_runs_that_differ_only_in_the_varied_keys(tiny_run, tmp_path):
    import shutil

    cfg, _ = tiny_run
    base = cfg.with_overrides({"output_dir": str(tmp_path)})
    a = g.keyed(base, ("loss.config.margin",))
    shutil.copytree(cfg.run_dir, a.run_dir)
    a.to_json(a.run_dir / "config.json")  # as if trained under its keyed name
    b = g.keyed(base.with_overrides({"loss.config.margin": 0.5}), ("loss.config.margin",))
    shutil.copytree(cfg.run_dir, b.run_dir)
    b.to_json(b.run_dir / "config.json")
    c = g.keyed(base.with_overrides({"seed": 3}), ())  # differs in the seed: not a sibling
    shutil.copytree(cfg.run_dir, c.run_dir)
    c.to_json(c.run_dir / "config.json")
    unfinished = g.keyed(base.with_overrides({"loss.config.margin": 0.9}), ("loss.config.margin",))
    shutil.copytree(cfg.run_dir, unfinished.run_dir)
    unfinished.to_json(unfinished.run_dir / "config.json")
    (unfinished.run_dir / "done.json").unlink()
    found = g.sibling_runs(b, vary=("loss.config.margin",))
    assert sorted(found) == sorted([a.name, b.name])
    assert {r.config.loss.get("margin") for r in found.values()} == {0.2, 0.5}
    assert list(g.sibling_runs(b, vary=())) == [b.name]  # nothing varied: only the run itself


def _cosine(a, b):
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return 1.0 - a @ b.T


def test_open_set_embeddings_and_verification_sweep(tiny_run):
    cfg, res = tiny_run
    emb = g.open_set_embeddings(res.run_dir)
    assert emb.test.shape[1] == 8 and len(emb.test) == len(emb.test_labels) == len(emb.test_paths)
    assert set(emb.gallery_labels) == set(np.unique(emb.test_labels))  # one catalogue image per test class
    from itemrec.training.data import SplitData

    seen = set(SplitData.load(res.run_dir / "splits").train_classes)
    assert seen and not seen & set(emb.test_labels.tolist())  # open set: no test class was trained on
    sweep = g.verification_sweep(emb, (0.2, 0.05))
    t = sweep.table
    assert list(t["target_far"]) == [0.2, 0.05]
    assert (t["far_calib"] <= t["target_far"] + 1e-12).all()
    # reference: count the test pairs by hand at each fitted threshold
    d = _cosine(emb.test, emb.test)
    same, diff = [], []
    for i in range(len(d)):
        for j in range(i + 1, len(d)):
            (same if emb.test_labels[i] == emb.test_labels[j] else diff).append(d[i, j])
    for row in t.itertuples():
        assert row.val_test == pytest.approx(np.mean(np.array(same) <= row.threshold + 1e-9))
        assert row.far_test == pytest.approx(np.mean(np.array(diff) <= row.threshold + 1e-9))
    assert (row.n_same_test, row.n_diff_test) == (len(same), len(diff))
    with pytest.raises(ValueError, match="far_targets is empty"):
        g.verification_sweep(emb, ())


def test_top_matches_are_the_nearest_catalogue_images(tiny_run, tmp_path):
    _, res = tiny_run
    emb = g.open_set_embeddings(res.run_dir)
    fig, queries, nb = g.top_matches(emb, n_queries=3, k=2, seed=0, path=tmp_path / "m.png")
    assert (tmp_path / "m.png").stat().st_size > 0
    assert len(set(emb.test_labels[queries])) == len(queries) == 3  # distinct classes
    ref = np.argsort(_cosine(emb.test[queries], emb.gallery), axis=1, kind="stable")[:, :2]
    assert np.array_equal(nb, ref)
    proj = g.export_run_projector(emb, tmp_path / "proj", max_images=5, thumb_size=8)
    assert len(proj.tensors.read_text().splitlines()) == 5
    assert proj.sprite.is_file()


def test_cmc_and_summary_errors(tiny_run):
    _, res = tiny_run
    with pytest.raises(ValueError, match="no open-set CMC"):
        g.cmc_from_metrics({"kind": "closed", "run": "x"})
    with pytest.raises(KeyError, match="has no metrics"):
        g.summary_table({"tiny": res}, keys=("rank1", "nope"))
    table = g.summary_table({"tiny": res})
    assert table.loc["tiny", "map_at_r"] == pytest.approx(res.metrics["map_at_r"])
    assert math.isfinite(table.loc["tiny", "train_seconds"])


def test_feature_animation_joins_both_phases_in_order(tmp_path):
    from PIL import Image

    for phase, epochs, shade in ((1, (1, 2), 40), (2, (3,), 200)):
        d = tmp_path / f"phase{phase}" / "features"
        d.mkdir(parents=True)
        for e in epochs:
            Image.new("RGB", (20, 16), (shade + e, 0, 0)).save(d / f"frame_{e:03d}.png")
    gif, frames = g.feature_animation(tmp_path, tmp_path / "a.gif", duration_ms=100)
    assert [f.name for f in frames] == ["frame_001.png", "frame_002.png", "frame_003.png"]
    with Image.open(gif) as im:
        assert im.n_frames == 3
        im.seek(2)
        assert im.convert("RGB").getpixel((0, 0))[0] == pytest.approx(203, abs=2)
    with pytest.raises(FileNotFoundError, match="feature_monitor"):
        g.feature_animation(tmp_path / "nothing")
