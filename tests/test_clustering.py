"""itemrec.clustering: HDBSCAN + OPTICS-on-noise, its edge cases, and the scores."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from itemrec.clustering import (
    cluster_embeddings,
    clustering_scores,
    cosine_distances,
    l2_normalize,
    noise_as_singletons,
)


def blobs(centers: np.ndarray, per: int, std: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = np.concatenate([c + std * rng.normal(size=(per, centers.shape[1])) for c in centers])
    return x, np.repeat(np.arange(len(centers)), per)


def test_well_separated_blobs_recovered_exactly_cosine():
    # Five orthogonal directions in 16-D: cosine distance 1 between groups, ~0.01 within.
    centers = 10.0 * np.eye(16)[:5]
    x, y = blobs(centers, per=8, std=0.3)
    res = cluster_embeddings(x)
    assert adjusted_rand_score(y, res.labels) == 1.0
    assert res.n_clusters == 5 and res.n_noise == 0
    assert res.n_clusters == res.n_hdbscan_clusters + res.n_optics_clusters
    assert set(res.labels.tolist()) == set(range(5))
    assert res.cluster_sizes() == {k: 8 for k in range(5)}


def test_well_separated_blobs_euclidean():
    centers = np.array([[0.0, 0.0], [20.0, 0.0], [0.0, 20.0], [20.0, 20.0]])
    x, y = blobs(centers, per=10, std=0.5, seed=1)
    res = cluster_embeddings(x, min_cluster_size=4, metric="l2")
    assert adjusted_rand_score(y, res.labels) == 1.0


def test_cosine_is_scale_invariant_and_agrees_with_exact_cosine():
    centers = 10.0 * np.eye(8)[:4]
    x, y = blobs(centers, per=6, std=0.4, seed=2)
    scales = np.random.default_rng(3).uniform(0.1, 50.0, size=(len(x), 1))
    a = cluster_embeddings(x).labels
    b = cluster_embeddings(x * scales).labels  # cosine ignores each row's length
    assert adjusted_rand_score(y, a) == 1.0
    assert (a == b).all()
    # The precomputed 1 - cos matrix gives the same partition on other blobs; on the seed=2 ones
    # above it splits one blob (the stability difference the module docstring describes).
    x, y = blobs(centers, per=6, std=0.4, seed=3)
    assert adjusted_rand_score(y, cluster_embeddings(x, metric="cosine", precomputed=True).labels) == 1.0
    assert adjusted_rand_score(y, cluster_embeddings(x).labels) == 1.0


def test_distances_are_named_as_in_itemrec_distances_and_older_names_warn():
    from itemrec.distances import CosineDistance, L2Distance

    centers = 10.0 * np.eye(8)[:4]
    x, _ = blobs(centers, per=6, std=0.4, seed=3)
    for old, new, pre in (("euclidean", L2Distance(), False), ("cosine_exact", CosineDistance(), True)):
        with pytest.warns(FutureWarning, match=f'older spelling of metric="{new.name}"'):
            a = cluster_embeddings(x, metric=old)
        b = cluster_embeddings(x, metric={"class_name": type(new).__name__, "config": {}}, precomputed=pre)
        assert (a.labels == b.labels).all() and a.params == b.params
        assert b.params["metric"] == new.name and b.params["precomputed"] is pre
    # the l2 matrix given precomputed clusters as the rows do (sklearn's euclidean either way)
    assert (cluster_embeddings(x, metric="l2", precomputed=True).labels == cluster_embeddings(x, metric="l2").labels).all()
    with pytest.raises(ValueError, match="orders neighbours like 'l2'"):
        cluster_embeddings(x, metric="squared_l2")


def test_chordal_distance_identity():
    # |a/|a| - b/|b||^2 = 2 (1 - cos(a, b)): the equivalence the "cosine" metric rests on.
    x = np.random.default_rng(7).normal(size=(5, 6))
    u = l2_normalize(x)
    d = cosine_distances(x)
    for i in range(5):
        for j in range(5):
            assert np.sum((u[i] - u[j]) ** 2) == pytest.approx(2.0 * d[i, j], abs=1e-12)


def test_cosine_distances_against_loop():
    x = np.random.default_rng(4).normal(size=(6, 5))
    d = cosine_distances(x)
    for i in range(6):
        for j in range(6):
            ref = 0.0 if i == j else 1.0 - x[i] @ x[j] / (np.linalg.norm(x[i]) * np.linalg.norm(x[j]))
            assert d[i, j] == pytest.approx(ref, abs=1e-12)


def merge_data() -> np.ndarray:
    rng = np.random.default_rng(0)
    big = [np.array(m) + 0.1 * rng.normal(size=(10, 2)) for m in [(0, 0), (10, 0), (0, 10)]]
    pairs = [np.array(m) + 0.01 * rng.normal(size=(2, 2)) for m in [(50, 50), (-50, 50)]]
    lone = [np.array([[200.0, -200.0]])]
    return np.concatenate(big + pairs + lone)


def test_optics_recovers_pairs_from_hdbscan_noise_without_id_collision():
    x = merge_data()  # 30 points in 3 blobs, then 2 tight pairs (30,31), (32,33), then one outlier (34)
    res = cluster_embeddings(x, min_cluster_size=4, metric="l2")
    hdb = res.hdbscan_labels
    # HDBSCAN with min_cluster_size=4 cannot make a cluster of a pair: the pairs and the outlier are noise.
    assert res.n_hdbscan_clusters == 3
    assert (hdb[:30] >= 0).all() and (hdb[30:] == -1).all()
    # OPTICS (min_samples=2) turns each pair into a cluster with ids after HDBSCAN's.
    assert res.labels[30] == res.labels[31] and res.labels[32] == res.labels[33]
    assert res.labels[30] != res.labels[32]
    assert {res.labels[30], res.labels[32]} == {3, 4}
    assert not set(res.labels[30:34].tolist()) & set(hdb[:30].tolist())
    # OPTICS only relabels HDBSCAN noise; HDBSCAN's labels are kept as they were.
    assert (res.labels[:30] == hdb[:30]).all()
    assert res.from_optics.tolist() == [False] * 30 + [True] * 4 + [False]
    assert res.labels[34] == -1 and res.n_noise == 1
    assert res.n_clusters == 5 and res.n_optics_clusters == 2

    off = cluster_embeddings(x, min_cluster_size=4, metric="l2", optics_on_noise=False)
    assert (off.labels == hdb).all() and off.n_clusters == 3 and not off.from_optics.any()


def test_n_zero_and_n_one():
    empty = cluster_embeddings(np.zeros((0, 4)))
    assert empty.labels.shape == (0,) and empty.n_clusters == 0 and empty.n_noise == 0
    one = cluster_embeddings(np.ones((1, 4)))
    assert one.labels.tolist() == [-1] and one.n_clusters == 0 and not one.from_optics.any()


def test_fewer_points_than_min_cluster_size():
    # 3 points, min_cluster_size=5: HDBSCAN is skipped (all noise); OPTICS then groups the two close ones.
    x = np.array([[1.0, 0.0], [1.0, 0.01], [0.0, 1.0]])
    res = cluster_embeddings(x, min_cluster_size=5, metric="l2", optics_max_eps=0.5)
    assert res.n_hdbscan_clusters == 0 and (res.hdbscan_labels == -1).all()
    assert res.labels.tolist() == [0, 0, -1]
    # Without the second stage everything stays noise.
    res = cluster_embeddings(x, min_cluster_size=5, metric="l2", optics_on_noise=False)
    assert res.labels.tolist() == [-1, -1, -1] and res.n_clusters == 0


def test_no_noise_left_skips_optics():
    x, _ = blobs(10.0 * np.eye(4)[:2], per=5, std=0.1, seed=5)
    res = cluster_embeddings(x)
    assert res.n_noise == 0 and not res.from_optics.any() and res.n_optics_clusters == 0


def test_one_point_of_noise_stays_noise():
    x = np.concatenate([merge_data()[:30], [[200.0, -200.0]]])
    res = cluster_embeddings(x, min_cluster_size=4, metric="l2")
    assert res.n_clusters == 3 and res.labels[30] == -1 and res.n_noise == 1
    assert not res.from_optics.any()  # one noise point < optics_min_samples=2: OPTICS not run


def test_all_noise_goes_to_optics():
    # Two far-apart pairs: min_cluster_size=3 leaves all four as HDBSCAN noise.
    x = np.array([[0.0, 0.0], [0.0, 0.01], [10.0, 10.0], [10.0, 10.01]])
    res = cluster_embeddings(x, min_cluster_size=3, metric="l2")
    assert (res.hdbscan_labels == -1).all()
    assert res.from_optics.all()
    assert res.labels[0] == res.labels[1] != res.labels[2] == res.labels[3]
    assert res.n_clusters == 2


def test_single_cluster():
    # Ten equally spaced points: with min_samples=2 every mutual reachability edge is 1, so the
    # hierarchy is one merge; allow_single_cluster lets HDBSCAN return that one cluster.
    x = np.arange(10.0)[:, None] * np.array([[1.0, 0.0]])
    res = cluster_embeddings(x, min_cluster_size=3, min_samples=2, metric="l2", allow_single_cluster=True)
    assert res.labels.tolist() == [0] * 10 and res.n_clusters == 1 and res.n_hdbscan_clusters == 1
    assert not res.from_optics.any()


def test_duplicate_points():
    # Exact duplicates: two groups of identical points, and a set of one point repeated.
    x = np.concatenate([np.tile([1.0, 0.0, 0.0], (5, 1)), np.tile([0.0, 1.0, 0.0], (5, 1))])
    res = cluster_embeddings(x)
    assert adjusted_rand_score(np.repeat([0, 1], 5), res.labels) == 1.0
    same = cluster_embeddings(np.tile([0.3, 0.4, 0.5], (6, 1)))
    assert same.labels.tolist() == [0] * 6 and same.n_clusters == 1
    same_e = cluster_embeddings(np.tile([0.3, 0.4, 0.5], (6, 1)), metric="l2")
    assert same_e.labels.tolist() == [0] * 6


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="2-D"):
        cluster_embeddings(np.zeros(5))
    with pytest.raises(ValueError, match=r"rows \[1\].*NaN"):
        cluster_embeddings(np.array([[1.0, 0.0], [np.nan, 1.0], [0.0, 1.0]]))
    with pytest.raises(ValueError, match=r"rows \[2\] have zero norm"):
        cluster_embeddings(np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]))
    with pytest.raises(ValueError, match="metric"):
        cluster_embeddings(np.ones((3, 2)), metric="manhattan")
    with pytest.raises(ValueError, match="min_cluster_size"):
        cluster_embeddings(np.ones((3, 2)), min_cluster_size=1)


def test_noise_as_singletons():
    assert noise_as_singletons(np.array([0, -1, 1, -1])).tolist() == [0, 2, 1, 3]
    assert noise_as_singletons(np.array([-1, -1])).tolist() == [0, 1]


def test_scores_hand_worked():
    true = np.array([0, 0, 1, 1, 2])
    pred = np.array([0, 0, 1, -1, -1])
    # Noise as singletons: clusters {0,1} {2} {3} {4}.
    # Pair counts: sum_ij C(n_ij,2) = C(2,2) = 1; clusters sum C(a_i,2) = 1; classes sum C(b_j,2) = 1 + 1 = 2;
    # expected = 1 * 2 / C(5,2) = 0.2; max = (1 + 2) / 2 = 1.5; ARI = (1 - 0.2) / (1.5 - 0.2) = 0.8 / 1.3.
    # Purity = (2 + 1 + 1 + 1) / 5 = 1.
    s = clustering_scores(true, pred)
    assert s.ari == pytest.approx(0.8 / 1.3)
    assert s.purity == pytest.approx(1.0)
    assert (s.n_clusters, s.n_true_classes, s.n_noise) == (2, 3, 2)
    # Noise as one cluster: {0,1} {2} {3,4}. index = 1; clusters sum = 1 + 0 + 1 = 2; classes sum = 2;
    # expected = 2 * 2 / 10 = 0.4; max = 2; ARI = (1 - 0.4) / (2 - 0.4) = 0.375. Purity = (2 + 1 + 1) / 5 = 0.8.
    s = clustering_scores(true, pred, noise="cluster")
    assert s.ari == pytest.approx(0.375)
    assert s.purity == pytest.approx(0.8)
    # NMI of a perfect clustering is 1 whatever the ids.
    assert clustering_scores(true, np.array([5, 5, 7, 7, 9])).nmi == pytest.approx(1.0)
    with pytest.raises(ValueError, match="equal in length"):
        clustering_scores(true, pred[:3])
