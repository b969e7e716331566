"""cmc_gallery_draws and the hubness offsets of cmc() / class_ranks(), against NumPy by hand and the older protocols."""

from __future__ import annotations

import numpy as np
import pytest

from itemrec import evaluation as ev


def _data(seed=0, n_classes=5, per_class=6, dim=8):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, dim))
    y = np.repeat(np.arange(n_classes), per_class)
    x = centres[y] + rng.normal(scale=0.9, size=(len(y), dim))
    cat = centres + rng.normal(scale=0.5, size=centres.shape)
    return x, y, cat, np.arange(n_classes)


def _cosdist(a, b):
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return 1 - a @ b.T


def test_cmc_and_class_ranks_take_hubness_offsets():
    x, y, cat, cy = _data()
    off = np.random.default_rng(1).uniform(-0.3, 0.0, len(cy))
    d = _cosdist(x, cat) + off[None, :]
    true = d[np.arange(len(y)), y]
    ranks = 1 + (d < true[:, None]).sum(axis=1)  # one image per class: image rank = class rank (no ties here)
    np.testing.assert_array_equal(ev.class_ranks(x, y, cat, cy, gallery_offsets=off), ranks)
    res = ev.cmc(x, y, cat, cy, max_rank=5, gallery_offsets=off)
    np.testing.assert_allclose(res.mean, [(ranks <= r).mean() for r in range(1, 6)])
    assert not np.allclose(ev.cmc(x, y, cat, cy, max_rank=5).mean, res.mean)  # the offsets change the ranking


def test_catalogue_only_draws_equal_the_image_averaged_protocol():
    x, y, cat, cy = _data()
    res = ev.cmc_gallery_draws(x, y, cy, shots=0, n_draws=4, max_rank=5, catalogue_emb=cat, catalogue_labels=cy)
    ref = ev.cmc_image_averaged(x, y, cat, cy, max_rank=5)
    np.testing.assert_allclose(res.image.mean, ref.mean)
    np.testing.assert_allclose(res.image.per_draw, np.tile(ref.mean, (4, 1)))  # no randomness in the gallery
    # class-balanced: each draw is the mean over classes of one drawn query's hit, so it lies in the per-class range
    ranks = ev.class_ranks(x, y, cat, cy)
    per_class = np.array([(ranks[y == c] == 1).mean() for c in cy])
    assert res.balanced.per_draw.shape == (4, 5)
    assert np.all(np.isin(res.balanced.per_draw[:, 0] * len(cy), np.arange(len(cy) + 1)))
    np.testing.assert_allclose(res.per_class_hit1, per_class)


def test_shots_move_photos_out_of_the_queries():
    x, y, cat, cy = _data(per_class=4)
    res = ev.cmc_gallery_draws(x, y, cy, shots=3, n_draws=6, seed=2, max_rank=3)
    assert (res.n_queries == len(cy)).all()  # 4 photos - 3 shots = 1 query per class
    # one query per class: both averagings are the same number in every draw
    np.testing.assert_allclose(res.image.per_draw, res.balanced.per_draw)
    with pytest.raises(ValueError, match="none would be left"):
        ev.cmc_gallery_draws(x, y, cy, shots=4, n_draws=2)
    with pytest.raises(ValueError, match="empty gallery"):
        ev.cmc_gallery_draws(x, y, cy, shots=0, n_draws=2)
