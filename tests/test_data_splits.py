"""itemrec.data.splits: seeded open-set and closed-set splits, manifests."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from itemrec.data.records import ImageDataset
from itemrec.data.splits import GROCERY_UNSEEN, class_disjoint_split, grocery_open_set, stratified_split


def _toy(n_classes=10, per_class=20):
    labels = np.repeat(np.arange(n_classes), per_class)
    frame = pd.DataFrame({"path": [f"/x/{i}.jpg" for i in range(len(labels))], "label": labels,
                          "class_name": [f"c{l}" for l in labels]})
    return ImageDataset(frame, [f"c{i}" for i in range(n_classes)], {i: f"/rep/{i}.jpg" for i in range(n_classes)}, name="toy")


def test_class_disjoint_split_seeded_and_disjoint():
    ds = _toy()
    seen, unseen = class_disjoint_split(ds, unseen_fraction=0.3, seed=1)
    assert len(seen) + len(unseen) == len(ds)
    assert set(seen.labels).isdisjoint(unseen.labels)
    assert len(set(unseen.labels)) == 3  # round(0.3 * 10)
    again = class_disjoint_split(ds, unseen_fraction=0.3, seed=1)[1]
    assert sorted(set(again.labels)) == sorted(set(unseen.labels))
    other = class_disjoint_split(ds, unseen_fraction=0.3, seed=2)[1]
    assert sorted(set(other.labels)) != sorted(set(unseen.labels))
    by_name = class_disjoint_split(ds, unseen_classes=["c1", "c4"])[1]
    assert sorted(set(by_name.labels)) == [1, 4] and by_name.class_names == ds.class_names
    with pytest.raises(ValueError, match="unknown class name 'zz'"):
        class_disjoint_split(ds, unseen_classes=["zz"])
    with pytest.raises(ValueError, match="strictly between"):
        class_disjoint_split(ds, unseen_fraction=1.0)
    with pytest.raises(ValueError, match="empty"):
        class_disjoint_split(ds, unseen_classes=list(range(10)))


def test_stratified_split_fractions_and_manifest(tmp_path):
    ds = _toy()
    out = stratified_split(ds, (0.7, 0.15, 0.15), seed=0)
    # 20 per class: 14 train, then the 6 left are split 3 / 3
    table = pd.crosstab(out.frame["label"], out.frame["split"])
    assert (table["train"] == 14).all() and (table["val"] == 3).all() and (table["test"] == 3).all()
    assert out.frame["path"].tolist() == ds.frame["path"].tolist()  # rows keep their order
    again = stratified_split(ds, (0.7, 0.15, 0.15), seed=0)
    assert again.frame["split"].tolist() == out.frame["split"].tolist()
    assert stratified_split(ds, seed=1).frame["split"].tolist() != out.frame["split"].tolist()
    path = out.to_csv(tmp_path / "m.csv")
    back = ImageDataset.read_csv(path)
    assert back.frame["split"].tolist() == out.frame["split"].tolist() and back.representatives == ds.representatives
    tiny = ds.subset(np.r_[np.ones(180, bool), np.zeros(18, bool), np.ones(2, bool)])  # class 9 keeps 2 images
    with pytest.raises(ValueError, match="c9"):
        stratified_split(tiny)
    with pytest.raises(ValueError, match="sum to 1"):
        stratified_split(ds, (0.5, 0.2, 0.2))


def test_grocery_unseen_constant():
    assert len(GROCERY_UNSEEN) == 40 and len(set(GROCERY_UNSEEN.tolist())) == 40
    assert GROCERY_UNSEEN.tolist() == np.random.RandomState(0).permutation(81)[:40].tolist()
    # pinned: the protocol must not drift with a numpy upgrade (RandomState streams are frozen)
    assert GROCERY_UNSEEN[:5].tolist() == [22, 27, 61, 13, 71]


def test_grocery_open_set(dataset_path):
    from itemrec.data.loaders import load_grocery

    ds = load_grocery(dataset_path("grocery-store"))
    train_cls, unseen = grocery_open_set(ds)
    assert sorted(set(unseen.labels)) == sorted(GROCERY_UNSEEN.tolist())
    assert len(set(train_cls.labels)) == 41 and len(train_cls) + len(unseen) == 5421
    with pytest.raises(ValueError, match="81 Grocery"):
        grocery_open_set(_toy())
