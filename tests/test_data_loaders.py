"""itemrec.data.loaders on the real datasets (counts) and on small built trees."""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from itemrec import settings
from itemrec.data import loaders as L


def test_grocery_counts(dataset_path):
    ds = L.load_grocery(dataset_path("grocery-store"))
    counts = ds.frame["split"].value_counts().to_dict()
    assert counts == {"train": 2640, "val": 296, "test": 2485}
    assert ds.n_classes == 81 and len(ds.coarse_names) == 43
    assert ds.class_names[0] == "Golden-Delicious" and ds.coarse_names[0] == "Apple"
    assert sorted(ds.representatives) == list(range(81))
    assert all(Path(p).is_file() for p in ds.representatives.values())
    assert all(os.path.isabs(p) for p in ds.paths[:50])
    assert all(Path(p).is_file() for p in ds.paths[::97])
    # the first train line: train/Fruit/Apple/Golden-Delicious/Golden-Delicious_001.jpg, 0, 0
    first = ds.frame.iloc[0]
    assert first["path"].endswith("train/Fruit/Apple/Golden-Delicious/Golden-Delicious_001.jpg")
    assert (first["label"], first["coarse_label"], first["split"]) == (0, 0, "train")
    # every class appears in train
    assert ds.split("train").frame["label"].nunique() == 81


def test_grocery_default_root(dataset_path, monkeypatch):
    monkeypatch.setenv("ITEMREC_DATA", str(dataset_path("grocery-store").parent))
    assert len(L.load_grocery()) == 5421


def test_fashion_counts(dataset_path):
    ds = L.load_fashion(dataset_path("fashion-products"), min_count=10)
    # 9,583 rows, all images present; 75 articleTypes of which 48 have >= 10 images
    assert ds.frame.attrs["n_missing_images"] == 0
    assert ds.n_classes == 48 and len(ds) + ds.frame.attrs["n_rare_dropped"] == 9583
    assert ds.class_counts().min() >= 10 and ds.class_counts()["Tshirts"] == 1647
    assert "baseColour" in ds.frame.columns


def test_fashion_missing_images_are_dropped(tmp_path):
    (tmp_path / "images").mkdir()
    for i in (1, 2, 3):
        Image.new("RGB", (4, 4)).save(tmp_path / "images" / f"{i}.jpg")
    pd.DataFrame({"id": [1, 2, 3, 4, 5], "articleType": ["a", "a", "b", "b", "b"]}).to_csv(tmp_path / "styles.csv", index=False)
    with pytest.warns(UserWarning, match="dropped 2 rows"):
        ds = L.load_fashion(tmp_path, min_count=1)
    assert len(ds) == 3 and ds.frame.attrs["n_missing_images"] == 2
    assert ds.class_names == ["a", "b"] and ds.labels.tolist() == [0, 0, 1]
    with pytest.raises(ValueError, match="'colour'"):
        L.load_fashion(tmp_path, label_column="colour")


def test_mnist(dataset_path):
    images, labels = L.load_mnist(dataset_path("mnist"))
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10000,) and labels[:5].tolist() == [7, 2, 1, 0, 4]
    assert np.bincount(labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def _idx(path: Path, magic: int, dims: tuple[int, ...], payload: bytes) -> None:
    with gzip.open(path, "wb") as fh:
        fh.write(struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in dims) + payload)


def test_mnist_header_validation(tmp_path):
    _idx(tmp_path / "t10k-images-idx3-ubyte.gz", 2051, (2, 28, 28), bytes(2 * 784))
    _idx(tmp_path / "t10k-labels-idx1-ubyte.gz", 2049, (2,), bytes([3, 9]))
    images, labels = L.load_mnist(tmp_path)
    assert images.shape == (2, 28, 28) and labels.tolist() == [3, 9]
    _idx(tmp_path / "t10k-labels-idx1-ubyte.gz", 2049, (3,), bytes([3, 9]))  # header says 3, has 2
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        L.load_mnist(tmp_path)
    _idx(tmp_path / "t10k-labels-idx1-ubyte.gz", 1234, (2,), bytes([3, 9]))
    with pytest.raises(ValueError, match="magic number 1234"):
        L.load_mnist(tmp_path)
    _idx(tmp_path / "t10k-labels-idx1-ubyte.gz", 2049, (3,), bytes([3, 9, 1]))
    with pytest.raises(ValueError, match="2 images but 3 labels"):
        L.load_mnist(tmp_path)


def test_packed_scenes_and_shelf(dataset_path):
    ds = L.load_packed_scenes(dataset_path("packed-scenes"))
    assert len(ds) == 10540 and ds.n_classes == 27
    counts = ds.class_counts()
    assert counts.min() == 9 and counts.max() == 1461 and counts["VPvhlq55UP"] == 9
    image, boxes = L.load_shelf(dataset_path("packed-scenes"))
    assert image.name == "shelf.jpeg" and len(boxes) == 63
    assert list(boxes.columns) == ["id", "x1", "y1", "x2", "y2"]
    assert (boxes.x1 < boxes.x2).all() and (boxes.y2 <= 3280).all() and (boxes.x2 <= 2464).all()
    row = boxes.set_index("id").loc["YvUqM83"]
    assert (row.x1, row.y1, row.x2, row.y2) == (542, 2005, 800, 2446)


def test_shelf_box_validation(tmp_path):
    (tmp_path / "test").mkdir()
    Image.new("RGB", (100, 50)).save(tmp_path / "test" / "shelf.jpeg")
    (tmp_path / "test" / "shelf.json").write_text('{"a": {"x1": 10, "x2": 5, "y1": 0, "y2": 10}}')
    with pytest.raises(ValueError, match="inverted.*'a'"):
        L.load_shelf(tmp_path)
    (tmp_path / "test" / "shelf.json").write_text('{"b": {"x1": 10, "x2": 101, "y1": 0, "y2": 10}}')
    with pytest.raises(ValueError, match="outside the 100x50 image"):
        L.load_shelf(tmp_path)
    (tmp_path / "test" / "shelf.json").write_text('{"c": {"x1": 10, "y1": 0, "y2": 10}}')
    with pytest.raises(ValueError, match="box 'c'"):
        L.load_shelf(tmp_path)
    (tmp_path / "test" / "shelf.json").write_text('{"d": {"x1": 1, "x2": 99, "y1": 0, "y2": 50}}')
    _, boxes = L.load_shelf(tmp_path)
    assert boxes.iloc[0].tolist() == ["d", 1, 0, 99, 50]


def test_faces(dataset_path):
    ds = L.load_faces(dataset_path("celebrity-faces"))
    assert len(ds) == 118 and ds.class_names == ["Ben Affleck", "Elton John", "Jerry Seinfeld", "Madonna", "Mindy Kaling"]
    assert set(ds.frame["split"]) == {"train", "val"}


def test_load_folder_and_representatives(tmp_path):
    for cls, n in (("b_cls", 2), ("a_cls", 3), ("empty", 0)):
        (tmp_path / "photos" / cls).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (4, 4)).save(tmp_path / "photos" / cls / f"{i}.png")
    (tmp_path / "photos" / "a_cls" / "notes.txt").write_text("not an image")
    (tmp_path / "cat").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "cat" / "b_cls.jpg")
    ds = L.load_folder(tmp_path / "photos", representatives=tmp_path / "cat")
    assert ds.class_names == ["a_cls", "b_cls", "empty"]
    assert ds.labels.tolist() == [0, 0, 0, 1, 1]
    assert ds.class_counts().tolist() == [3, 2, 0]
    assert ds.representatives == {1: str((tmp_path / "cat" / "b_cls.jpg").resolve())}
    with pytest.raises(ValueError, match="not in"):
        L.load_folder(tmp_path / "photos", representatives={"zzz": str(tmp_path / "cat" / "b_cls.jpg")})
    with pytest.raises(FileNotFoundError, match="does not exist"):
        L.load_folder(tmp_path / "nope")


def test_missing_dataset_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("ITEMREC_DATA", str(tmp_path))
    with pytest.raises(settings.DataNotFoundError, match="itemrec data fetch grocery-store"):
        L.load_grocery()
