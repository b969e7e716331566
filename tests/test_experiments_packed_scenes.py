"""Packed-scenes drivers: cleaning, the duplicate-safe split, heads and the λ sweep, shelf scoring."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest

from itemrec.data.records import ImageDataset
from itemrec.experiments import packed_scenes as ps


def _dataset(tmp_path, classes: dict[str, list[str]]) -> ImageDataset:
    """Files whose bytes are their content name: equal names = identical files (copies)."""
    rows, names = [], sorted(classes)
    for label, cls in enumerate(names):
        (tmp_path / cls).mkdir()
        for i, content in enumerate(classes[cls]):
            p = tmp_path / cls / f"{i}.jpg"
            p.write_bytes(content.encode())
            rows.append((str(p), label, cls))
    return ImageDataset(pd.DataFrame(rows, columns=["path", "label", "class_name"]), names, name="toy")


def test_content_hashes(tmp_path):
    ds = _dataset(tmp_path, {"a": ["x", "y", "x"]})
    h = ps.content_hashes(ds.paths)
    assert h[0] == h[2] != h[1]
    assert h[1] == hashlib.sha1(b"y").hexdigest()
    with pytest.raises(OSError, match="missing.jpg"):
        ps.content_hashes([tmp_path / "missing.jpg"])


def test_clean_crops_merges_duplicates_and_drops_mixed(tmp_path):
    ds = _dataset(tmp_path, {
        "A": ["a1", "a2", "a3"],
        "A2": ["a1", "a2", "a3"],  # duplicated class of A (same distinct images, Jaccard 1)
        "B": ["b1", "b1", "b2", "b3", "b4", "m1"],  # one copy inside the class; shares m1 with M
        "C": ["c1", "c2", "c3", "c4", "m2"],
        "M": ["m1", "m2", "m3"],  # mixed: its images are also under B and C
    })
    cleaned = ps.clean_crops(ds)
    out = cleaned.dataset
    assert cleaned.merged == {"A2": "A"} and cleaned.dropped_classes == ["M"]
    assert out.class_names == ["A", "B", "C"]
    assert out.class_counts().to_dict() == {"A": 6, "B": 6, "C": 5}  # A keeps both copies of its three images
    assert cleaned.n_ambiguous == 0 and cleaned.n_files_in == 20
    assert set(out.labels.tolist()) == {0, 1, 2}
    assert (out.frame["content"] == ps.content_hashes(out.paths)).all()
    # distinct contents kept: a1-a3, b1-b4 + m1, c1-c4 + m2 = 3 + 5 + 5
    assert "20 files -> 17 files (13 distinct contents) in 3 classes" in cleaned.summary()


def test_clean_crops_drops_contents_with_two_labels(tmp_path):
    ds = _dataset(tmp_path, {"B": ["b1", "b2", "x"], "C": ["c1", "c2", "x"]})
    cleaned = ps.clean_crops(ds)
    assert cleaned.n_ambiguous == 2 and cleaned.merged == {} and cleaned.dropped_classes == []
    assert sorted(cleaned.dataset.frame["content"]) == sorted(hashlib.sha1(s.encode()).hexdigest() for s in ("b1", "b2", "c1", "c2"))
    with pytest.raises(ValueError, match="2 hashes for 6 files"):
        ps.clean_crops(ds, hashes=np.array(["a", "b"]))


def _grouped(n_classes=3, n_contents=20, seed=0) -> ImageDataset:
    """Every content of a class appears 1-3 times (copies)."""
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(n_classes):
        for k in range(n_contents):
            for copy in range(int(rng.integers(1, 4))):
                rows.append((f"/x/{c}/{k}_{copy}.jpg", c, f"class{c}", f"h{c}_{k}"))
    frame = pd.DataFrame(rows, columns=["path", "label", "class_name", "content"])
    return ImageDataset(frame, [f"class{c}" for c in range(n_classes)], name="grouped")


def test_duplicate_safe_split_keeps_copies_together():
    ds = _grouped()
    train, test = ps.duplicate_safe_split(ds, test_fraction=0.3, seed=0)
    assert len(train) + len(test) == len(ds)
    assert ps.leaked(train, test) == 0
    assert not set(train.frame["content"]) & set(test.frame["content"])
    # round(1 / 0.3) = 3 folds: the test fold holds about a third of the content groups of every class
    for c in range(3):
        n_test = test.frame.loc[test.labels == c, "content"].nunique()
        assert 4 <= n_test <= 10
    # the per-file split of the same data puts copies of test files in training
    naive_train, naive_test = ps.per_file_split(ds, 0.3, seed=0)
    assert ps.leaked(naive_train, naive_test) > 0
    # seeded: the same split again
    again, _ = ps.duplicate_safe_split(ds, test_fraction=0.3, seed=0)
    assert again.paths.tolist() == train.paths.tolist()


def test_split_errors_and_helpers():
    ds = _grouped(n_contents=6)
    with pytest.raises(ValueError, match="test_fraction"):
        ps.duplicate_safe_split(ds, test_fraction=0.7)
    with pytest.raises(ValueError, match="content"):
        ps.duplicate_safe_split(ImageDataset(ds.frame.drop(columns="content"), ds.class_names))
    # leaked: hand-worked, test contents h0_0 (in train) and h9 (not)
    train = ImageDataset(pd.DataFrame({"path": ["a", "b"], "label": [0, 0], "class_name": ["c", "c"], "content": ["h0_0", "h1"]}), ["c"])
    test = ImageDataset(pd.DataFrame({"path": ["c", "d", "e"], "label": [0] * 3, "class_name": ["c"] * 3, "content": ["h0_0", "h9", "h0_0"]}), ["c"])
    assert ps.leaked(train, test) == 2
    assert ps.dedupe(test).paths.tolist() == ["c", "d"]
    capped = ps.cap_per_class(ds, 5, seed=1)
    assert capped.class_counts().tolist() == [5, 5, 5]
    assert ps.cap_per_class(ds, None) is ds
    with pytest.raises(ValueError, match="max_per_class"):
        ps.cap_per_class(ds, 0)


def _blobs(n_per_class: int, n_classes: int = 3, dim: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).normal(size=(n_classes, dim)) * 3
    y = np.repeat(np.arange(n_classes), n_per_class)
    return (centres[y] + rng.normal(size=(len(y), dim))).astype(np.float32), y


def test_held_out_scores_hand_worked():
    # classes at right angles: every query's nearest neighbours are its own class -> 1, 1
    emb = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], np.float32)
    assert ps.held_out_scores(emb, np.array([0, 0, 1, 1])) == (1.0, 1.0)
    # swapped labels: every nearest neighbour is wrong -> Recall@1 0, MAP@R 0
    assert ps.held_out_scores(emb, np.array([0, 1, 1, 0])) == (0.0, 0.0)


@pytest.fixture(scope="module")
def crops_manifest(tmp_path_factory):
    from itemrec.data.synthetic import write_catalogue

    root = tmp_path_factory.mktemp("crops")
    ds = write_catalogue(root / "cat", n_products=3, photos_per_product=8, image_size=32)
    rank = ds.frame.groupby("label").cumcount().to_numpy()
    train, test = ds.subset(rank < 5), ds.subset(rank >= 5)
    return ps.write_manifest({"train": train, "val": test, "test": test}, root / "crops.csv"), test


@pytest.mark.slow
def test_scale_sweep_trains_each_head_with_the_trainer(crops_manifest, mobilenet_weights, tmp_path):
    from itemrec.models.embedding import build_feature_extractor
    from itemrec.training.features import compute_features

    manifest, test = crops_manifest
    base = ps.head_config("h", tmp_path / "runs", manifest, weights=str(mobilenet_weights), input_size=64,
                          embedding_dim=8, hidden=16, epochs=3, batch_size=8)
    assert (base.split.kind, base.train.monitor, base.train.finetune_epochs) == ("given", "last", 0)
    sweep = ps.scale_sweep(base, scales=(8.0,))
    table = sweep.table()
    assert table["head"].tolist() == ["frozen features (no head)", "softmax (baseline)", "cosine softmax λ=8"]
    assert table["recall_at_1"].between(0, 1).all() and table["map_at_r"].between(0, 1).all()
    # the frozen row, recomputed independently: MobileNetV2 pooled features of the test crops, cosine retrieval
    extractor = build_feature_extractor("mobilenet_v2", 64, str(mobilenet_weights))
    feats = compute_features(extractor, [str(p) for p in test.paths], 64).features
    assert (np.linalg.norm(feats, axis=1) > 0).all()
    assert (sweep.frozen_recall_at_1, sweep.frozen_map_at_r) == pytest.approx(ps.held_out_scores(feats, test.labels), abs=1e-6)
    best = sweep.best()
    assert best.scale == 8.0 and best.run.config.loss.name == "cosine" and best.run.config.loss.get("head")["config"]["scale"] == 8.0
    emb = ps.run_embed_fn(best)(np.random.default_rng(0).integers(0, 255, (2, 64, 64, 3)).astype(np.uint8))
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)  # cosine heads are L2-normalised
    base_run = sweep.runs[0]
    assert base_run.scale is None and base_run.run.config.model.l2_normalize is False
    assert len(base_run.history["loss"]) == 3
    # every head is a kept run folder; sweeping again reads them back instead of training
    dirs = [r.run.run_dir for r in sweep.runs] + [sweep.frozen.run.run_dir]
    assert len(set(dirs)) == 3 and all((d / "done.json").is_file() for d in dirs)
    stamps = [(d / "done.json").stat().st_mtime_ns for d in dirs]
    again = ps.scale_sweep(base, scales=(8.0,))
    assert [(d / "done.json").stat().st_mtime_ns for d in dirs] == stamps
    assert again.table()["map_at_r"].tolist() == table["map_at_r"].tolist()
    fig = ps.plot_sweep(sweep)
    assert len(fig.axes) == 2
    with pytest.raises(ValueError, match="nothing to sweep"):
        ps.scale_sweep(base, scales=(), baseline=False)


def test_given_split_needs_train_val_and_test(crops_manifest, tmp_path):
    from itemrec.training.config import SplitConfig
    from itemrec.training.data import make_splits

    manifest, test = crops_manifest
    ds = ImageDataset.read_csv(manifest)
    splits = make_splits(ds, SplitConfig(kind="given"), str(manifest))
    assert (len(splits.train), len(splits.test)) == (15, 9) and splits.kind == "closed"
    no_val = ImageDataset(ds.frame[ds.frame["split"] != "val"], ds.class_names)
    with pytest.raises(ValueError, match="'given' needs a 'split' column with train, val and test"):
        make_splits(no_val, SplitConfig(kind="given"), "x")
    with pytest.raises(ValueError, match="share their class names"):
        ps.write_manifest({"train": ds, "test": ImageDataset(ds.frame, ds.class_names[::-1])}, tmp_path / "m.csv")


def test_shelf_scoring(tmp_path):
    path = tmp_path / "labels.json"
    path.write_text(json.dumps({"labels": {"a": "p", "b": "p", "c": "q", "d": "q"}}))
    hand = ps.read_hand_labels(path)
    s = ps.score_against_hand_labels(["a", "b", "c", "d"], np.array([0, 0, 1, 1]), hand)
    assert s.ari == pytest.approx(1.0) and s.n_clusters == 2 and s.n_noise == 0
    # noise as singletons: {a, b} and c, d alone -> ARI of {0,0,1,2} vs {p,p,q,q}
    from sklearn.metrics import adjusted_rand_score

    s = ps.score_against_hand_labels(["a", "b", "c", "d"], np.array([0, 0, -1, -1]), hand)
    assert s.ari == pytest.approx(adjusted_rand_score(["p", "p", "q", "q"], [0, 0, 1, 2])) and s.n_noise == 2
    with pytest.raises(ValueError, match="no hand label"):
        ps.score_against_hand_labels(["a", "zz"], np.array([0, 0]), hand)
    path.write_text("{}")
    with pytest.raises(ValueError, match="labels"):
        ps.read_hand_labels(path)


def test_backbone_features_cached(dataset_path, mobilenet_weights, tmp_path):
    crops = ps.cap_per_class(_real_crops(dataset_path), 1)
    paths = list(crops.paths[:4])
    feats, extractor = ps.backbone_features(paths, 32, mobilenet_weights, cache_dir=tmp_path)
    assert feats.shape == (4, 1280) and np.isfinite(feats).all()
    again, _ = ps.backbone_features(paths, 32, mobilenet_weights, cache_dir=tmp_path, extractor=extractor)
    np.testing.assert_array_equal(feats, again)
    assert len(list(tmp_path.glob("*.npz"))) == 1  # one entry, read back the second time
    with pytest.raises(ValueError, match="input_size"):
        ps.backbone_features(paths, 64, mobilenet_weights, extractor=extractor)


def _real_crops(dataset_path) -> ImageDataset:
    from itemrec.data.loaders import load_packed_scenes

    return load_packed_scenes(dataset_path("packed-scenes"))
