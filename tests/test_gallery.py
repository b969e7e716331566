"""Gallery (SQLite + FAISS) in one process, with random vectors (no TensorFlow)."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from itemrec.gallery import (
    FaissIndex,
    Gallery,
    GalleryError,
    GalleryMismatchError,
    ItemNotFoundError,
    choose_threshold,
)
from itemrec.gallery.gallery import DB_NAME
from itemrec.gallery.sync import INDEX_NAME

DIM = 16


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def reference_topk(query: np.ndarray, item_vecs: dict[str, np.ndarray], k: int, mode: str) -> list[list[tuple[str, float]]]:
    """Slow reference: score every item by max (each) or prototype (mean) cosine, sort."""
    out = []
    for q in unit(query):
        scored = []
        for item, vecs in item_vecs.items():
            v = unit(vecs)
            if mode == "each":
                s = max(float(q @ row) for row in v)
            else:
                s = float(q @ unit(v.mean(0)))
            scored.append((item, s))
        scored.sort(key=lambda t: -t[1])
        out.append(scored[:k])
    return out


@pytest.fixture
def vectors():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(12, DIM))
    return {f"sku-{i}": centres[i] + 0.3 * rng.normal(size=(3, DIM)) for i in range(12)}


@pytest.mark.parametrize("mode", ["each", "mean"])
def test_query_matches_numpy_reference(tmp_path, vectors, mode):
    g = Gallery.create(tmp_path / "g", "fp-test", dim=DIM, prototype=mode)
    for item, v in vectors.items():
        g.enroll(item, item.upper(), vectors=v, attributes={"n": len(v)})
    rng = np.random.default_rng(1)
    queries = rng.normal(size=(7, DIM))
    results = g.query(vectors=queries, k=4)
    ref = reference_topk(queries, vectors, 4, mode)
    for res, exp in zip(results, ref):
        assert [m.item_id for m in res.matches] == [e[0] for e in exp]
        np.testing.assert_allclose([m.similarity for m in res.matches], [e[1] for e in exp], atol=1e-5)
        assert res.matches[0].name == res.matches[0].item_id.upper()
        assert res.matches[0].attributes == {"n": 3}
        assert not res.unknown  # no threshold set
    assert g.ntotal == (36 if mode == "each" else 12)
    assert len(g) == 12
    g.close()


def test_enroll_more_images_updates_mean_prototype(tmp_path):
    g = Gallery.create(tmp_path / "g", "fp", dim=4, prototype="mean")
    g.enroll("a", "A", vectors=[[1, 0, 0, 0]])
    g.enroll("b", "B", vectors=[[0, 0, 1, 0]])
    g.enroll("a", vectors=[[0, 1, 0, 0]])  # prototype of a: mean of e1, e2 -> (1,1,0,0)/sqrt2
    (res,) = g.query(vectors=[[1, 0, 0, 0]], k=2)
    assert res.matches[0].item_id == "a"
    assert res.matches[0].similarity == pytest.approx(1 / np.sqrt(2), abs=1e-6)  # (1,0,0,0).(1,1,0,0)/sqrt2
    assert res.matches[1].similarity == pytest.approx(0.0, abs=1e-6)
    assert g.ntotal == 2 and g.check().ok
    assert g.items().set_index("item_id").loc["a", "n_vectors"] == 2


def test_remove_and_reopen_round_trip(tmp_path, vectors):
    g = Gallery.create(tmp_path / "g", "fp-test", dim=DIM)
    for item, v in vectors.items():
        g.enroll(item, item, vectors=v)
    assert g.remove("sku-3") == 3
    with pytest.raises(ItemNotFoundError, match="sku-3"):
        g.remove("sku-3")
    g.close()
    g = Gallery.open(tmp_path / "g")
    assert not g.rebuilt  # index file was current
    assert g.ntotal == 33 and len(g) == 11
    (res,) = g.query(vectors=vectors["sku-3"][:1], k=11)
    assert "sku-3" not in [m.item_id for m in res.matches]
    (res,) = g.query(vectors=vectors["sku-5"][:1], k=1)
    assert res.item_id == "sku-5" and res.matches[0].similarity == pytest.approx(1.0, abs=1e-5)
    assert g.check().ok


def test_threshold_rejects_unknown_item(tmp_path):
    g = Gallery.create(tmp_path / "g", "fp", dim=3, threshold=0.8)
    g.enroll("x", "X", vectors=[[1, 0, 0]])
    g.enroll("y", "Y", vectors=[[0, 1, 0]])
    known, unknown = g.query(vectors=[[0.9, 0.1, 0.0], [0.1, 0.1, 1.0]], k=2)
    # known: cos = 0.9/sqrt(0.82) = 0.9939 >= 0.8 -> "x"
    assert known.item_id == "x" and not known.unknown
    # unknown: best cos = 0.1/sqrt(1.02) = 0.0990 < 0.8 -> unknown, matches still listed
    assert unknown.unknown and unknown.item_id is None
    assert unknown.matches[0].similarity == pytest.approx(0.1 / np.sqrt(1.02), abs=1e-6)


def test_choose_threshold_hand_worked():
    s = np.array([0.9, 0.5, 0.7, 0.3, 0.8, 0.1, 0.6, 0.2, 0.4, 0.0], np.float32)
    # n = 10, target 0.2 -> m = 2 accepts allowed; sorted desc 0.9, 0.8, | 0.7 ... -> t = (0.8 + 0.7) / 2
    t = choose_threshold(s, 0.2)
    assert t == (float(np.float32(0.8)) + float(np.float32(0.7))) / 2 and t == pytest.approx(0.75)
    assert int((s >= t).sum()) == 2
    # target 0.05 -> m = 0: reject even the best one (t = the next float32 above 0.9)
    t0 = choose_threshold(s, 0.05)
    assert t0 == float(np.nextafter(np.float32(0.9), np.float32(np.inf))) and int((s >= t0).sum()) == 0
    # a tie at the boundary is never split: 0.8 twice, m = 2 would split {0.8, 0.8, 0.8} -> only 0.9 accepted
    tied = np.array([0.9, 0.8, 0.8, 0.8, 0.1], np.float32)
    t_tie = choose_threshold(tied, 0.4)  # m = 2, s_(2) = s_(3) = 0.8 -> t just above 0.8
    assert t_tie == float(np.nextafter(np.float32(0.8), np.float32(np.inf))) and int((tied >= t_tie).sum()) == 1
    assert choose_threshold(s, 1.0) == -1.0
    with pytest.raises(ValueError):
        choose_threshold(np.zeros(0), 0.1)


def test_calibrate_hand_worked(tmp_path):
    g = Gallery.create(tmp_path / "g", "fp", dim=3)
    g.enroll("a", "A", vectors=[[1, 0, 0]])
    g.enroll("b", "B", vectors=[[0, 1, 0]])
    c30, s30 = np.cos(np.pi / 6), np.sin(np.pi / 6)
    val = np.array(
        [
            [c30, 0, s30],  # item a: sim to a = cos30 = .866 (mated, right); other item b: 0
            [0, 0.6, 0.8],  # item b: sim to b = .6 (mated, right); other item a: 0
            [0.5, 0, 0.866025],  # item z (not enrolled): best = .5 (a)  -> impostor .5
            [0.2, 0, 0.979796],  # item z: best = .2 -> impostor .2
        ]
    )
    cal = g.calibrate(val, ["a", "b", "z", "z"], target_far=0.25)
    # impostor scores: 0 (a's non-mated), 0 (b's), .5, .2 -> sorted .5,.2,0,0; m = floor(.25*4) = 1
    # -> threshold (s_(1) + s_(2)) / 2 = (.5 + .2) / 2 = .35: accepts only .5, far = 1/4
    assert cal.threshold == pytest.approx(0.35, abs=1e-6)
    assert cal.far == 0.25 and cal.n_impostor == 4 and cal.n_mated == 2
    assert cal.dir == 1.0  # .866 and .6 both >= t and right
    g2 = Gallery.open(tmp_path / "g", readonly=True)
    assert g2.threshold == pytest.approx(cal.threshold)
    assert g2.query(vectors=val[3:4])[0].unknown and not g2.query(vectors=val[2:3])[0].unknown


def test_dimension_and_fingerprint_mismatch_refused(tmp_path):
    g = Gallery.create(tmp_path / "g", "model-A", dim=4)
    with pytest.raises(GalleryMismatchError, match=r"\(N, 4\)"):
        g.enroll("a", "A", vectors=np.ones((1, 5)))
    with pytest.raises(GalleryMismatchError, match="model-B"):
        g.enroll("a", "A", vectors=np.ones((1, 4)), fingerprint="model-B")
    g.enroll("a", "A", vectors=np.ones((1, 4)), fingerprint="model-A")
    with pytest.raises(GalleryMismatchError):
        g.query(vectors=np.ones((2, 3)))
    with pytest.raises(GalleryMismatchError, match="model-B"):
        g.query(vectors=np.ones((1, 4)), fingerprint="model-B")

    class FakeEmbedder:  # only the identity matters here
        fingerprint_id = "model-B"

        def fingerprint(self):
            return {"embedding_dim": 4}

    with pytest.raises(GalleryMismatchError, match="fingerprint"):
        Gallery.open(tmp_path / "g", embedder=FakeEmbedder())
    with pytest.raises(GalleryError, match="all zeros"):
        g.enroll("z", "Z", vectors=np.zeros((1, 4)))
    with pytest.raises(GalleryError, match="NaN"):
        g.enroll("z", "Z", vectors=np.full((1, 4), np.nan))
    with pytest.raises(GalleryError, match="already holds"):
        Gallery.create(tmp_path / "g", "model-A", dim=4)
    assert g.check().ok and len(g) == 1


def test_vectors_far_from_unit_length_are_normalised_or_refused(tmp_path):
    g = Gallery.create(tmp_path / "g", "fp", dim=4)
    # (3e20, 4e20): the float32 sum of squares overflows, the float64 norm is 5e20 -> (0.6, 0.8)
    g.enroll("big", "B", vectors=[[3e20, 4e20, 0, 0]])
    g.enroll("tiny", "T", vectors=[[0, 0, 1e-30, 0]])  # 1e-30 / 1e-30 -> (0, 0, 1, 0)
    (res,) = g.query(vectors=[[0.6, 0.8, 0, 0]], k=2)
    assert res.item_id == "big" and res.matches[0].similarity == pytest.approx(1.0, abs=1e-6)
    (res,) = g.query(vectors=[[0, 0, 2, 0]], k=1)
    assert res.item_id == "tiny" and res.matches[0].similarity == pytest.approx(1.0, abs=1e-6)
    for bad in ([np.inf, 0, 0, 0], [1, -np.inf, 0, 0], [1, np.nan, 0, 0]):
        with pytest.raises(GalleryError, match="NaN or infinite"):
            g.query(vectors=[bad])
    with pytest.raises(GalleryError, match=r"row\(s\) \[1\] are all zeros"):
        g.query(vectors=[[1, 0, 0, 0], [0, 0, 0, 0]])


def test_index_rebuilt_when_missing_stale_or_damaged(tmp_path, vectors):
    path = tmp_path / "g"
    g = Gallery.create(path, "fp", dim=DIM)
    items = list(vectors.items())
    for item, v in items[:6]:
        g.enroll(item, item, vectors=v)
    stale = (path / INDEX_NAME).read_bytes()  # index at generation 6
    for item, v in items[6:]:
        g.enroll(item, item, vectors=v)
    g.remove("sku-0")
    g.close()
    (path / INDEX_NAME).write_bytes(stale)  # older file: caught up from the change log
    g = Gallery.open(path)
    assert not g.rebuilt and g.ntotal == 33 and g.check().ok
    g.close()
    (path / INDEX_NAME).write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="unreadable index"):
        g = Gallery.open(path)
    assert g.rebuilt and g.ntotal == 33 and g.check().ok
    g.close()
    (path / INDEX_NAME).unlink()
    g = Gallery.open(path)
    assert g.rebuilt and g.check().ok
    (res,) = g.query(vectors=vectors["sku-7"][1:2], k=1)
    assert res.item_id == "sku-7"


def test_check_detects_tampering(tmp_path, vectors):
    path = tmp_path / "g"
    g = Gallery.create(path, "fp", dim=DIM)
    for item, v in list(vectors.items())[:3]:
        g.enroll(item, item, vectors=v)
    assert g.check().ok
    con = sqlite3.connect(path / DB_NAME)
    con.execute("DELETE FROM vectors WHERE vector_id = 2")  # behind the gallery's back, no change log
    con.commit()
    con.close()
    report = g.check()
    assert not report.ok
    assert report.unknown_in_index == [2] and report.index_ntotal == 9 and report.n_indexed == 8


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_ann_index_recall_and_removal(tmp_path, kind):
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(40, DIM))
    data = unit(centres[rng.integers(0, 40, 2000)] + 0.4 * rng.normal(size=(2000, DIM))).astype(np.float32)
    params = {"min_train": 1000, "nprobe": 8} if kind == "ivf" else {"ef_search": 64}
    g = Gallery.create(tmp_path / kind, "fp", dim=DIM, index=kind, index_params=params)
    g.enroll_many(({"item_id": f"i{i}", "name": "", "vectors": data[i]} for i in range(2000)),
                  commit_every=500, progress=False)
    assert not g.index.is_exact
    queries = unit(rng.normal(size=(50, DIM))).astype(np.float32)
    s, pk = g.search(queries, k=10)
    exact = np.argsort(-(queries @ data.T), axis=1)[:, :10] + 1  # item_pk = enrolment order + 1
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(pk.tolist(), exact.tolist())])
    assert recall >= 0.9, recall
    for i in range(0, 300):
        g.remove(f"i{i}", save=False)  # HNSW: tombstones, rebuilt past 10 %
    g.save()
    s, pk = g.search(data[:300], k=3)
    assert (pk > 300).all()  # removed items never come back
    assert g.ntotal == 1700 and g.check().ok
    g.close()
    g = Gallery.open(tmp_path / kind)
    assert not g.rebuilt and g.ntotal == 1700 and g.check().ok


def test_faiss_index_pads_when_k_exceeds_size():
    idx = FaissIndex(4)
    idx.add(np.array([7, 9]), unit(np.eye(4)[:2]).astype(np.float32))
    s, ids = idx.search(np.eye(4, dtype=np.float32)[:1], 3)
    assert ids.tolist() == [[7, 9, -1]]
    assert s[0, 0] == pytest.approx(1.0) and s[0, 2] == -np.inf
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        idx.add(np.array([1]), np.ones((1, 3), np.float32))


def _unit_rows(x):
    x = np.asarray(x, np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def reference_hubness_topk(query, item_vecs, background, k_bg, beta, k):
    """Slow reference: item score = max over its vectors of cos(q, v) - beta * r(v), with
    r(v) = mean of the k_bg largest cos(v, b) over the background."""
    bg = _unit_rows(background)
    out = []
    for q in _unit_rows(query):
        scored = []
        for item, vecs in item_vecs.items():
            best = -np.inf
            for v in _unit_rows(vecs):
                r = np.mean(sorted(float(v @ b) for b in bg)[-k_bg:])
                best = max(best, float(q @ v) - beta * r)
            scored.append((item, best))
        scored.sort(key=lambda t: -t[1])
        out.append(scored[:k])
    return out


def test_hubness_correction_matches_reference_and_refetches(tmp_path):
    rng = np.random.default_rng(11)
    h = _unit_rows(rng.normal(size=(1, DIM)))[0]
    u = _unit_rows(rng.normal(size=(40, DIM)) - (rng.normal(size=(40, DIM)) @ h)[:, None] * h)
    items = {}
    hubs = h + 0.25 * rng.normal(size=(30, DIM)) / np.sqrt(DIM)  # 10 hub items x 3 vectors, cos(h, .) ~ 0.97
    for i in range(10):
        items[f"hub-{i}"] = hubs[3 * i : 3 * i + 3]
    for i in range(20):  # cos(h, .) = 0.6, away from the background
        items[f"far-{i}"] = (0.6 * h + 0.8 * u[i])[None, :] + 0.05 * rng.normal(size=(1 + i % 2, DIM))
    background = hubs + 0.01 * rng.normal(size=hubs.shape)  # near-copies of the hub vectors: r(hub) ~ 1
    g = Gallery.create(tmp_path / "g", "fp", dim=DIM, threshold=0.5)
    for item, v in items.items():
        g.enroll(item, item, vectors=v)
    assert g.set_background(background, k=3, beta=1.0) == 30
    assert g.threshold is None and g.hubness == {"k": 3, "beta": 1.0, "n_background": 30}
    queries = h + 0.1 * rng.normal(size=(6, DIM))
    ref = reference_hubness_topk(queries, items, background, 3, 1.0, 5)
    got = g.query(vectors=queries, k=5)
    for res, exp in zip(got, ref):
        assert [m.item_id for m in res.matches] == [e[0] for e in exp]
        np.testing.assert_allclose([m.similarity for m in res.matches], [e[1] for e in exp], atol=1e-5)
        assert res.matches[0].item_id.startswith("far-")  # the hubs are ranked down
    # the answer lay beyond the first fetch: the 30 hub vectors fill the raw top max(4k, k + 16) = 21
    raw = _unit_rows(queries) @ _unit_rows(np.concatenate(list(items.values()))).T
    assert (np.argsort(-raw, axis=1)[:, :21] < 30).all()  # rows 0-29 of the concatenation are the hub vectors
    # an item enrolled later gets its offset too; removing one drops it
    g.enroll("late", "L", vectors=0.6 * h + 0.8 * u[30])
    g.remove("far-0")
    items["late"] = (0.6 * h + 0.8 * u[30])[None, :]
    del items["far-0"]
    ref = reference_hubness_topk(queries, items, background, 3, 1.0, 5)
    for res, exp in zip(g.query(vectors=queries, k=5), ref):
        assert [m.item_id for m in res.matches] == [e[0] for e in exp]
    g.close()


def test_background_persists_reaches_other_handles_and_clears(tmp_path, vectors):
    g = Gallery.create(tmp_path / "g", "fp-test", dim=DIM)
    for item, v in vectors.items():
        g.enroll(item, item, vectors=v)
    other = Gallery.open(tmp_path / "g", readonly=True)  # opened before the background exists
    rng = np.random.default_rng(4)
    background = rng.normal(size=(25, DIM))
    queries = rng.normal(size=(5, DIM))
    g.set_background(background, k=4, beta=0.5)
    ref = reference_hubness_topk(queries, vectors, background, 4, 0.5, 3)
    for handle in (g, other):
        for res, exp in zip(handle.query(vectors=queries, k=3), ref):
            assert [m.item_id for m in res.matches] == [e[0] for e in exp]
    g.close()
    g = Gallery.open(tmp_path / "g")
    assert g.hubness == {"k": 4, "beta": 0.5, "n_background": 25} and g.check().ok
    for res, exp in zip(g.query(vectors=queries, k=3), ref):
        np.testing.assert_allclose([m.similarity for m in res.matches], [e[1] for e in exp], atol=1e-5)
    g.clear_background()
    assert g.hubness is None and other.query(vectors=queries[:1], k=1) and other.hubness is None
    plain = reference_topk(queries, vectors, 3, "each")
    for res, exp in zip(g.query(vectors=queries, k=3), plain):
        assert [m.item_id for m in res.matches] == [e[0] for e in exp]
    with pytest.raises(GalleryError, match="k must be"):
        g.set_background(background, k=0)
    with pytest.raises(GalleryMismatchError):
        g.set_background(np.ones((3, DIM + 1)))
    other.close()
    g.close()


def test_calibrate_dir_counts_only_right_top_matches(tmp_path):
    g = Gallery.create(tmp_path / "g", "fp", dim=3)
    g.enroll("a", "A", vectors=[[1, 0, 0]])
    g.enroll("b", "B", vectors=[[0, 1, 0]])
    val = np.array(
        [
            [0.1, 0.95, 0.2958],  # labelled a, but nearest b (.95): mated search WRONG; non-mated (gallery - a): .95
            [0, 0.8, 0.6],  # labelled b: top b .8, right; non-mated (gallery - b): a, 0
            [0.5, 0, 0.866025],  # z, not enrolled: impostor .5
            [0.2, 0, 0.979796],  # z: impostor .2
        ]
    )
    cal = g.calibrate(val, ["a", "b", "z", "z"], target_far=0.25)
    # impostor scores sorted .95, .5, .2, 0; m = floor(.25 * 4) = 1 -> threshold (.95 + .5) / 2 = .725
    assert cal.threshold == pytest.approx(0.725, abs=1e-6) and cal.far == 0.25
    # DIR: the a-query scores .95 >= t but its top item is wrong, so only the b-query (.8, right) counts: 1/2
    assert cal.n_mated == 2 and cal.dir == pytest.approx(0.5)
