"""Miners on hand-worked batches (the arithmetic is in the comments)."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")
from keras import ops  # noqa: E402

from itemrec.mining import BatchAllMiner, BatchHardMiner, SemiHardMiner, get_miner  # noqa: E402

# Four points on a line: x = 0, 1, 3, 6 with labels A, A, B, B; squared distances
#   d = [[ 0,  1,  9, 36],
#        [ 1,  0,  4, 25],
#        [ 9,  4,  0,  9],
#        [36, 25,  9,  0]]
Y = np.array([0, 0, 1, 1])
D = np.array([[0, 1, 9, 36], [1, 0, 4, 25], [9, 4, 0, 9], [36, 25, 9, 0]], np.float32)


def triplets(miner, inverted=False):
    d = -D if inverted else D
    mask = ops.convert_to_numpy(miner(ops.convert_to_tensor(Y), ops.convert_to_tensor(d), inverted).dense())
    assert set(np.unique(mask)) <= {0.0, 1.0}
    return sorted(tuple(int(i) for i in t) for t in zip(*np.nonzero(mask)))


def test_batch_all_lists_every_valid_triplet():
    # each anchor has 1 positive and 2 negatives: 4 × 1 × 2 = 8 triplets
    assert triplets(BatchAllMiner()) == [
        (0, 1, 2), (0, 1, 3), (1, 0, 2), (1, 0, 3), (2, 3, 0), (2, 3, 1), (3, 2, 0), (3, 2, 1)
    ]


def test_batch_hard_takes_farthest_positive_and_nearest_negative():
    # anchor 0: negatives at 9 (#2), 36 (#3) → 2;  anchor 1: 4 (#2), 25 → 2
    # anchor 2: negatives 9 (#0), 4 (#1) → 1;      anchor 3: 36, 25 → 1
    assert triplets(BatchHardMiner()) == [(0, 1, 2), (1, 0, 2), (2, 3, 1), (3, 2, 1)]
    # the same matrix given as a similarity (−D, larger is closer) mines the same triplets
    assert triplets(BatchHardMiner(), inverted=True) == [(0, 1, 2), (1, 0, 2), (2, 3, 1), (3, 2, 1)]


def test_semi_hard_picks_nearest_negative_beyond_the_positive_else_farthest():
    # (0,1): d_ap=1, negatives 9, 36 > 1 → nearest is 9 (#2)
    # (1,0): d_ap=1, negatives 4, 25 → #2
    # (2,3): d_ap=9, negatives 9 (#0, not > 9), 4 (#1) → none farther: fall back to farthest, #0
    # (3,2): d_ap=9, negatives 36 (#0), 25 (#1) → nearest farther is 25, #1
    assert triplets(SemiHardMiner()) == [(0, 1, 2), (1, 0, 2), (2, 3, 0), (3, 2, 1)]


def test_registry():
    assert isinstance(get_miner("batch_hard"), BatchHardMiner)
    with pytest.raises(ValueError, match="unknown miner 'x'"):
        get_miner("x")


def test_semi_hard_needs_a_negative_strictly_beyond_the_positive():
    # x = 0, 2, -2, 5 with labels A, A, B, B; squared distances
    #   d = [[ 0,  4,  4, 25],
    #        [ 4,  0, 16,  9],
    #        [ 4, 16,  0, 49],
    #        [25,  9, 49,  0]]
    # (0,1): d_ap=4; #2 ties at 4 (not > 4, and it is NOT the farthest negative), #3 at 25 -> #3
    #        (a `>=` would take the tie, #2)
    # (1,0): d_ap=4; negatives 16 (#2), 9 (#3) -> nearest beyond 4 is #3
    # (2,3): d_ap=49; negatives 4, 16 -> none beyond: farthest, #1
    # (3,2): d_ap=49; negatives 25, 9 -> none beyond: farthest, #0
    y = np.array([0, 0, 1, 1])
    d = np.array([[0, 4, 4, 25], [4, 0, 16, 9], [4, 16, 0, 49], [25, 9, 49, 0]], np.float32)
    mask = ops.convert_to_numpy(SemiHardMiner()(ops.convert_to_tensor(y), ops.convert_to_tensor(d)).dense())
    got = sorted(tuple(int(i) for i in t) for t in zip(*np.nonzero(mask)))
    assert got == [(0, 1, 3), (1, 0, 3), (2, 3, 1), (3, 2, 0)]
