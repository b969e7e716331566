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


def test_embed_paths_and_files_skip_bad_images(embedder, tmp_path):
    rng = np.random.default_rng(1)
    imgs = rng.integers(0, 256, size=(3, SIZE, SIZE, 3), dtype=np.uint8)
    paths = []
    for i, im in enumerate(imgs):
        p = tmp_path / f"{i}.png"
        Image.fromarray(im).save(p)
        paths.append(p)
    bad = tmp_path / "bad.jpg"
    bad.write_text("not an image")
    emb, keep, skipped = embedder.embed_paths([paths[0], paths[1], bad, paths[2]])
    assert keep.tolist() == [0, 1, 3]
    assert skipped == [(str(bad), "not an image (unrecognised format)")]
    np.testing.assert_allclose(emb, embedder.embed_arrays(imgs), rtol=1e-5, atol=1e-6)  # PNG is lossless
    with pytest.raises(BadImageError):
        embedder.embed_paths([bad], strict=True)
    files = [p.read_bytes() for p in paths] + [b"\x89PNG\r\n\x1a\n truncated"]
    emb2, keep2, skipped2 = embedder.embed_files(files, strict=False, names=["a", "b", "c", "d"])
    assert keep2.tolist() == [0, 1, 2] and skipped2[0][0] == "d"
    np.testing.assert_allclose(emb2, emb, rtol=1e-5, atol=1e-6)
    with pytest.raises(BadImageError, match="upload 0"):
        embedder.embed_files([b"GIF89a garbage"])


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
