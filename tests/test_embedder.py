"""ImageEmbedder with a tiny Keras model built here (weights random, no download)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

keras = pytest.importorskip("keras")

from itemrec.data.images import BadImageError, fit_image  # noqa: E402
from itemrec.embedder import ImageEmbedder, fingerprint_id, sidecar_path  # noqa: E402

SIZE = 16


def tiny_model(seed: int = 0) -> "keras.Model":
    keras.utils.set_random_seed(seed)
    inp = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inp)
    x = keras.layers.Conv2D(4, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(8)(x)
    return keras.Model(inp, out, name="tiny")


@pytest.fixture(scope="module")
def embedder():
    return ImageEmbedder(tiny_model(), SIZE, batch_size=3)


def test_embed_arrays_matches_direct_model_call(embedder):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, size=(7, SIZE, SIZE, 3), dtype=np.uint8)
    got = embedder.embed_arrays(imgs)  # batches of 3, 3, 1
    want = np.asarray(embedder.model(imgs.astype(np.float32), training=False))
    assert got.shape == (7, 8) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # other sizes are letterboxed with fit_image, one by one or as a batch
    odd = rng.integers(0, 256, size=(2, 20, 30, 3), dtype=np.uint8)
    fitted = np.stack([fit_image(im, SIZE, "pad") for im in odd])
    np.testing.assert_allclose(embedder.embed_arrays(odd), embedder.embed_arrays(fitted), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(embedder.embed_arrays(list(odd)), embedder.embed_arrays(fitted), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="uint8"):
        embedder.embed_arrays(imgs.astype(np.float32))
    assert embedder.embed_arrays(np.zeros((0, SIZE, SIZE, 3), np.uint8)).shape == (0, 8)


def _pngs(tmp_path, n, seed=1):
    imgs = np.random.default_rng(seed).integers(0, 256, size=(n, SIZE, SIZE, 3), dtype=np.uint8)
    paths = []
    for i, im in enumerate(imgs):
        p = tmp_path / f"{i}.png"
        Image.fromarray(im).save(p)
        paths.append(p)
    return imgs, paths


def test_embed_and_embed_bytes_skip_bad_images_keeping_labels_aligned(embedder, tmp_path):
    imgs, paths = _pngs(tmp_path, 3)
    bad = tmp_path / "bad.jpg"
    bad.write_text("not an image")
    s = embedder.embed([paths[0], paths[1], bad, paths[2]], labels=np.array([10, 11, 12, 13]))
    assert s.paths == (str(paths[0]), str(paths[1]), str(paths[2]))
    assert s.labels.tolist() == [10, 11, 13] and len(s) == 3 and s.dim == 8
    assert s.skipped == ((str(bad), "not an image (unrecognised format)"),)
    assert s.vectors.dtype == np.float32
    np.testing.assert_allclose(s.vectors, embedder.embed_arrays(imgs), rtol=1e-5, atol=1e-6)  # PNG is lossless
    with pytest.raises(BadImageError):
        embedder.embed([bad], strict=True)
    with pytest.raises(ValueError, match="3 labels for 4 paths"):
        embedder.embed([paths[0], paths[1], bad, paths[2]], labels=["a", "b", "c"])
    assert embedder.embed([bad], labels=["x"]).vectors.shape == (0, 8)
    files = [p.read_bytes() for p in paths] + [b"\x89PNG\r\n\x1a\n truncated"]
    s2 = embedder.embed_bytes(files, labels=["a", "b", "c", "d"], strict=False, names=["n0", "n1", "n2", "n3"])
    assert s2.paths == ("n0", "n1", "n2") and s2.labels == ["a", "b", "c"] and s2.skipped[0][0] == "n3"
    np.testing.assert_allclose(s2.vectors, s.vectors, rtol=1e-5, atol=1e-6)
    with pytest.raises(BadImageError, match="upload 0"):
        embedder.embed_bytes([b"GIF89a garbage"])


def test_embed_labels_follow_their_files_when_the_middle_one_is_unreadable(embedder, tmp_path):
    """Each label stays with its own file's vector: compare every row with that file embedded alone."""
    import pandas as pd

    imgs, paths = _pngs(tmp_path, 4, seed=7)
    bad = tmp_path / "middle.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n cut short")
    files = [paths[0], paths[1], bad, paths[2], paths[3]]
    names = ["p0", "p1", "broken", "p2", "p3"]
    frame = pd.DataFrame({"name": names, "n": range(5)}, index=[50, 51, 52, 53, 54])
    for labels, want in ((names, ["p0", "p1", "p2", "p3"]), (np.array(names), ["p0", "p1", "p2", "p3"]),
                         (tuple(names), ["p0", "p1", "p2", "p3"])):
        s = embedder.embed(files, labels)
        assert list(s.labels) == want
    rows = embedder.embed(files, frame).labels
    assert rows["name"].tolist() == ["p0", "p1", "p2", "p3"] and rows["n"].tolist() == [0, 1, 3, 4]
    assert rows.index.tolist() == [0, 1, 2, 3]
    s = embedder.embed(files, names)
    assert [p for p, _ in s.skipped] == [str(bad)]
    for row, label in zip(s.vectors, s.labels):
        alone = embedder.embed_arrays(imgs[int(label[1])])[0]
        np.testing.assert_allclose(row, alone, rtol=1e-5, atol=1e-6)
    assert embedder.embed(files).labels is None


def test_embedded_set_from_kept_checks_its_inputs():
    from itemrec.embedded import EmbeddedSet

    s = EmbeddedSet.from_kept(np.ones((2, 3)), [0, 2], ["a", "b", "c"], ["x", "y", "z"], [("b", "bad")])
    assert s.paths == ("a", "c") and s.labels == ["x", "z"] and s.skipped == (("b", "bad"),)
    assert s.vectors.dtype == np.float32 and s.dim == 3
    with pytest.raises(ValueError, match="2 embeddings for 1 kept"):
        EmbeddedSet.from_kept(np.ones((2, 3)), [0], ["a", "b"])
    with pytest.raises(ValueError, match=r"kept positions must lie in \[0, 2\)"):
        EmbeddedSet.from_kept(np.ones((1, 3)), [2], ["a", "b"])
    with pytest.raises(ValueError, match="1 labels for 2 paths"):
        EmbeddedSet.from_kept(np.ones((1, 3)), [0], ["a", "b"], ["x"])
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        EmbeddedSet.from_kept(np.ones(3), [0, 1, 2], ["a", "b", "c"])
    with pytest.raises(AttributeError):
        s.labels = None  # frozen


def test_embed_paths_is_a_deprecated_wrapper_of_embed(embedder, tmp_path):
    _, paths = _pngs(tmp_path, 2)
    bad = tmp_path / "bad.jpg"
    bad.write_text("nope")
    with pytest.warns(DeprecationWarning, match="embed"):
        emb, keep, skipped = embedder.embed_paths([bad, *paths])
    s = embedder.embed([bad, *paths])
    assert keep.tolist() == [1, 2] and skipped == list(s.skipped)
    np.testing.assert_array_equal(emb, s.vectors)


def test_fingerprint_tracks_weights_and_settings_and_survives_save_load(embedder, tmp_path):
    fp = embedder.fingerprint()
    assert fp["embedding_dim"] == 8 and fp["input_size"] == [SIZE, SIZE] and fp["resize_mode"] == "pad"
    assert embedder.fingerprint_id == fingerprint_id(fp) and len(embedder.fingerprint_id) == 16
    path = embedder.save(tmp_path / "m.keras")
    assert sidecar_path(path).name == "m.embedder.json"
    loaded = ImageEmbedder.load(path)
    assert loaded.image_size == (SIZE, SIZE) and loaded.batch_size == 3
    assert loaded.fingerprint_id == embedder.fingerprint_id
    x = np.random.default_rng(2).integers(0, 256, size=(2, SIZE, SIZE, 3), dtype=np.uint8)
    np.testing.assert_allclose(loaded.embed_arrays(x), embedder.embed_arrays(x), rtol=1e-5, atol=1e-6)
    # same architecture, other weights -> other fingerprint (architecture part equal)
    other = ImageEmbedder(tiny_model(seed=1), SIZE)
    assert other.fingerprint()["architecture"] == fp["architecture"]
    assert other.fingerprint()["weights"] != fp["weights"] and other.fingerprint_id != embedder.fingerprint_id
    assert ImageEmbedder(embedder.model, SIZE, resize_mode="crop").fingerprint_id != embedder.fingerprint_id
    with pytest.raises(ValueError, match="image_size"):
        ImageEmbedder(embedder.model, 32)
    with pytest.raises(FileNotFoundError):
        ImageEmbedder.load(tmp_path / "missing.keras")


def test_gallery_with_embedder_refuses_other_model(embedder, tmp_path):
    from itemrec.gallery import Gallery, GalleryMismatchError

    rng = np.random.default_rng(3)
    imgs = rng.integers(0, 256, size=(4, SIZE, SIZE, 3), dtype=np.uint8)
    g = Gallery.create(tmp_path / "g", embedder)
    assert g.dim == 8 and g.fingerprint_id == embedder.fingerprint_id
    for i in range(4):
        g.enroll(f"item{i}", f"Item {i}", images=imgs[i])
    res = g.query(images=imgs, k=2)
    assert [r.item_id for r in res] == ["item0", "item1", "item2", "item3"]
    assert all(r.matches[0].similarity == pytest.approx(1.0, abs=1e-5) for r in res)
    g.close()
    other = ImageEmbedder(tiny_model(seed=5), SIZE)
    with pytest.raises(GalleryMismatchError, match="fingerprint"):
        Gallery.open(tmp_path / "g", embedder=other)
    g = Gallery.open(tmp_path / "g")
    with pytest.raises(GalleryMismatchError):
        g.enroll("x", "X", vectors=other.embed_arrays(imgs[:1]), fingerprint=other.fingerprint_id)
