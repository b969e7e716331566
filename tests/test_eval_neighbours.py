"""The neighbour engine (itemrec.evaluation.neighbours): one tie rule, the same answers from FAISS and
NumPy candidates, against brute-force Python loops (ties and duplicates included)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from itemrec._numeric import l2_normalize_rows
from itemrec.evaluation import average_precision_full, first_match_rank, knn
from itemrec.evaluation._chunked import PairDistances
from itemrec.evaluation.neighbours import NeighbourEngine


def _loop_dist(a, b, metric):
    if metric == "cosine":
        return 1.0 - float(np.dot(a, b)) / (math.sqrt(float(np.dot(a, a))) * math.sqrt(float(np.dot(b, b))))
    return math.sqrt(sum((float(u) - float(v)) ** 2 for u, v in zip(a, b)))


def _loop_order(q, ref, i, metric, exclude_self=False):
    """Reference indices sorted by (distance, index): the tie rule written out."""
    keys = sorted((_loop_dist(q[i], ref[j], metric), j) for j in range(len(ref)) if not (exclude_self and j == i))
    return [j for _, j in keys]


def _integer_set(seed, n, d=3, lo=-2, hi=3):
    """Small integer coordinates: every squared L2 distance is an exact integer in any arithmetic, so
    distinct references tie exactly (and duplicates abound)."""
    return np.random.default_rng(seed).integers(lo, hi, size=(n, d)).astype(np.float64)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_knn_ties_follow_distance_then_index_like_a_loop(seed, dtype):
    q = _integer_set(seed, 25).astype(dtype)
    ref = _integer_set(seed + 10, 60).astype(dtype)
    for backend in ("faiss", "numpy"):
        d, idx = knn(q, ref, 12, "l2", backend=backend, memory_mb=0.01)
        for i in range(len(q)):
            want = _loop_order(q, ref, i, "l2")[:12]
            assert idx[i].tolist() == want, (backend, i)
            np.testing.assert_array_equal(d[i], [_loop_dist(q[i], ref[j], "l2") for j in want])
    # ties did occur inside the top 12 (otherwise the test would not test the rule)
    assert any(len(set(np.round(row, 9))) < len(row) for row in d)


@pytest.mark.parametrize("metric", ["cosine", "l2"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_faiss_and_numpy_candidates_give_identical_neighbours_with_duplicates(metric, dtype):
    rng = np.random.default_rng(3)
    base = rng.normal(size=(150, 16))
    # every 5th vector is duplicated twice further down: exact ties between distinct indices
    ref = np.concatenate([base, base[::5], base[::5] * (2.0 if metric == "cosine" else 1.0)]).astype(dtype)
    for exclude_self, q in ((True, ref), (False, rng.normal(size=(40, 16)).astype(dtype))):
        a = knn(q, ref, 9, metric, exclude_self=exclude_self, backend="faiss")
        b = knn(q, ref, 9, metric, exclude_self=exclude_self, backend="numpy", memory_mb=0.02)
        np.testing.assert_array_equal(a[1], b[1])
        np.testing.assert_array_equal(a[0], b[0])  # the same exact pair values, bit for bit
        if exclude_self:
            assert not (a[1] == np.arange(len(ref))[:, None]).any()
    # a vector and its copies: at equal distance the lower index comes first
    d, idx = knn(ref[:1], ref, 3, metric)
    copies = [0, 150, 180]  # base[0] sits at 0, 150 (copy) and 180 (copy, ×2 for cosine: same direction)
    assert idx[0].tolist() == copies and d[0, 0] == d[0, 1] == d[0, 2]


def test_knn_keeps_the_lowest_indices_among_many_ties_at_the_kth_distance():
    # 40 copies of one vector and 60 others farther away: k = 5 must return copies 0..4, whichever
    # five FAISS happens to return first (its candidate list cannot be proved complete: the engine
    # widens it from distance blocks)
    rng = np.random.default_rng(4)
    near = np.tile([[1.0, 0.0, 0.0, 0.0]], (40, 1))
    far = rng.normal(size=(60, 4)) + [6.0, 0.0, 0.0, 0.0]
    ref = np.concatenate([far[:30], near, far[30:]]).astype(np.float32)
    q = np.array([[0.9, 0.0, 0.0, 0.0]], np.float32)
    for backend in ("faiss", "numpy"):
        d, idx = knn(q, ref, 5, "l2", backend=backend)
        assert idx[0].tolist() == [30, 31, 32, 33, 34]
        np.testing.assert_allclose(d[0], 0.1, rtol=1e-6)


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_first_match_rank_is_the_position_in_the_full_knn_order(metric):
    # integer data (many exact ties) and random data; items and classes
    for q, ql, ref, rl in (
        (_integer_set(5, 30), np.random.default_rng(5).integers(0, 6, 30),
         _integer_set(6, 45), np.random.default_rng(6).integers(0, 6, 45)),
        (np.random.default_rng(7).normal(size=(30, 6)), np.random.default_rng(7).integers(0, 5, 30),
         np.random.default_rng(8).normal(size=(50, 6)), np.random.default_rng(8).integers(0, 5, 50)),
    ):
        if metric == "cosine":
            q, ref = q + 0.5, ref + 0.5  # no all-zero rows
        ranks = first_match_rank(q, ql, ref, rl, metric, memory_mb=0.005)
        classes = first_match_rank(q, ql, ref, rl, metric, count="classes")
        _, order = knn(q, ref, len(ref), metric)
        for i in range(len(q)):
            loop = order[i].tolist()
            if metric == "l2":  # exact in any arithmetic; cosine ties of parallel vectors are not
                assert loop == _loop_order(q, ref, i, metric)
            hits = [pos for pos, j in enumerate(loop, 1) if rl[j] == ql[i]]
            assert ranks[i] == (hits[0] if hits else 0)
            seen: list[int] = []
            for j in loop:
                if rl[j] not in seen:
                    seen.append(int(rl[j]))
            assert classes[i] == (seen.index(ql[i]) + 1 if ql[i] in seen else 0)


def test_first_match_rank_exclude_self_and_offsets_against_a_loop():
    rng = np.random.default_rng(9)
    x = rng.integers(-2, 3, size=(40, 2)).astype(np.float64)
    y = rng.integers(0, 4, 40)
    off = rng.integers(0, 3, 40) * 0.5  # offsets that keep distances on a coarse grid: more ties
    ranks = first_match_rank(x, y, x, y, "l2", exclude_self=True, reference_offsets=off, memory_mb=0.002)
    for i in range(40):
        keys = sorted((_loop_dist(x[i], x[j], "l2") + off[j], j) for j in range(40) if j != i)
        hits = [pos for pos, (_, j) in enumerate(keys, 1) if y[j] == y[i]]
        assert ranks[i] == (hits[0] if hits else 0)


def test_average_precision_reads_the_same_order():
    x = _integer_set(11, 30, d=2)
    y = np.random.default_rng(11).integers(0, 3, 30)
    ap = average_precision_full(x, y, x, y, "l2", exclude_self=True, memory_mb=0.001)
    for i in range(30):
        rel = [int(y[j] == y[i]) for j in _loop_order(x, x, i, "l2", exclude_self=True)]
        hits, s = 0, 0.0
        for k, r in enumerate(rel, 1):
            if r:
                hits += 1
                s += hits / k
        assert ap[i] == pytest.approx(s / sum(rel), abs=1e-12) if sum(rel) else np.isnan(ap[i])


@pytest.mark.parametrize("metric", ["cosine", "l2"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_error_bound_covers_block_and_faiss_distances(metric, dtype):
    # the bound the engine relies on, checked on data with a wide spread of norms
    rng = np.random.default_rng(12)
    q = (rng.normal(size=(50, 64)) * rng.uniform(0.01, 30, size=(50, 1))).astype(dtype)
    r = (rng.normal(size=(300, 64)) * rng.uniform(0.01, 30, size=(300, 1))).astype(dtype)
    pairs = PairDistances(q, r, metric)
    rows = np.arange(len(q))
    exact = pairs.exact(rows, np.broadcast_to(np.arange(len(r)), (len(q), len(r))))
    block = pairs.block(slice(0, len(q))).astype(np.float64)
    assert (np.abs(block - exact) <= pairs.bound(rows, block)).all()
    # the FAISS index and queries the engine itself searches (l2: inner products of [q, 1] and [2r, −‖r‖²])
    engine = NeighbourEngine(q, r, metric, backend="faiss")
    s, idx = engine._faiss_index().search(engine._faiss_queries(rows), len(r))
    approx = engine._faiss_distances(rows, s)
    assert (np.abs(approx - np.take_along_axis(exact, idx, axis=1)) <= pairs.bound(rows, approx, 2.0**-24)).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_faiss_candidates_far_from_the_origin_are_redone_not_wrong(dtype):
    # points 1000 from the origin, 0.01 apart: float32 inner products lose the differences, so the
    # FAISS lists cannot be proved complete and the engine must redo them from exact distances
    rng = np.random.default_rng(5)
    x = (1000.0 + 0.01 * rng.normal(size=(300, 8))).astype(dtype)
    a = knn(x, x, 7, "l2", exclude_self=True, backend="faiss")
    b = knn(x, x, 7, "l2", exclude_self=True, backend="numpy", memory_mb=0.05)
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(a[0], b[0])
    for i in (0, 123, 299):  # and the order is the brute-force (distance, index) order
        assert a[1][i].tolist() == _loop_order(x, x, i, "l2", exclude_self=True)[:7]


def test_engine_arguments_are_checked():
    x = np.eye(3)
    with pytest.raises(ValueError, match="backend"):
        NeighbourEngine(x, x, backend="gpu")
    with pytest.raises(ValueError, match="offsets"):
        NeighbourEngine(x, x, reference_offsets=np.zeros(3), backend="faiss")
    with pytest.raises(ValueError, match="k must lie"):
        knn(x, x, 3, exclude_self=True)
    with pytest.raises(ValueError, match="count"):
        first_match_rank(x, [0, 1, 2], x, [0, 1, 2], count="images")
    with pytest.raises(ValueError, match="zero norm"):
        knn(np.zeros((1, 3)), x, 1, "cosine")


def test_l2_normalize_rows():
    x = np.array([[3.0, 4.0], [0.0, 0.0], [1e30, 1e30]], np.float32)
    with pytest.raises(ValueError, match=r"rows \[1\] have zero norm"):
        l2_normalize_rows(x)
    out = l2_normalize_rows(x, zero="keep")
    # (3, 4)/5 = (0.6, 0.8); the zero row stays; (1e30, 1e30) would overflow float32 squares: 1/√2 each
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0], [2**-0.5, 2**-0.5]], rtol=1e-7)
    assert out.dtype == np.float32
    # one row, one result, wherever it sits
    np.testing.assert_array_equal(l2_normalize_rows(x[2:], zero="keep")[0], out[2])
    with pytest.raises(ValueError, match="NaN"):
        l2_normalize_rows(np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError, match="2-D"):
        l2_normalize_rows(np.ones(3))


def test_exclude_self_never_counts_a_lone_query_as_its_own_match():
    # query 2 and query 3 are the only members of their classes: with the self excluded they have
    # no match (rank 0, a miss at every rank), not a match with themselves at the end of the list.
    # Queries 0 and 1 match each other first. CMC at every rank: 2 of 4 queries = 0.5.
    from itemrec.evaluation import cmc

    x = np.array([[0.0], [1.0], [2.0], [10.0]])
    y = np.array([0, 0, 1, 2])
    for memory in ({}, {"memory_mb": 0.0001}):  # one block; one row per block
        assert first_match_rank(x, y, x, y, "l2", exclude_self=True, **memory).tolist() == [1, 1, 0, 0]
        assert first_match_rank(x, y, x, y, "l2", exclude_self=True, count="classes", **memory).tolist() == [1, 1, 0, 0]
    np.testing.assert_allclose(cmc(x, y, x, y, max_rank=4, metric="l2", exclude_self=True).mean, [0.5] * 4)


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_faiss_blocks_past_the_first_exclude_their_own_rows(monkeypatch, metric):
    # 40 rows in FAISS blocks of 7: a block that used its local row numbers would exclude the wrong
    # references (and return queries to themselves); the lists must be the brute-force ones
    from itemrec.evaluation import neighbours

    monkeypatch.setattr(neighbours, "_FAISS_ROWS", 7)
    x = np.random.default_rng(3).normal(size=(40, 8))
    _, idx = knn(x, x, 5, metric, exclude_self=True, backend="faiss")
    assert not (idx == np.arange(40)[:, None]).any()
    for i in range(40):
        assert idx[i].tolist() == _loop_order(x, x, i, metric, exclude_self=True)[:5], i


@pytest.mark.parametrize("first_k", [2, 32])
@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_first_match_ranks_from_faiss_lists_equal_the_block_ranks_and_a_loop(monkeypatch, first_k, metric):
    # integer points: exact ties and duplicates; with first_k = 2 most first matches lie beyond the
    # FAISS lists and are ranked from distance blocks, with 32 most are read from the lists
    from itemrec.evaluation import neighbours

    monkeypatch.setattr(neighbours, "_FIRST_MATCH_K", first_k)
    x = _integer_set(4, 70, d=3, lo=-2, hi=3)
    x[x.sum(axis=1) == 0, 0] = 1.0  # no zero rows (cosine)
    y = np.random.default_rng(4).integers(0, 9, len(x))
    q, ql = x[:25], y[:25]
    for exclude_self, (qq, qql) in ((True, (x, y)), (False, (q, ql))):
        for count in ("items", "classes"):
            a = first_match_rank(qq, qql, x, y, metric, exclude_self=exclude_self, count=count, backend="faiss")
            b = first_match_rank(qq, qql, x, y, metric, exclude_self=exclude_self, count=count, backend="numpy")
            np.testing.assert_array_equal(a, b)
            for i in range(0, len(qq), 5):  # and the rank is the position in the brute-force order
                order = _loop_order(qq, x, i, metric, exclude_self=exclude_self)
                labels = [y[j] for j in order]
                first = labels.index(qql[i])
                want = first + 1 if count == "items" else len(set(labels[:first])) + 1
                assert a[i] == want, (exclude_self, count, i)
