"""itemrec.data.sampling: P×K batches and random triplets."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from itemrec.data.sampling import PKSampler, random_triplets


def test_pk_batches_composition():
    # class 0: 10 images, 1: 5, 2: 2 (fewer than K=4), 3: 1 (excluded), 4: 6
    labels = np.array([0] * 10 + [1] * 5 + [2] * 2 + [3] + [4] * 6)
    with pytest.warns(UserWarning, match="excluding 1 classes.*\\[3\\]"):
        sampler = PKSampler(labels, P=3, K=4, seed=0)
    # eligible images 10 + 5 + 2 + 6 = 23; 23 // (3 * 4) = 1 batch per epoch by default
    assert len(sampler) == 1 and sampler.batch_size == 12
    with pytest.warns(UserWarning, match="excluding"):
        sampler = PKSampler(labels, P=3, K=4, seed=0, n_batches=40)
    counts = Counter()
    for batch in sampler:
        assert batch.shape == (12,) and batch.dtype == np.int64
        blocks = labels[batch].reshape(3, 4)
        assert (blocks == blocks[:, :1]).all()  # each block of K is one class
        assert len(set(blocks[:, 0])) == 3  # P distinct classes
        assert 3 not in blocks
        for block, idx in zip(blocks[:, 0], batch.reshape(3, 4)):
            if block != 2:
                assert len(set(idx)) == 4  # without replacement when the class has >= K images
            else:
                assert set(idx) == {15, 16}  # both images of class 2, with repeats
        counts.update(blocks[:, 0].tolist())
    # classes visited in shuffled cycles: 40 batches x 3 = 120 slots over 4 classes = 30 each (+-1 per cycle edge)
    assert set(counts) == {0, 1, 2, 4} and max(counts.values()) - min(counts.values()) <= 2


def test_pk_deterministic_and_epochs_differ():
    labels = np.repeat(np.arange(6), 5)
    a = [b.tolist() for b in PKSampler(labels, 2, 3, seed=7, n_batches=4)]
    s = PKSampler(labels, 2, 3, seed=7, n_batches=4)
    b1 = [b.tolist() for b in s]
    b2 = [b.tolist() for b in s]
    assert a == b1 and b1 != b2


def test_pk_errors():
    with pytest.raises(ValueError, match="P=3 classes"):
        PKSampler(np.array([0, 0, 1, 1]), P=3, K=2)
    with pytest.raises(ValueError, match="1-D"):
        PKSampler(np.zeros((2, 2)), P=1, K=1)


def test_random_triplets_valid():
    labels = np.array([5, 5, 5, 7, 7, 9, 2, 2, 2, 2])  # class 9 has one image: never an anchor
    t = random_triplets(labels, 2000, seed=0)
    assert t.shape == (2000, 3) and t.dtype == np.int64
    a, p, n = t.T
    assert (labels[a] == labels[p]).all() and (a != p).all() and (labels[a] != labels[n]).all()
    assert not (labels[a] == 9).any()
    assert (labels[n] == 9).any()  # but it is a negative
    # anchors uniform over the 9 eligible samples: each ~2000/9 = 222
    c = np.bincount(a, minlength=10)
    assert c[5] == 0 and c[[0, 1, 2, 3, 4, 6, 7, 8, 9]].min() > 150
    # positives uniform over the other members: anchor 0's positives are 1 and 2, about half each
    pos0 = p[a == 0]
    assert set(pos0.tolist()) == {1, 2} and 0.3 < (pos0 == 1).mean() < 0.7
    np.testing.assert_array_equal(t, random_triplets(labels, 2000, seed=0))


def test_random_triplets_errors():
    with pytest.raises(ValueError, match="2 classes"):
        random_triplets(np.array([1, 1, 1]), 3)
    with pytest.raises(ValueError, match="at least 2 images"):
        random_triplets(np.array([1, 2, 3]), 3)
