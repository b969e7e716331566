"""The parts a Gallery is composed of, each on its own: store, synchroniser, inputs, enroller,
hubness correction, recognizer (random vectors, no TensorFlow)."""

from __future__ import annotations

import numpy as np
import pytest

from itemrec.embedded import EmbeddedSet
from itemrec.gallery import (
    Enroller,
    Gallery,
    GalleryError,
    GalleryMismatchError,
    HubnessCorrection,
    ItemNotFoundError,
    MetadataStore,
    Recognizer,
    Synchroniser,
    VectorInputs,
)
from itemrec.gallery.folder import DB_NAME, create_store
from itemrec.gallery.sync import INDEX_NAME

DIM = 4


def unit(x):
    x = np.asarray(x, np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def parts(store, prototype="each", embedder=None):
    """The parts wired as Gallery wires them."""
    sync = Synchroniser(store)
    inputs = VectorInputs(DIM, "fp", embedder)
    hub = HubnessCorrection(store, sync, inputs)
    return sync, inputs, Enroller(store, sync, inputs, prototype), hub, Recognizer(store, sync, hub, inputs, prototype)


@pytest.fixture
def store(tmp_path):
    s = create_store(tmp_path / "g", "fp", dim=DIM)
    yield s
    s.close()


# -- MetadataStore ---------------------------------------------------------------------------
def test_store_transactions_generation_and_counts(store, tmp_path):
    assert store.generation() == 0 and store.meta()["dim"] == DIM
    with store.write() as cur:
        assert store.bump_generation(cur) == 1
        cur.execute("INSERT INTO items(item_id, name, created_at) VALUES ('a', 'A', 't')")
    with pytest.raises(RuntimeError, match="boom"):
        with store.write() as cur:
            store.bump_generation(cur)
            cur.execute("INSERT INTO items(item_id, name, created_at) VALUES ('b', 'B', 't')")
            raise RuntimeError("boom")
    assert store.generation() == 1 and store.count_items() == 1  # rolled back
    ids = [f"x{i}" for i in range(2000)] + ["a"]  # more than one 900-id chunk
    assert store.existing_item_ids(ids) == {"a"}
    assert store.item_rows(indexed=True) == [("a", "A", "{}", "t", 0)]
    counts = store.consistency_counts(DIM)
    assert counts["n_items"] == 1 and counts["empty_items"] == 1 and counts["orphans"] == 0
    assert counts["generation"] == 1 and len(counts["vector_ids"]) == 0
    ro = MetadataStore(tmp_path / "g" / DB_NAME, readonly=True)
    with pytest.raises(PermissionError):
        with ro.write():
            pass
    assert ro.count_items() == 1
    ro.close()
    with pytest.raises(FileExistsError):
        store.create_schema({"dim": DIM})


# -- Synchroniser ------------------------------------------------------------------------------
def test_synchroniser_catches_up_with_another_handle_and_maps_ids(store, tmp_path):
    sync, _, enroller, _, _ = parts(store)
    other_store = MetadataStore(tmp_path / "g" / DB_NAME)
    other = Synchroniser.load(other_store)
    assert other.rebuilt and other.generation == 0 and other.index.ntotal == 0
    rng = np.random.default_rng(0)
    vecs = {i: rng.normal(size=(i + 1, DIM)) for i in range(4)}  # item i has i + 1 vectors
    for i, v in vecs.items():
        enroller.commit([enroller.entry(f"i{i}", vectors=v)])
    enroller.remove("i1")  # a gap in the vector ids: 2, 3 removed
    assert sync.vector_ids.tolist() == [1, 4, 5, 6, 7, 8, 9, 10] and sync.generation == 5
    assert other.refresh() and not other.refresh()
    assert other.generation == 5 and other.vector_ids.tolist() == sync.vector_ids.tolist()
    assert other.item_pks.tolist() == [1, 3, 3, 3, 4, 4, 4, 4]
    pos, found = other.positions(np.array([[4, 2, -1, 10]]))
    assert found.tolist() == [[True, False, False, True]] and pos[0, [0, 3]].tolist() == [1, 7]
    assert other.pks_of(np.array([1, 3, 9, 99])).tolist() == [1, -1, 4, -1]
    assert not other.one_vector_per_item()
    # the vectors held are the stored unit vectors
    scores, ids = other.index.search(unit(vecs[3][:1]).astype(np.float32), 1)
    assert ids[0, 0] == 7 and scores[0, 0] == pytest.approx(1.0, abs=1e-5)
    assert other.check().ok and sync.check().ok
    other_store.close()


def test_synchroniser_save_policy_and_reload(store, tmp_path):
    sync, _, enroller, _, _ = parts(store)
    sync.save()
    sync.save_min_changes, sync.save_fraction = 3, 0.0
    enroller.commit([enroller.entry("a", vectors=np.ones((2, DIM)))])
    assert sync.unsaved == 2 and not sync.maybe_save() and sync.dirty
    enroller.commit([enroller.entry("b", vectors=-np.ones((1, DIM)))])
    assert sync.maybe_save() and sync.unsaved == 0 and sync.index_file_generation == 2 and not sync.dirty
    enroller.commit([enroller.entry("c", vectors=np.eye(DIM)[:1])])  # not saved: caught up from the log
    again = Synchroniser.load(store)
    assert not again.rebuilt and again.generation == 3 and again.index_file_generation == 3
    assert again.vector_ids.tolist() == [1, 2, 3, 4] and again.check().ok
    (tmp_path / "g" / INDEX_NAME).write_bytes(b"junk")
    with pytest.warns(UserWarning, match="unreadable index"):
        rebuilt = Synchroniser.load(store)
    assert rebuilt.rebuilt and rebuilt.item_pks.tolist() == [1, 1, 2, 3]


def test_synchroniser_check_reports_an_index_out_of_step(store):
    sync, _, enroller, _, _ = parts(store)
    enroller.commit([enroller.entry("a", vectors=np.ones((2, DIM)))])
    sync.index.remove(np.array([2]))  # behind the synchroniser's back
    report = sync.check()
    assert not report.ok and report.missing_from_index == [2] and report.index_ntotal == 1 and report.n_indexed == 2


# -- VectorInputs ------------------------------------------------------------------------------
class ListEmbedder:
    """A stand-in model: file ``"bad..."`` is unreadable, any other maps to a fixed vector."""

    fingerprint_id = "fp"

    def fingerprint(self):
        return {"embedding_dim": DIM}

    def embed(self, paths, labels=None):
        keep = [i for i, p in enumerate(paths) if not p.startswith("bad")]
        vecs = np.array([[len(paths[i]), 1, 0, 0] for i in keep], np.float32).reshape(-1, DIM)
        return EmbeddedSet.from_kept(vecs, keep, paths, labels, [(p, "unreadable") for p in paths if p.startswith("bad")])

    def embed_arrays(self, images):
        return np.asarray(images, np.float32).reshape(len(images), -1)[:, :DIM] + 1


def test_inputs_guess_the_kind_and_keep_sources_aligned():
    inputs = VectorInputs(DIM, "fp")
    x, sources, skipped = inputs.vectors([[3, 4, 0, 0]], None, None, None, None, "q")
    np.testing.assert_allclose(x, [[0.6, 0.8, 0, 0]])
    assert sources == [None] and skipped == []
    with pytest.raises(GalleryError, match="exactly one"):
        inputs.vectors(None, None, ["a"], np.ones((1, DIM)), None, "q")
    with pytest.raises(GalleryError, match="need an embedding model"):
        inputs.vectors(["a.jpg"], None, None, None, None, "q")
    with pytest.raises(GalleryMismatchError, match="model other"):
        inputs.vectors(None, None, None, np.ones((1, DIM)), "other", "q")
    inputs.attach(ListEmbedder())
    x, sources, skipped = inputs.vectors(["ab", "bad1", "abcd"], None, None, None, None, "q")
    assert sources == ["ab", "abcd"] and skipped == [("bad1", "unreadable")]
    np.testing.assert_allclose(x, unit([[2, 1, 0, 0], [4, 1, 0, 0]]), atol=1e-6)
    with pytest.raises(GalleryError, match="none of the 1 images"):
        inputs.vectors("bad", None, None, None, None, "q")
    x, _, _ = inputs.vectors(np.zeros((2, 2, 2, 3), np.uint8), None, None, None, None, "q")
    np.testing.assert_allclose(x, np.full((2, DIM), 0.5))
    other = ListEmbedder()
    other.fingerprint_id = "fp2"
    with pytest.raises(GalleryMismatchError, match="fp2 differs"):
        VectorInputs(DIM, "fp", other)


# -- Enroller ----------------------------------------------------------------------------------
def test_enroller_mean_mode_replaces_the_prototype(store):
    with store.write() as cur:
        store.set_meta(cur, prototype="mean")
    sync, _, enroller, _, _ = parts(store, "mean")
    (r,) = enroller.commit([enroller.entry("a", vectors=[[1, 0, 0, 0]], name="A", attributes={"k": 1})])
    assert r.n_vectors == 1 and r.generation == 1
    enroller.commit([enroller.entry("a", vectors=[[0, 1, 0, 0]])])  # name and attributes kept
    # images are vectors 1 and 3; prototype 2 (of one image) was replaced by 4 (mean of both)
    assert sync.index.ntotal == 1 and sync.vector_ids.tolist() == [4]
    s, ids = sync.index.search(np.array([[1, 0, 0, 0]], np.float32), 1)
    assert ids[0, 0] == 4 and s[0, 0] == pytest.approx(1 / np.sqrt(2), abs=1e-6)
    assert store.items_by_pk([1]) == {1: ("a", "A", '{"k": 1}')}
    with store.read() as cur:
        _, removed_pks = store.removed_since(cur, 0)
    assert removed_pks.tolist() == [1]
    assert enroller.remove("a") == 3  # two images and the prototype
    assert sync.index.ntotal == 0 and sync.check().ok
    with pytest.raises(ItemNotFoundError, match="'a'"):
        enroller.remove("a")
    with pytest.raises(GalleryError, match="nothing to enrol"):
        enroller.entry("z", vectors=np.zeros((0, DIM)))
    with pytest.raises(GalleryError, match="unknown prototype"):
        Enroller(store, sync, VectorInputs(DIM, "fp"), "median")


def test_enroller_bulk_acknowledges_each_commit(store):
    sync, _, enroller, _, _ = parts(store)
    acks = []
    entries = [{"item_id": f"i{i}", "name": "n", "vectors": np.eye(DIM)[i % DIM]} for i in range(5)]
    results = enroller.enroll_many(entries + [("t", "T", np.ones((2, DIM)))], commit_every=2, progress=False,
                                   on_ack=lambda done: acks.append([r.item_id for r in done]))
    assert acks == [["i0", "i1"], ["i2", "i3"], ["i4", "t"]]
    assert [r.generation for r in results] == [1, 1, 2, 2, 3, 3] and results[-1].n_vectors == 2
    assert sync.index_file_generation == 3 and store.count_items() == 6


# -- HubnessCorrection ---------------------------------------------------------------------------
def test_hubness_adjustments_are_minus_beta_times_mean_background_cosine(store):
    sync, _, enroller, hub, _ = parts(store)
    rng = np.random.default_rng(5)
    v = rng.normal(size=(6, DIM))
    enroller.commit([enroller.entry("a", vectors=v[:4]), enroller.entry("b", vectors=v[4:])])
    assert hub.adjustments() is None and hub.settings is None
    bg = rng.normal(size=(7, DIM))
    assert hub.set_background(None, vectors=bg, k=3, beta=0.25) == 7
    cos = unit(v) @ unit(bg).T
    want = -0.25 * np.sort(cos, axis=1)[:, -3:].mean(axis=1)  # each vector's 3 nearest background photos
    np.testing.assert_allclose(hub.adjustments(), want, atol=1e-6)
    assert hub.settings == {"k": 3, "beta": 0.25, "n_background": 7}
    enroller.remove("a")
    np.testing.assert_allclose(hub.adjustments(), want[4:], atol=1e-6)
    with pytest.raises(GalleryError, match="beta"):
        hub.set_background(None, vectors=bg, beta=-1.0)
    hub.clear_background()
    assert hub.adjustments() is None and hub.settings is None


# -- Recognizer ----------------------------------------------------------------------------------
def test_recognizer_scores_items_by_their_best_vector(store):
    _, _, enroller, _, rec = parts(store)
    enroller.commit([enroller.entry("a", vectors=[[1, 0, 0, 0], [0, 1, 0, 0]], name="A"),
                     enroller.entry("b", vectors=[[0.6, 0.8, 0, 0]])])
    q = np.array([[0.8, 0.6, 0, 0], [0, 0, 0, 1]])
    s, pks = rec.search(q, k=3)
    # query 0: a best = max(.8, .6) = .8; b = .48 + .48 = .96 -> b, a; query 1: both 0
    np.testing.assert_allclose(s[0], [0.96, 0.8, -np.inf], atol=1e-6)
    assert pks[0].tolist() == [2, 1, -1]
    first, second = rec.query(vectors=q, k=1, threshold=0.5)
    assert first.item_id == "b" and second.unknown and second.matches[0].similarity == pytest.approx(0.0, abs=1e-6)
    assert rec.items()[["item_id", "name", "n_vectors"]].values.tolist() == [["a", "A", 2], ["b", "b", 1]]
    with pytest.raises(ValueError, match="k must be"):
        rec.search(q, k=0)


def test_recognizer_calibrate_twice_with_other_ids_in_one_generation(store):
    """The enrolled-ids cache is per id list: a second calibration with other labels is counted afresh."""
    _, _, enroller, _, rec = parts(store)
    enroller.commit([enroller.entry("a", vectors=[[1, 0, 0, 0]]), enroller.entry("b", vectors=[[0, 1, 0, 0]])])
    val = np.array([[0.9, 0.1, 0, 0], [0.1, 0.9, 0, 0]])
    cal = rec.calibrate(val, ["z", "y"], target_far=0.5, save=False)  # neither enrolled: no mated scores
    assert cal.n_mated == 0 and cal.n_impostor == 2
    # both enrolled and right: impostors are the other item's .11, t just above it; mated .99 >= t
    cal = rec.calibrate(val, ["a", "b"], target_far=0.5, save=False)
    assert cal.n_mated == 2 and cal.n_impostor == 2 and cal.dir == 1.0 and cal.far == 0.0
    assert cal.threshold == pytest.approx(0.1 / np.sqrt(0.82), abs=1e-6)
    rec.set_threshold(0.3)
    assert rec.threshold == pytest.approx(0.3) and store.meta()["threshold"] == pytest.approx(0.3)


# -- Gallery(store, index, embedder) ---------------------------------------------------------------
def test_gallery_composes_parts_given_to_it(store, tmp_path):
    sync = Synchroniser(store)
    g = Gallery(store, sync, ListEmbedder())
    assert g.sync is sync and g.index is sync.index and g.path == tmp_path / "g" and g.embedder is not None
    res = g.enroll("x", "X", paths=["abc", "bad"])
    assert res.skipped == [("bad", "unreadable")] and res.n_vectors == 1
    assert g.query(paths=["abc"], k=1)[0].item_id == "x"
    g.close()
    g = Gallery(MetadataStore(tmp_path / "g" / DB_NAME))  # index=None: loaded from the folder
    assert not g.rebuilt and g.ntotal == 1 and g.embedder is None and len(g) == 1
    second = MetadataStore(tmp_path / "g" / DB_NAME)
    with pytest.raises(ValueError, match="another store"):
        Gallery(g.store, Synchroniser(second))
    second.close()
    g.close()
