"""class_ranks, cmc_image_averaged and cmc_k_shot (itemrec.evaluation.protocols).

Expected values come from hand-worked examples (arithmetic in the comments),
brute-force Python loops, the Wilson formula written out here, or scipy.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binomtest

from itemrec.evaluation import class_ranks, cmc, cmc_image_averaged, cmc_k_shot

Z = 1.959963984540054

# --------------------------------------------------------------------------- hand-built 2-D example
#
# Gallery (all unit vectors, so cosine distance c = 1 − cos, squared L2 = 2 − 2 cos = 2c, L2 = √(2c):
# every metric orders the items the same way):
#   g0 = ( 1,   0  ) class 10
#   g1 = ( 0,   1  ) class 20
#   g2 = ( 0,  -1  ) class 30
#   g3 = (-1,   0  ) class 40
#   g4 = ( 0.6, 0.8) class 20   (class 20 has two images; its score is the nearer one)
GALLERY = np.array([[1, 0], [0, 1], [0, -1], [-1, 0], [0.6, 0.8]], dtype=np.float64)
GALLERY_LABELS = np.array([10, 20, 30, 40, 20])
#
# Queries, with their cosine distances to g0..g4 and the per-class best (10, 20, 30, 40):
# The gallery is ordered by (distance, index) (the engine's one tie rule); a class ranks where
# its first image falls in that order.
#   q0 = (1, 0) class 10: cos = 1, 0, 0, −1, 0.6 → c = 0, 1, 1, 2, 0.4
#        class best (distance, index): 10: (0, 0), 20: min((1, 1), (0.4, 4)) = (0.4, 4), 30: (1, 2), 40: (2, 3)
#        rank of 10 = 1 + 0 classes before it = 1
#   q1 = (1, 0) class 20: true best (0.4, g4), not g1 at 1; before it: class 10 (0) → rank 2
#   q2 = (−1, 0) class 30: cos = −1, 0, 0, 1, −0.6 → c = 2, 1, 1, 0, 1.6
#        class best: 10: (2, 0), 20: (1, 1), 30: (1, 2), 40: (0, 3)
#        order 40, 20, 30, 10: rank of 30 = 3 (20 ties with it at 1 and its image g1 has the lower index)
#   q3 = (−1, 0) class 20: same order: rank of 20 = 2 (30's g2 has index 2 > 1)
#   q4 = (0, 1) class 50: no gallery image of class 50 → rank 0
#   q5 = (0.8, 0.6) class 40: cos = 0.8, 0.6, −0.6, −0.8, 0.48 + 0.48 = 0.96
#        → c = 0.2, 0.4, 1.6, 1.8, 0.04; class best: 10: 0.2, 20: 0.04, 30: 1.6, 40: 1.8
#        rank of 40 = 1 + 3 strictly closer = 4
#   q6 = (0, −1) class 30: c = 1, 2, 0, 1, 1.8 → class best 10: 1, 20: 1.8, 30: 0, 40: 1 → rank 1
QUERIES = np.array([[1, 0], [1, 0], [-1, 0], [-1, 0], [0, 1], [0.8, 0.6], [0, -1]], dtype=np.float64)
QUERY_LABELS = np.array([10, 20, 30, 20, 50, 40, 30])
EXPECTED_RANKS = np.array([1, 2, 3, 2, 0, 4, 1])


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_class_ranks_hand_example(metric):
    ranks = class_ranks(QUERIES, QUERY_LABELS, GALLERY, GALLERY_LABELS, metric)
    assert ranks.dtype == np.int64
    np.testing.assert_array_equal(ranks, EXPECTED_RANKS)


def test_class_ranks_hand_example_float32_and_reordered_gallery():
    # float32 keeps the exact tie (dots are 0, norms 1). Reordered gallery: g4, g2, g0, g3, g1 at
    # indices 0..4, so g2 (class 30) now has index 1 and g1 (class 20) index 4: the tie of q2/q3
    # between classes 20 and 30 at distance 1 now goes to 30 → q2 (class 30) rank 2, q3 (class 20)
    # rank 3; the other queries have no tie and keep their ranks
    perm = np.array([4, 2, 0, 3, 1])
    ranks = class_ranks(QUERIES.astype(np.float32), QUERY_LABELS, GALLERY[perm].astype(np.float32),
                        GALLERY_LABELS[perm], "l2")
    np.testing.assert_array_equal(ranks, [1, 2, 2, 3, 0, 4, 1])


def test_class_ranks_hand_example_squared_l2():
    # squared L2 = 2c on unit vectors (see above), a monotone transform: same ranks
    ranks = class_ranks(QUERIES, QUERY_LABELS, GALLERY, GALLERY_LABELS, "squared_l2")
    np.testing.assert_array_equal(ranks, EXPECTED_RANKS)


def test_class_ranks_metric_matters():
    # query q = (1, 0) of class 0; class 0's image a = (3, 0), class 1's image b = (0.5, 0.5)
    #   cosine: c(q, a) = 1 − 1 = 0, c(q, b) = 1 − 0.5/0.7071 = 0.2929 → class 0 first, rank 1
    #   l2:     |q − a| = 2,        |q − b| = √(0.25 + 0.25) = 0.7071 → class 1 first, rank 2
    q = np.array([[1.0, 0.0]])
    g = np.array([[3.0, 0.0], [0.5, 0.5]])
    assert class_ranks(q, [0], g, [0, 1], "cosine").tolist() == [1]
    assert class_ranks(q, [0], g, [0, 1], "l2").tolist() == [2]
    with pytest.raises(ValueError):
        class_ranks(q, [0], g, [0, 1], "manhattan")


# --------------------------------------------------------------------------- brute-force references


def _dist(a: np.ndarray, b: np.ndarray, metric: str) -> float:
    if metric == "cosine":
        return 1.0 - float(np.dot(a, b)) / (math.sqrt(float(np.dot(a, a))) * math.sqrt(float(np.dot(b, b))))
    sq = float(sum((float(u) - float(v)) ** 2 for u, v in zip(a, b)))
    return sq if metric == "squared_l2" else math.sqrt(sq)


def _brute_class_ranks(q, ql, g, gl, metric):
    """Classes ordered by their first image in the gallery's (distance, index) order."""
    out = []
    for qi, label in zip(q, ql):
        best: dict[int, tuple[float, int]] = {}
        for j, (gi, glab) in enumerate(zip(g, gl)):
            key = (_dist(qi, gi, metric), j)
            best[int(glab)] = min(best.get(int(glab), (math.inf, j)), key)
        if int(label) not in best:
            out.append(0)
            continue
        true = best[int(label)]
        out.append(1 + sum(1 for v in best.values() if v < true))
    return np.array(out)


def _random_gallery(rng, n_classes, d, spread=1.0):
    counts = rng.integers(1, 5, size=n_classes)  # 1-4 images per class
    labels = np.repeat(rng.permutation(np.arange(100, 100 + 3 * n_classes, 3))[:n_classes], counts)
    emb = rng.normal(size=(len(labels), d)) * spread
    return emb, labels


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_class_ranks_matches_brute_force(seed, metric):
    rng = np.random.default_rng(seed)
    n_classes, d = 12, 5
    g, gl = _random_gallery(rng, n_classes, d)
    # queries near a random gallery image of their class, plus some queries of unknown classes
    pick = rng.integers(0, len(g), size=40)
    q = g[pick] + rng.normal(size=(40, d)) * 0.8
    ql = gl[pick].copy()
    ql[:5] = -7  # absent from the gallery
    ranks = class_ranks(q, ql, g, gl, metric)
    expected = _brute_class_ranks(q, ql, g, gl, metric)
    np.testing.assert_array_equal(ranks, expected)
    assert (ranks[:5] == 0).all() and (ranks[5:] >= 1).all() and ranks.max() <= n_classes
    assert len(set(ranks[5:].tolist())) > 1  # not a degenerate all-rank-1 case


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_class_ranks_brute_force_with_many_ties(seed):
    # small integer coordinates: squared L2 distances are exact integers in both computations,
    # so many classes tie exactly and the tie rule is exercised
    rng = np.random.default_rng(seed)
    gl = np.repeat(np.arange(8), rng.integers(1, 5, size=8))
    g = rng.integers(-2, 3, size=(len(gl), 2)).astype(np.float64)
    q = rng.integers(-2, 3, size=(60, 2)).astype(np.float64)
    ql = rng.integers(0, 8, size=60)
    ranks = class_ranks(q, ql, g, gl, "l2")
    expected = _brute_class_ranks(q, ql, g, gl, "l2")
    np.testing.assert_array_equal(ranks, expected)
    # ties did happen: some query's true class shares its best distance with another class
    assert any(_has_tie(qi, lab, g, gl) for qi, lab in zip(q, ql))


def _has_tie(qi, label, g, gl):
    best = {}
    for gi, glab in zip(g, gl):
        best[int(glab)] = min(best.get(int(glab), math.inf), _dist(qi, gi, "l2"))
    return sum(v == best[int(label)] for v in best.values()) > 1


# --------------------------------------------------------------------------- cmc_image_averaged


def _wilson(k: int, n: int) -> tuple[float, float]:
    # Wilson score interval: (p̂ + z²/2n ± z √(p̂(1 − p̂)/n + z²/4n²)) / (1 + z²/n)
    p = k / n
    denom = 1 + Z * Z / n
    centre = (p + Z * Z / (2 * n)) / denom
    half = Z * math.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def test_wilson_reference_agrees_with_scipy():
    # the reference formula above against an independent implementation
    for k, n in [(0, 10), (3, 10), (10, 10), (17, 40), (1, 3)]:
        ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        low, high = _wilson(k, n)
        assert low == pytest.approx(ci.low, abs=1e-12)
        assert high == pytest.approx(ci.high, abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_cmc_image_averaged_matches_brute_force(seed, metric):
    rng = np.random.default_rng(10 + seed)
    g, gl = _random_gallery(rng, 10, 4)
    pick = rng.integers(0, len(g), size=37)
    q = g[pick] + rng.normal(size=(37, 4)) * 0.9
    ql = gl[pick].copy()
    ql[0] = -1  # absent class: rank 0, a miss at every rank
    max_rank = 6
    res = cmc_image_averaged(q, ql, g, gl, max_rank=max_rank, metric=metric)
    ranks = _brute_class_ranks(q, ql, g, gl, metric)
    assert res.n_queries == 37 and res.n_draws == 0
    np.testing.assert_array_equal(res.ranks, np.arange(1, max_rank + 1))
    for r in range(1, max_rank + 1):
        hits = sum(1 for rank in ranks if 1 <= rank <= r)
        assert res.mean[r - 1] == pytest.approx(hits / 37, abs=1e-12)
        assert res.at(r) == pytest.approx(hits / 37, abs=1e-12)
        low, high = _wilson(hits, 37)
        assert res.ci_low[r - 1] == pytest.approx(low, abs=1e-12)
        assert res.ci_high[r - 1] == pytest.approx(high, abs=1e-12)
    assert np.all(np.diff(res.mean) >= 0)
    assert 0 < res.mean[0] < 1  # a non-trivial curve


def test_cmc_image_averaged_hand_example():
    # EXPECTED_RANKS = 1, 2, 3, 2, 0, 4, 1 over 7 queries:
    #   rank ≤ 1: 2/7, ≤ 2: 4/7, ≤ 3: 5/7, ≤ 4: 6/7, ≤ 5: 6/7 (the absent class never counts)
    res = cmc_image_averaged(QUERIES, QUERY_LABELS, GALLERY, GALLERY_LABELS, max_rank=5, metric="cosine")
    np.testing.assert_allclose(res.mean, np.array([2, 4, 5, 6, 6]) / 7, atol=1e-12)
    # Wilson at rank 1, k = 2, n = 7: p = 0.285714, z² = 3.841459, denom = 1.548780,
    # centre = (0.285714 + 0.274390) / 1.548780 = 0.361642,
    # half = 1.959964 · √(0.029155 + 0.019599) / 1.548780 = 1.959964 · 0.220803 / 1.548780 = 0.279423
    # → [0.361642 − 0.279423, 0.361642 + 0.279423] = [0.082219, 0.641065]
    assert res.ci_low[0] == pytest.approx(0.082219, abs=2e-6)
    assert res.ci_high[0] == pytest.approx(0.641065, abs=2e-6)
    with pytest.raises(ValueError):
        cmc_image_averaged(QUERIES, QUERY_LABELS, GALLERY, GALLERY_LABELS, max_rank=0)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_cmc_image_averaged_equals_cmc_with_one_image_per_class(seed, metric):
    # one gallery image per class, continuous data (no ties): the class rank is the rank of the
    # first correct image, so the whole curve (and its Wilson interval) equals evaluation.cmc's
    rng = np.random.default_rng(20 + seed)
    n_classes, d = 15, 6
    gl = rng.permutation(n_classes) * 2
    g = rng.normal(size=(n_classes, d))
    pick = rng.integers(0, n_classes, size=80)
    q = g[pick] + rng.normal(size=(80, d)) * 0.9
    ql = gl[pick]
    ours = cmc_image_averaged(q, ql, g, gl, max_rank=10, metric=metric)
    ref = cmc(q, ql, g, gl, max_rank=10, metric=metric)
    assert ours.mean[0] == pytest.approx(ref.mean[0], abs=1e-12)
    np.testing.assert_allclose(ours.mean, ref.mean, atol=1e-12)
    np.testing.assert_allclose(ours.ci_low, ref.ci_low, atol=1e-12)
    np.testing.assert_allclose(ours.ci_high, ref.ci_high, atol=1e-12)
    assert 0.1 < ours.mean[0] < 0.95


# --------------------------------------------------------------------------- cmc_k_shot


def _k_shot_data(seed: int, n_classes: int = 6, d: int = 5):
    rng = np.random.default_rng(seed)
    cat_labels = np.arange(n_classes) * 10 + 3
    cat = rng.normal(size=(n_classes, d))
    counts = rng.integers(3, 7, size=n_classes)  # 3-6 photos per class
    photo_labels = np.repeat(cat_labels, counts)
    owner = np.repeat(np.arange(n_classes), counts)
    photos = cat[owner] + rng.normal(size=(len(owner), d)) * 1.0
    # shuffle so that a class's photos are not contiguous
    order = rng.permutation(len(owner))
    return photos[order], photo_labels[order], cat, cat_labels


def test_k_shot_zero_shots_equals_image_averaged():
    photos, pl, cat, cl = _k_shot_data(0)
    res = cmc_k_shot(photos, pl, cat, cl, shots=0, max_rank=4, n_draws=5, seed=3)
    ref = cmc_image_averaged(photos, pl, cat, cl, max_rank=4)
    assert res.per_draw.shape == (5, 4)
    for row in res.per_draw:
        np.testing.assert_allclose(row, ref.mean, atol=1e-12)
    np.testing.assert_allclose(res.mean, ref.mean, atol=1e-12)
    assert res.n_queries == len(photos) and res.n_draws == 5


def _brute_k_shot(photos, pl, cat, cl, shots, max_rank, n_draws, seed, metric):
    # mirrors the documented draw: per draw, for each class in sorted order, a random permutation
    # of its photo indices (ascending) from one default_rng(seed); the first `shots` are enrolled
    rng = np.random.default_rng(seed)
    classes = sorted(set(int(v) for v in pl))
    rows = []
    for _ in range(n_draws):
        enrolled: list[int] = []
        for c in classes:
            idx = [i for i in range(len(pl)) if pl[i] == c]
            enrolled += [int(i) for i in rng.permutation(np.array(idx))[:shots]]
        queries = [i for i in range(len(pl)) if i not in set(enrolled)]
        g = np.concatenate([cat, photos[enrolled]])
        gl = np.concatenate([cl, pl[enrolled]])
        ranks = _brute_class_ranks(photos[queries], pl[queries], g, gl, metric)
        rows.append([sum(1 for r in ranks if 1 <= r <= k) / len(ranks) for k in range(1, max_rank + 1)])
    return np.array(rows), len(queries)


@pytest.mark.parametrize("shots", [1, 2])
@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_k_shot_matches_brute_force_draws(shots, metric):
    photos, pl, cat, cl = _k_shot_data(1)
    res = cmc_k_shot(photos, pl, cat, cl, shots=shots, max_rank=5, n_draws=6, seed=42, metric=metric)
    per_draw, n_queries = _brute_k_shot(photos, pl, cat, cl, shots, 5, 6, 42, metric)
    np.testing.assert_allclose(res.per_draw, per_draw, atol=1e-12)
    np.testing.assert_allclose(res.mean, per_draw.mean(axis=0), atol=1e-12)
    np.testing.assert_allclose(res.ci_low, np.percentile(per_draw, 2.5, axis=0), atol=1e-12)
    np.testing.assert_allclose(res.ci_high, np.percentile(per_draw, 97.5, axis=0), atol=1e-12)
    assert n_queries == len(photos) - shots * len(cl)
    assert res.n_queries == n_queries


def test_k_shot_invariants():
    photos, pl, cat, cl = _k_shot_data(2)
    n, c = len(photos), len(cl)
    res = cmc_k_shot(photos, pl, cat, cl, shots=2, max_rank=6, n_draws=15, seed=5)
    assert res.n_queries == n - 2 * c
    assert res.n_draws == 15 and res.per_draw.shape == (15, 6)
    np.testing.assert_array_equal(res.ranks, np.arange(1, 7))
    assert np.all((res.per_draw >= 0) & (res.per_draw <= 1))
    assert np.all(np.diff(res.per_draw, axis=1) >= 0)  # CMC non-decreasing in rank
    # every per-draw value is a count over the n − 2c queries
    counts = res.per_draw * res.n_queries
    np.testing.assert_allclose(counts, np.round(counts), atol=1e-9)
    assert np.all(res.ci_low <= res.mean + 1e-12) and np.all(res.mean <= res.ci_high + 1e-12)
    again = cmc_k_shot(photos, pl, cat, cl, shots=2, max_rank=6, n_draws=15, seed=5)
    np.testing.assert_array_equal(again.per_draw, res.per_draw)
    other = cmc_k_shot(photos, pl, cat, cl, shots=2, max_rank=6, n_draws=15, seed=6)
    assert not np.array_equal(other.per_draw, res.per_draw)
    # the draws really vary (otherwise the interval would be meaningless)
    assert len({tuple(row) for row in res.per_draw}) > 1


def test_k_shot_enrolling_a_duplicate_photo_makes_rank_one_certain():
    # classes k = 0..C−1; catalogue image of class k is e_k; both photos of class k are
    # e_{(k+1) mod C} + 0.1 e_{C+k} (identical). With the catalogue alone a photo's nearest class is
    # k+1 (cos 0.995) and its own class is at cos 0 → rank-1 = 0. With one shot the other photo, at
    # distance 0, joins the gallery and no other class's item is at distance 0 → rank-1 = 1.
    c = 5
    d = 2 * c
    eye = np.eye(d)
    cat = eye[:c]
    cat_labels = np.arange(c)
    one = np.array([eye[(k + 1) % c] + 0.1 * eye[c + k] for k in range(c)])
    photos = np.concatenate([one, one])
    labels = np.concatenate([cat_labels, cat_labels])
    for metric in ("cosine", "l2"):
        zero = cmc_k_shot(photos, labels, cat, cat_labels, shots=0, max_rank=2, n_draws=3, metric=metric)
        assert zero.mean[0] == 0.0
        shot = cmc_k_shot(photos, labels, cat, cat_labels, shots=1, max_rank=2, n_draws=4, seed=1, metric=metric)
        assert shot.n_queries == c
        np.testing.assert_array_equal(shot.per_draw[:, 0], 1.0)
        assert shot.mean[0] == 1.0 and shot.ci_low[0] == 1.0


def test_k_shot_errors():
    photos, pl, cat, cl = _k_shot_data(3)
    smallest = int(np.unique(pl, return_counts=True)[1].min())
    with pytest.raises(ValueError, match="nothing is left"):
        cmc_k_shot(photos, pl, cat, cl, shots=smallest)  # a class with exactly `shots` photos
    with pytest.raises(ValueError, match="nothing is left"):
        cmc_k_shot(photos, pl, cat, cl, shots=smallest + 1)
    cmc_k_shot(photos, pl, cat, cl, shots=smallest - 1, n_draws=1)  # one query left per class: fine
    with pytest.raises(ValueError, match="catalogue"):
        cmc_k_shot(photos, pl, cat[1:], cl[1:], shots=1)  # the first class lacks a catalogue image
    with pytest.raises(ValueError):
        cmc_k_shot(photos, pl, cat, cl, shots=-1)
    with pytest.raises(ValueError):
        cmc_k_shot(photos, pl, cat, cl, shots=1, n_draws=0)
