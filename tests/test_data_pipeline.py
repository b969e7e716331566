"""itemrec.data.pipeline: tf.data batches that match read_image, survive bad files, keep labels."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from itemrec.data.images import BadImageError, fit_image, read_image  # noqa: E402
from itemrec.data.pipeline import AugmentConfig, make_dataset, make_pk_dataset, preprocess_function  # noqa: E402

from fixtures.bad_images import make_bad_images as mbi  # tests/ is on sys.path (pytest prepend import mode)


def _collect(ds):
    xs, ys = [], []
    for x, y in ds:
        xs.append(x.numpy())
        ys.append(y.numpy())
    return np.concatenate(xs), np.concatenate(ys)


@pytest.mark.parametrize("resize_mode", ["pad", "crop"])
def test_bad_files_skipped_and_labels_aligned(cases, resize_mode):
    # interleave good and bad files; label = 100 + position, so a shifted label is visible
    names = [n for pair in zip(mbi.GOOD, mbi.BAD + ("rgb_jpeg",) * 3) for n in pair]
    paths = [cases[n][0] for n in names]
    labels = 100 + np.arange(len(names))
    with pytest.warns(UserWarning, match=f"skipping {len(mbi.BAD)} of {len(names)}"):
        ds = make_dataset(paths, labels, 20, batch_size=4, resize_mode=resize_mode)
    x, y = _collect(ds)
    good_pos = [i for i, n in enumerate(names) if n in mbi.GOOD]
    assert y.tolist() == (100 + np.array(good_pos)).tolist()
    assert x.shape == (len(good_pos), 20, 20, 3) and x.dtype == np.float32
    for img, lab in zip(x, y):
        ref = fit_image(read_image(paths[lab - 100]), 20, resize_mode).astype(np.float32)
        # tf (antialiased bilinear) vs Pillow resize: equal up to rounding of a few levels
        assert np.abs(img - ref).mean() < 2.0, names[lab - 100]
        assert np.abs(img - ref).max() <= 12, names[lab - 100]


def test_strict_raises_naming_the_file(cases):
    paths = [cases["rgb_jpeg"][0], cases["text_as_jpeg"][0]]
    with pytest.raises(BadImageError) as info:
        make_dataset(paths, [0, 1], 16, strict=True)
    assert info.value.path == str(paths[1])


def test_pipeline_pixels_equal_read_image_and_preprocess(cases):
    paths = [cases[n][0] for n in mbi.GOOD]
    labels = np.arange(len(paths))
    xa, ya = _collect(make_dataset(paths, labels, 24, batch_size=3))
    assert ya.tolist() == labels.tolist()
    # one decode path: the pipeline gives exactly read_image + fit_image (Pillow) for every mode
    ref = np.stack([fit_image(read_image(p), 24, "pad") for p in paths]).astype(np.float32)
    np.testing.assert_array_equal(xa, ref)
    xm, _ = _collect(make_dataset(paths, labels, 24, batch_size=3, preprocess="mobilenet_v2"))
    np.testing.assert_allclose(xm, xa / 127.5 - 1.0, atol=1e-5)  # MobileNetV2: x / 127.5 - 1
    xc, _ = _collect(make_dataset(paths, labels, 24, batch_size=None, preprocess=lambda t: t * 0 + 3).batch(4))
    assert (xc == 3).all()
    with pytest.raises(ValueError, match="unknown backbone"):
        preprocess_function("alexnet")
    with pytest.raises(ValueError, match="3 paths but 2 labels"):
        make_dataset(paths[:3], [0, 1], 8)


def test_shuffle_cache_augment_deterministic(cases, tmp_path):
    paths = [cases[n][0] for n in mbi.GOOD] * 2
    labels = np.arange(len(paths))

    def run(cache):
        ds = make_dataset(paths, labels, 16, batch_size=5, shuffle=True, seed=3, cache=cache, augment=True)
        return [_collect(ds) for _ in range(2)]  # two epochs

    (x1, y1), (x2, y2) = run(True)
    (x1b, y1b), _ = run(str(tmp_path / "cache"))
    assert sorted(y1.tolist()) == labels.tolist()  # every image once per epoch
    assert y1.tolist() != labels.tolist() and y1.tolist() != y2.tolist()  # shuffled, reshuffled per epoch
    assert y1.tolist() == y1b.tolist()  # same seed, same order
    np.testing.assert_allclose(x1, x1b, atol=1e-4)  # same augmentation draws
    assert x1.min() >= 0 and x1.max() <= 255
    # augmented images differ from the plain fitted ones, but keep the overall colour
    xp, yp = _collect(make_dataset(paths, labels, 16, batch_size=5))
    plain = xp[np.argsort(yp)][y1]
    assert np.abs(x1 - plain).mean() > 1.0


def test_augment_parts_are_switchable(cases):
    paths = [cases["rgb_jpeg"][0]] * 8  # left red, right blue
    off = AugmentConfig(flip=False, rotation=0, crop_area=(1.0, 1.0), brightness=0, contrast=0, saturation=0, hue=0)
    x_off, _ = _collect(make_dataset(paths, np.zeros(8), 16, batch_size=8, augment=off))
    x_plain, _ = _collect(make_dataset(paths, np.zeros(8), 16, batch_size=8))
    np.testing.assert_allclose(x_off, x_plain, atol=1e-3)
    flip_only = AugmentConfig(flip=True, rotation=0, crop_area=(1.0, 1.0), brightness=0, contrast=0, saturation=0, hue=0)
    x_flip, _ = _collect(make_dataset(paths, np.zeros(8), 16, batch_size=8, augment=flip_only, seed=1))
    flipped = [bool(np.allclose(x, x_plain[0][:, ::-1], atol=1e-3)) for x in x_flip]
    same = [bool(np.allclose(x, x_plain[0], atol=1e-3)) for x in x_flip]
    assert all(f or s for f, s in zip(flipped, same)) and any(flipped) and any(same)


def test_pk_dataset_composition(cases):
    good = [cases[n][0] for n in mbi.GOOD]
    # 4 classes: 3, 3, 2 and 1 image(s); one bad file in class 0
    paths = good[:3] + [cases["zero_byte"][0]] + good[3:6] + good[6:8] + good[8:9]
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 3])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = make_pk_dataset(paths, labels, 12, P=2, K=3, seed=0, n_batches=5)
    assert int(ds.cardinality()) == 5
    seen = set()
    for x, y in ds:
        y = y.numpy()
        assert x.shape == (6, 12, 12, 3)
        assert len(set(y[:3])) == 1 and len(set(y[3:])) == 1 and y[0] != y[3]
        assert 3 not in y  # the single-image class is excluded
        seen |= set(y.tolist())
        # images belong to their label: each image equals a fitted image of that class
        for img, lab in zip(x.numpy(), y):
            refs = [fit_image(read_image(p), 12).astype(np.float32) for p, l in zip(paths, labels) if l == lab and "empty" not in str(p)]
            assert min(np.abs(img - r).mean() for r in refs) < 2.0
    assert seen == {0, 1, 2}
