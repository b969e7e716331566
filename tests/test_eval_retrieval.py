"""Retrieval metrics: hand-worked cases and brute-force loops on random data."""

from __future__ import annotations

import numpy as np
import pytest

from itemrec.evaluation import (
    cmc,
    cmc_representative,
    knn,
    metrics_from_matches,
    per_class_ranks,
    retrieval_report,
)
from itemrec.evaluation._chunked import pairwise_distances
from itemrec.evaluation.neighbours import average_precision_full, first_match_rank


def clustered(n_classes=6, per_class=7, dim=8, seed=0, spread=0.8):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, dim))
    labels = np.repeat(np.arange(n_classes), per_class)
    emb = centres[labels] + spread * rng.normal(size=(len(labels), dim))
    perm = rng.permutation(len(labels))
    return emb[perm], labels[perm]


# ---------------------------------------------------------------- brute force
def brute_ranking(q, ref, i, metric, exclude_index=None):
    d = [float(np.linalg.norm(q[i] - ref[j])) if metric == "l2" else
         1 - float(q[i] @ ref[j] / np.linalg.norm(q[i]) / np.linalg.norm(ref[j])) for j in range(len(ref))]
    order = sorted((dd, j) for j, dd in enumerate(d) if j != exclude_index)
    return [j for _, j in order]


def brute_metrics(q, ql, ref, rl, same_set, metric, ks=(1, 3)):
    rows = []
    for i in range(len(q)):
        order = brute_ranking(q, ref, i, metric, i if same_set else None)
        rel = [int(rl[j] == ql[i]) for j in order]
        R = sum(rel)
        if R == 0:
            continue
        out = {f"recall@{k}": float(any(rel[:k])) for k in ks}
        out["p1"] = rel[0]
        out["rp"] = sum(rel[:R]) / R
        ap_r, ap, hits = 0.0, 0.0, 0
        for k, r in enumerate(rel, start=1):
            if r:
                hits += 1
                ap += hits / k
                if k <= R:
                    ap_r += hits / k
        out["map_r"] = ap_r / R
        out["map"] = ap / R
        rows.append(out)
    return {key: np.mean([r[key] for r in rows]) for key in rows[0]}, len(rows)


@pytest.mark.parametrize("metric", ["cosine", "l2"])
@pytest.mark.parametrize("same_set", [True, False])
def test_retrieval_report_matches_brute_force(metric, same_set):
    q, ql = clustered(seed=1, per_class=12)
    if same_set:
        q, ql = q[:40], ql[:40]
        ref, rl = None, None
        ref_b, rl_b = q, ql
    else:  # disjoint halves of one clustered set
        ref_b, rl_b = q[40:], ql[40:]
        q, ql = q[:40], ql[:40]
        ref, rl = ref_b, rl_b
    want, n_valid = brute_metrics(q, ql, ref_b, rl_b, same_set, metric)
    got = retrieval_report(q, ql, ref, rl, ks=(1, 3), metric=metric, with_map=True, memory_mb=0.001)
    assert got.n_queries == n_valid
    assert got.recall_at_k[1] == pytest.approx(want["recall@1"], abs=1e-12)
    assert got.recall_at_k[3] == pytest.approx(want["recall@3"], abs=1e-12)
    assert got.precision_at_1 == pytest.approx(want["p1"], abs=1e-12)
    assert got.r_precision == pytest.approx(want["rp"], abs=1e-12)
    assert got.map_at_r == pytest.approx(want["map_r"], abs=1e-12)
    assert got.mean_average_precision == pytest.approx(want["map"], abs=1e-12)
    # sanity: clustered data is far better than chance
    assert got.map_at_r > 0.3


def test_metrics_from_matches_hand_worked():
    # One query, R = 4 relevant items, ranking relevance 1 0 1 1 0 1 ...
    # R-precision = (1+0+1+1)/4 = 0.75
    # MAP@R = (1/4)(1/1 + 2/3 + 3/4) = (1/4)(2.41666..) = 0.6041666...
    # Recall@1 = 1, Recall@2 = 1; P@1 = 1
    m = np.array([[1, 0, 1, 1, 0, 1]], dtype=bool)
    out = metrics_from_matches(m, np.array([4]), ks=(1, 2))
    assert out["r_precision"][0] == pytest.approx(0.75)
    assert out["map_at_r"][0] == pytest.approx((1 + 2 / 3 + 3 / 4) / 4)
    assert out["recall@1"][0] == 1 and out["precision_at_1"][0] == 1
    # Second query: 0 1 | R = 2: R-precision 1/2, MAP@R = (1/2)(1/2) = 0.25, Recall@1 = 0, Recall@2 = 1
    out = metrics_from_matches(np.array([[0, 1]], dtype=bool), np.array([2]), ks=(1, 2))
    assert out["r_precision"][0] == 0.5 and out["map_at_r"][0] == 0.25
    assert out["recall@1"][0] == 0 and out["recall@2"][0] == 1
    with pytest.raises(ValueError, match="columns"):
        metrics_from_matches(np.array([[1, 0]], dtype=bool), np.array([3]), ks=(1,))


def test_retrieval_hand_worked_1d():
    # 1-D points, l2 distance. Labels: a=0 at 0.0, b=0 at 1.0, c=1 at 0.4, d=1 at 3.0
    # a: order c(0.4) b(1.0) d(3.0) ; R=1 -> rel 0 1 0 -> P@1 0, R-prec 0, MAP@R 0, AP = 1/2
    # b: order c(0.6) a(1.0) d(2.0) ; R=1 -> 0 1 0 -> 0, 0, 0, AP 1/2
    # c: order a(0.4) b(0.6) d(2.6) ; R=1 -> 0 0 1 -> 0, 0, 0, AP 1/3
    # d: order b(2.0) c(2.6) a(3.0) ; R=1 -> 0 1 0 -> 0, 0, 0, AP 1/2
    x = np.array([[0.0], [1.0], [0.4], [3.0]])
    y = np.array([0, 0, 1, 1])
    rep = retrieval_report(x, y, ks=(1, 2), metric="l2", with_map=True)
    assert rep.precision_at_1 == 0 and rep.map_at_r == 0
    assert rep.recall_at_k[2] == pytest.approx(3 / 4)  # a, b, d find theirs at rank 2
    assert rep.mean_average_precision == pytest.approx((0.5 + 0.5 + 1 / 3 + 0.5) / 4)


def test_lone_queries_are_skipped_and_errors_are_clear():
    x = np.array([[0.0], [1.0], [5.0]])
    y = np.array([0, 0, 1])  # class 1 has one item: no relevant neighbour, skipped
    rep = retrieval_report(x, y, ks=(1,), metric="l2")
    assert rep.n_skipped == 1 and rep.n_queries == 2 and rep.precision_at_1 == 1.0
    with pytest.raises(ValueError, match="2-D"):
        retrieval_report(np.zeros(3), y)
    with pytest.raises(ValueError, match="length 3"):
        retrieval_report(x, y[:2])
    with pytest.raises(ValueError, match="NaN"):
        retrieval_report(np.array([[np.nan], [1.0], [2.0]]), y)
    with pytest.raises(ValueError, match="metric"):
        retrieval_report(x, y, ks=(1,), metric="manhattan")


def test_knn_chunked_equals_full_sort():
    q, _ = clustered(seed=3)
    ref, _ = clustered(n_classes=9, per_class=4, seed=4)
    d_full = pairwise_distances(q, ref, "l2")
    d, idx = knn(q, ref, 5, "l2", memory_mb=0.0005)  # blocks of one row
    for i in range(len(q)):
        want = np.argsort(d_full[i], kind="stable")[:5]
        np.testing.assert_array_equal(idx[i], want)
        np.testing.assert_allclose(d[i], d_full[i, want], rtol=1e-12)
    d, idx = knn(q, q, 3, "cosine", exclude_self=True)
    assert not np.any(idx == np.arange(len(q))[:, None])
    with pytest.raises(ValueError, match="k must lie"):
        knn(q, ref, len(ref) + 1)


def test_cmc_full_gallery_brute_force():
    q, ql = clustered(seed=5, spread=1.5)
    g, gl = clustered(n_classes=8, per_class=3, seed=6, spread=1.5)
    res = cmc(q, ql, g, gl, max_rank=6, metric="cosine")
    ranks = []
    for i in range(len(q)):
        order = brute_ranking(q, g, i, "cosine")
        hits = [k for k, j in enumerate(order, start=1) if gl[j] == ql[i]]
        ranks.append(hits[0] if hits else 0)
    ranks = np.array(ranks)
    want = [np.mean((ranks >= 1) & (ranks <= r)) for r in range(1, 7)]
    np.testing.assert_allclose(res.mean, want)
    assert np.all(res.ci_low <= res.mean) and np.all(res.mean <= res.ci_high)
    assert np.all(np.diff(res.mean) >= 0)


def test_first_match_rank_hand_worked():
    # gallery on a line: class 0 at 0, class 1 at 2, class 2 at 3; query of class 2 at 1.0
    # distances 1, 1, 2: classes 0 and 1 tie with... no: |1-0|=1, |1-2|=1, |1-3|=2 -> true class at rank 3
    g = np.array([[0.0], [2.0], [3.0]])
    r = first_match_rank(np.array([[1.0]]), [2], g, [0, 1, 2], metric="l2")
    assert r.tolist() == [3]
    # query of class 1 at 1.0 ties with class 0 at distance 1: ties go by gallery index, and class 0's
    # image (index 0) comes before class 1's (index 1) -> rank 2; with the gallery reversed, rank 1
    assert first_match_rank(np.array([[1.0]]), [1], g, [0, 1, 2], metric="l2").tolist() == [2]
    assert first_match_rank(np.array([[1.0]]), [1], g[::-1], [2, 1, 0], metric="l2").tolist() == [1]
    # class 5 is not in the gallery -> 0 (never matched)
    assert first_match_rank(np.array([[1.0]]), [5], g, [0, 1, 2], metric="l2").tolist() == [0]


def test_cmc_representative_draws_against_brute_force():
    rng = np.random.default_rng(7)
    q, ql = clustered(n_classes=5, per_class=6, seed=7, spread=1.5)
    g = rng.normal(size=(5, 8))
    gl = np.arange(5)
    res = cmc_representative(q, ql, g, gl, max_rank=5, n_draws=40, queries_per_class=2, seed=3, metric="l2")
    assert res.per_draw.shape == (40, 5) and res.n_queries == 10
    # recompute each draw with the same random stream and a slow loop
    rng = np.random.default_rng(3)
    picks = []
    for c in range(5):
        idx = np.flatnonzero(ql == c)
        picks.append(idx[np.argsort(rng.random((40, len(idx))), axis=1)[:, :2]])
    picks = np.concatenate(picks, axis=1)
    for d in range(40):
        ranks = []
        for i in picks[d]:
            order = brute_ranking(q, g, i, "l2")
            ranks.append(1 + order.index(int(np.flatnonzero(gl == ql[i])[0])))
        want = [np.mean(np.array(ranks) <= r) for r in range(1, 6)]
        np.testing.assert_allclose(res.per_draw[d], want)
    assert res.mean[-1] == 1.0  # 5 classes: rank ≤ 5 always
    assert np.all(res.ci_low <= res.mean + 1e-12) and np.all(res.mean <= res.ci_high + 1e-12)


def test_cmc_representative_excludes_same_ids_and_checks_gallery():
    q, ql = clustered(n_classes=3, per_class=3, seed=8)
    ids = np.array([f"img{i}" for i in range(len(q))])
    first = np.array([np.flatnonzero(ql == c)[0] for c in range(3)])
    res = cmc_representative(q, ql, q[first], ql[first], max_rank=3, n_draws=50, queries_per_class=2,
                             query_ids=ids, gallery_ids=ids[first])
    # every class keeps 2 eligible queries; the representative itself (distance 0, rank 1) is never drawn
    assert res.n_queries == 6
    with pytest.raises(ValueError, match="eligible"):
        cmc_representative(q, ql, q[first], ql[first], queries_per_class=3, query_ids=ids, gallery_ids=ids[first])
    with pytest.raises(ValueError, match="one representative"):
        cmc_representative(q, ql, q[:4], np.array([0, 0, 1, 2]))
    with pytest.raises(ValueError, match="no representative"):
        cmc_representative(q, ql, q[:2], np.array([0, 1]))


def test_average_precision_full_self_excluded():
    q, ql = clustered(n_classes=3, per_class=4, seed=9)
    ap = average_precision_full(q, ql, q, ql, "cosine", exclude_self=True, memory_mb=0.001)
    for i in range(len(q)):
        order = brute_ranking(q, q, i, "cosine", i)
        rel = [int(ql[j] == ql[i]) for j in order]
        hits, s = 0, 0.0
        for k, r in enumerate(rel, 1):
            if r:
                hits += 1
                s += hits / k
        assert ap[i] == pytest.approx(s / sum(rel), abs=1e-12)


def test_distance_blocks_stay_within_budget():
    from itemrec.evaluation._chunked import distance_blocks, rows_per_block, upper_triangle_blocks

    # 100,000 references, float32, three block-sized arrays in 256 MiB:
    # 256·2^20 / (100,000 · 4 · 3) = 223.7 -> 223 rows, one block 223 × 100,000 × 4 B = 89 MB
    assert rows_per_block(100_000, 4, 256) == 223
    q, _ = clustered(seed=11)
    budget_rows = rows_per_block(len(q), 8, 0.002)  # 0.002 MiB / (42 · 8 · 3) -> 2 rows
    assert budget_rows == 2
    blocks = list(distance_blocks(q, q, "cosine", memory_mb=0.002))
    assert max(b.shape[0] for _, _, b in blocks) == 2 and sum(b.shape[0] for _, _, b in blocks) == len(q)
    full = pairwise_distances(q, q, "cosine")
    for start, stop, block in upper_triangle_blocks(q, "cosine", memory_mb=0.002):
        np.testing.assert_allclose(block, full[start:stop, start:], atol=1e-12)


def test_per_class_ranks_hand_worked_1d():
    # gallery on a line (l2): label 10 at 0.0, 20 at 1.0, 30 at 2.0
    gallery, gl = np.array([[0.0], [1.0], [2.0]]), np.array([10, 20, 30])
    # class 10: queries at 0.1 (rank 1) and 0.9 (nearest is 20 -> rank 2);
    # class 20: 1.1 (rank 1), 1.9 (30 first -> rank 2), 2.8 (30, then 20 -> rank 2);
    # class 30: 0.4 (10 at 0.4, 20 at 0.6, 30 at 1.6 -> rank 3)
    q = np.array([[0.1], [0.9], [1.1], [1.9], [2.8], [0.4]])
    ql = np.array([10, 10, 20, 20, 20, 30])
    f = per_class_ranks(q, ql, gallery, gl, ks=(1, 2), metric="l2").set_index("label")
    assert f.loc[10, "n_queries"] == 2 and f.loc[20, "n_queries"] == 3 and f.loc[30, "n_queries"] == 1
    assert f.loc[10, "hit@1"] == 0.5 and f.loc[10, "hit@2"] == 1.0  # ranks 1, 2
    assert f.loc[20, "hit@1"] == pytest.approx(1 / 3) and f.loc[20, "hit@2"] == 1.0  # ranks 1, 2, 2
    assert f.loc[30, "hit@1"] == 0.0 and f.loc[30, "hit@2"] == 0.0  # rank 3
    assert f.loc[20, "mean_rank"] == pytest.approx(5 / 3) and f.loc[30, "mean_rank"] == 3.0
    # misses of class 20 both rank 30 first: 2 of its 3 queries
    assert f.loc[20, "confused_with"] == 30 and f.loc[20, "confused_share"] == pytest.approx(2 / 3)
    assert f.loc[10, "confused_with"] == 20 and f.loc[10, "confused_share"] == 0.5
    assert f.loc[30, "confused_with"] == 10 and f.loc[30, "confused_share"] == 1.0
    solo = per_class_ranks(np.array([[2.1]]), np.array([30]), gallery, gl, ks=(1,), metric="l2").iloc[0]
    assert solo["hit@1"] == 1.0 and solo["confused_with"] == -1 and solo["confused_share"] == 0.0
    with pytest.raises(ValueError, match="ks"):
        per_class_ranks(q, ql, gallery, gl, ks=(0,), metric="l2")


def test_cmc_exclude_self_across_blocks_matches_a_brute_force_loop():
    from itemrec.evaluation import cmc
    from itemrec.evaluation._chunked import distance_blocks

    rng = np.random.default_rng(4)
    x = rng.normal(size=(42, 5))
    y = rng.integers(0, 6, size=42)
    memory_mb = 0.002  # small enough that the 42 x 42 distances come in several row blocks
    assert len(list(distance_blocks(x, x, "cosine", memory_mb=memory_mb))) > 2
    # the reference: for each query, its nearest same-label *other* point, and the other-label points strictly closer
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    dist = 1.0 - xn @ xn.T
    ranks = []
    for i in range(42):
        same = [j for j in range(42) if j != i and y[j] == y[i]]
        if not same:
            ranks.append(0)
            continue
        best = min(dist[i, j] for j in same)
        ranks.append(1 + sum(1 for j in range(42) if y[j] != y[i] and dist[i, j] < best))
    ranks = np.array(ranks)
    expected = [np.mean((ranks >= 1) & (ranks <= r)) for r in (1, 2, 3)]
    got = cmc(x, y, x, y, max_rank=3, exclude_self=True, memory_mb=memory_mb)
    np.testing.assert_allclose(got.mean, expected, atol=1e-12)
    assert expected[0] < 1.0  # a query matched to itself would give 1 at every rank
