"""The own-data commands end to end on generated folders, against values worked out here by hand.

The model embeds an image to its mean colour, ``mean(x / 127.5 - 1)`` over pixels (3-d), so each
test recomputes every embedding from the PNG pixels with NumPy and ranks by cosine itself.
Two folders: ``split`` is a ``Train/ Validation/ class/`` tree whose class names are spelled
differently in the two splits (case, ``-`` vs ``_``, space); ``video`` is a folder-per-class
capture where each class holds two "videos" of three near-identical frames.
"""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
from PIL import Image

keras = pytest.importorskip("keras")
imagehash = pytest.importorskip("imagehash")

from itemrec.cli import main  # noqa: E402
from itemrec.embedder import ImageEmbedder  # noqa: E402

SIZE = 16
COLOURS = {"apple": (80, 180, 80), "pear": (180, 80, 80), "plum": (120, 60, 160), "kiwi": (150, 150, 70)}


def _texture(seed: int) -> np.ndarray:
    t = np.random.default_rng(seed).integers(-50, 51, (SIZE, SIZE, 1)).astype(np.float64)
    return t - t.mean()


def _save(path, colour, texture_seed, noise_seed, fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    noise = np.random.default_rng(noise_seed).integers(-1, 2, (SIZE, SIZE, 3))
    arr = np.clip(np.asarray(colour, np.float64) + _texture(texture_seed) + noise, 0, 255).astype(np.uint8)
    Image.fromarray(arr).save(path, format=fmt)


def by_hand(path) -> np.ndarray:
    """The model's embedding, from the pixels: mean over pixels of x / 127.5 - 1."""
    a = np.asarray(Image.open(path).convert("RGB"), np.float64)
    return (a / 127.5 - 1).mean(axis=(0, 1))


def _cos(a, b):
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    return a @ b.T


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("own")
    keras.utils.set_random_seed(0)
    inp = keras.Input((SIZE, SIZE, 3))
    out = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 127.5, offset=-1)(inp))
    model = ImageEmbedder(keras.Model(inp, out), SIZE).save(tmp / "m.keras")
    split = tmp / "split"
    seed = 0
    for cls, name in (("apple", "Green-Apple"), ("pear", "Red_Pear"), ("plum", "plum")):
        for j in range(2):
            seed += 1
            _save(split / "Train" / name / f"{j}.png", COLOURS[cls], seed, seed)
    for j in range(6):
        seed += 1
        _save(split / "Validation" / "green_apple" / f"{j}.png", COLOURS["apple"], seed, seed)
    # the one pear photo looks like a plum: its class is ranked second
    _save(split / "Validation" / "red-pear" / "0.png", (128, 62, 158), 100, 100)
    _save(split / "Validation" / "PLUM" / "0.png", COLOURS["plum"], 101, 101)
    video = tmp / "video"
    for c, cls in enumerate(COLOURS):
        for v in range(2):
            for f in range(3):  # same texture, 1-level noise: near-identical frames
                _save(video / cls / f"v{v}_f{f}.png", COLOURS[cls], 1000 + 10 * c + v, 5000 + 100 * c + 10 * v + f)
    return {"tmp": tmp, "model": str(model), "split": split, "video": video}


def _ranks_by_hand(q_paths, q_cls, g_paths, g_cls):
    """Class rank of each query: classes ordered by their best gallery cosine (ties against the query)."""
    q = np.stack([by_hand(p) for p in q_paths])
    g = np.stack([by_hand(p) for p in g_paths])
    sim = _cos(q, g)
    classes = sorted(set(g_cls))
    best = np.stack([sim[:, [i for i, c in enumerate(g_cls) if c == k]].max(axis=1) for k in classes], axis=1)
    true = best[np.arange(len(q)), [classes.index(c) for c in q_cls]]
    return 1 + (best > true[:, None]).sum(axis=1)


def test_evaluate_split_tree_both_averagings(world, tmp_path, capsys):
    split = world["split"]
    out = tmp_path / "ev"
    # shots = 2 = every Train photo of each class: the gallery is the same in every draw
    assert main(["evaluate", world["model"], "--data", str(split), "--gallery-shots", "2", "--draws", "7",
                 "--out", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    rep = json.loads((out / "evaluation.json").read_text())
    assert rep["layout"] == "split/class" and rep["n_classes"] == 3
    assert "gallery photos from split 'Train', queries from Validation" in rep["pools"]
    assert any("Green-Apple = green_apple" in n for n in rep["notes"])
    key = {"Green-Apple": "apple", "green_apple": "apple", "Red_Pear": "pear", "red-pear": "pear", "plum": "plum",
           "PLUM": "plum"}
    g_paths = sorted((split / "Train").rglob("*.png"))
    q_paths = sorted((split / "Validation").rglob("*.png"))
    ranks = _ranks_by_hand(q_paths, [key[p.parent.name] for p in q_paths], g_paths, [key[p.parent.name] for p in g_paths])
    q_cls = [key[p.parent.name] for p in q_paths]
    per_class = {c: [r for r, k in zip(ranks, q_cls) if k == c] for c in set(q_cls)}
    assert all(len(set(np.asarray(v) == 1)) == 1 for v in per_class.values())  # one outcome per class: balanced is exact
    image1 = np.mean(ranks == 1)  # 6 apples right + plum right, pear wrong: 7/8
    balanced1 = np.mean([v[0] == 1 for v in per_class.values()])  # apple, plum right, pear wrong: 2/3
    assert image1 == pytest.approx(7 / 8) and balanced1 == pytest.approx(2 / 3)
    c = rep["cmc"]
    assert c["image_averaged"]["rank1"] == pytest.approx(image1)
    assert c["class_balanced"]["rank1"] == pytest.approx(balanced1)
    assert c["image_averaged"]["rank1_ci_draws"] == pytest.approx([image1, image1])  # same gallery every draw
    assert c["image_averaged"]["rank5"] == 1.0 and c["max_rank"] == 3
    assert "image-averaged" in text and "class-balanced" in text
    # leave-one-out among the 8 queries, by hand: Recall@1 and MAP@R (Musgrave et al.)
    e = np.stack([by_hand(p) for p in q_paths])
    sim = _cos(e, e)
    np.fill_diagonal(sim, -np.inf)
    lab = np.array(q_cls)
    hits, maps = [], []
    for i in range(len(e)):
        order = np.argsort(-sim[i], kind="stable")[:-1]
        rel = lab[order] == lab[i]
        r = int((lab == lab[i]).sum()) - 1
        if r == 0:
            continue
        hits.append(rel[0])
        maps.append(sum(rel[:k + 1].mean() for k in range(r) if rel[k]) / r)
    assert rep["retrieval"]["recall_at_1"] == pytest.approx(np.mean(hits))
    assert rep["retrieval"]["map_at_r"] == pytest.approx(np.mean(maps))
    rows = list(csv.DictReader(open(out / "cmc.csv")))
    assert float(rows[0]["image_mean"]) == pytest.approx(image1) and float(rows[0]["balanced_mean"]) == pytest.approx(balanced1)
    assert (out / "cmc.png").stat().st_size > 0 and (out / "per_class.csv").is_file()


def test_evaluate_catalogue_gallery_and_hubness(world, tmp_path):
    split = world["split"]
    cat = tmp_path / "cat"
    for name, colour in (("GREEN_APPLE", COLOURS["apple"]), ("red-pear", COLOURS["pear"]), ("Plum", COLOURS["plum"])):
        _save(cat / f"{name}.png", colour, 7, 7)
    out = tmp_path / "ev"
    assert main(["evaluate", world["model"], "--data", str(split), "--gallery", str(cat), "--draws", "3",
                 "--background", str(world["video"]), "--hubness-k", "3", "--out", str(out), "--quiet"]) == 0
    rep = json.loads((out / "evaluation.json").read_text())
    assert rep["gallery"]["catalogue_images"] == 3 and rep["gallery"]["shots"] == 0
    assert rep["hubness"]["n_background"] == 24
    # by hand: offsets o(g) = -beta * mean of the 3 smallest cosine distances to the background
    q_paths = sorted((split / "Validation").rglob("*.png"))
    key = {"green_apple": 0, "red-pear": 1, "PLUM": 2}
    g = np.stack([by_hand(cat / f"{n}.png") for n in ("GREEN_APPLE", "red-pear", "Plum")])
    bg = np.stack([by_hand(p) for p in sorted(world["video"].rglob("*.png"))])
    offsets = -0.5 * np.sort(1 - _cos(g, bg), axis=1)[:, :3].mean(axis=1)
    dist = 1 - _cos(np.stack([by_hand(p) for p in q_paths]), g) + offsets[None, :]
    truth = np.array([key[p.parent.name] for p in q_paths])
    right = dist.argmin(axis=1) == truth
    assert rep["cmc"]["image_averaged"]["rank1"] == pytest.approx(right.mean())


def test_evaluate_video_excludes_near_copies(world, tmp_path):
    out = tmp_path / "ev"
    assert main(["evaluate", world["model"], "--data", str(world["video"]), "--gallery-shots", "1", "--draws", "5",
                 "--exclude-near-duplicates", "--out", str(out), "--quiet"]) == 0
    rep = json.loads((out / "evaluation.json").read_text())
    n = rep["near_duplicates"]
    # brute force with imagehash itself: pairs within 6 bits
    paths = sorted(world["video"].rglob("*.png"))
    hashes = [imagehash.phash(Image.open(p).convert("RGB")) for p in paths]
    pairs = [(i, j) for i in range(len(paths)) for j in range(i + 1, len(paths)) if hashes[i] - hashes[j] <= 6]
    same = [(i, j) for i, j in pairs if paths[i].parent == paths[j].parent]
    assert len(same) == 4 * 2 * 3  # 4 classes x 2 videos x C(3, 2) frame pairs
    assert n["same_class_pairs"] == len(same) and n["cross_class_pairs"] == len(pairs) - len(same)
    # each draw: the gallery frame's 2 siblings are dropped in each of 4 classes, the other video's 3 frames query
    assert n["queries_dropped_per_draw"] == 8
    assert rep["cmc"]["image_averaged"]["queries_per_draw"] == 12
    # every photo is nearer every photo of its class than any photo of another: rank 1 whatever the draw
    e = np.stack([by_hand(p) for p in paths])
    cls = np.array([p.parent.name for p in paths])
    sim = _cos(e, e)
    worst_own = np.array([sim[i, cls == cls[i]].min() for i in range(len(e))])
    best_other = np.array([sim[i, cls != cls[i]].max() for i in range(len(e))])
    assert (worst_own > best_other).all()
    assert rep["cmc"]["image_averaged"]["rank1"] == 1.0 and rep["cmc"]["class_balanced"]["rank1"] == 1.0
    # VAL at FAR 1e-2 on the half of the classes the threshold was not fitted on, by brute force
    v = rep["verification"]["1e-02"]
    report_cls = sorted(set(cls) - set(v["fit_class_keys"]))
    m = np.isin(cls, report_cls)
    d = 1 - _cos(e[m], e[m])
    iu = np.triu_indices(int(m.sum()), 1)
    same_pair = (cls[m][:, None] == cls[m][None, :])[iu]
    assert v["val"] == pytest.approx(np.mean(d[iu][same_pair] <= v["threshold"]))
    assert v["far"] == pytest.approx(np.mean(d[iu][~same_pair] <= v["threshold"]))


def test_evaluate_user_errors_exit_2(world, tmp_path, capsys):
    m, split = world["model"], str(world["split"])
    assert main(["evaluate", m, "--data", str(tmp_path / "nope")]) == 2
    assert main(["evaluate", str(tmp_path / "nope.keras"), "--data", split]) == 2
    assert main(["evaluate", m, "--data", split, "--gallery-shots", "-1"]) == 2
    assert main(["evaluate", m, "--data", split, "--features"]) == 2  # needs a run folder
    assert "needs a run folder" in capsys.readouterr().err
    assert main(["evaluate", m, "--data", split, "--gallery-split", "Test"]) == 2
    assert "its splits: Train, Validation" in capsys.readouterr().err
    assert main(["evaluate", m, "--data", split, "--gallery-shots", "3", "--quiet"]) == 2  # 2 Train photos per class
    assert "no class can be evaluated" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "no_run")]) == 2  # the run-folder form still refuses what is not a run


def _gallery(world, tmp_path, items):
    g = str(tmp_path / "g")
    assert main(["gallery", "create", g, "--model", world["model"]]) == 0
    assert main(["gallery", "add", g, str(items), "--model", world["model"]]) == 0
    return g


def test_gallery_evaluate_rates_and_tradeoff(world, tmp_path, capsys):
    split = world["split"]
    items = tmp_path / "items"
    for name in ("Green-Apple", "Red_Pear"):  # plum is not enrolled: its photo is unknown
        shutil.copytree(split / "Train" / name, items / name)
    g = _gallery(world, tmp_path, items)
    capsys.readouterr()
    assert main(["gallery", "evaluate", g, "--queries", str(split / "Validation"), "--model", world["model"],
                 "--far", "0", "--far", "1", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    # by hand: best item by cosine over each item's 2 photos
    q_paths = sorted((split / "Validation").rglob("*.png"))
    names = ["Green-Apple", "Red_Pear"]
    g_e = {n: np.stack([by_hand(p) for p in sorted((items / n).glob("*.png"))]) for n in names}
    truth = {"green_apple": "Green-Apple", "red-pear": "Red_Pear", "PLUM": None}
    sims = np.stack([[_cos(by_hand(p)[None], g_e[n]).max() for n in names] for p in q_paths])
    best = [names[i] for i in sims.argmax(axis=1)]
    t = [truth[p.parent.name] for p in q_paths]
    known = [x is not None for x in t]
    top1 = np.mean([b == x for b, x, k in zip(best, t, known) if k])
    r = rep["at_threshold"]  # no threshold: everything accepted
    assert r["n_known"] == 7 and r["n_unknown"] == 1 and rep["unknown_labels"] == ["PLUM"]
    assert r["top1"] == pytest.approx(top1) and r["accepted_correct"] == pytest.approx(top1)
    assert r["misidentified"] == pytest.approx(1 - top1) and r["rejected_unknown"] == 0.0
    # FAR 0 fitted on the queries: threshold just above the highest impostor score (best other item; the
    # unknown photo's best item); a query is accepted when its best score reaches it
    impostor = [sims[i, [n != t[i] for n in names]].max() for i in range(len(t))]
    accepted = sims.max(axis=1) > max(impostor)
    p0 = next(p for p in rep["operating_points"] if p["target_far"] == 0)
    assert p0["threshold"] == pytest.approx(max(impostor), abs=1e-5)
    assert p0["rejected_unknown"] == 1.0
    assert p0["accepted_correct"] == pytest.approx(np.mean([a and b == x for a, b, x, k in zip(accepted, best, t, known) if k]))
    p1 = next(p for p in rep["operating_points"] if p["target_far"] == 1)
    assert p1["rejected_known"] == 0.0 and p1["accepted_unknown"] == 1.0
    assert main(["gallery", "evaluate", g, "--queries", str(tmp_path / "nope"), "--model", world["model"]]) == 2


def test_gallery_calibrate_counts_and_warns(world, tmp_path, capsys):
    split = world["split"]
    g = _gallery(world, tmp_path, split / "Train")
    capsys.readouterr()
    assert main(["gallery", "calibrate", g, str(split / "Validation"), "--model", world["model"], "--target-far", "0.01"]) == 0
    cap = capsys.readouterr()
    cal = json.loads(cap.out)
    # 8 validation photos, each has a best *other* item: 8 impostor scores; all 8 show enrolled items: 8 genuine
    assert cal["n_impostor"] == 8 and cal["n_genuine"] == 8
    assert "used 8 impostor scores" in cap.err and "8 genuine" in cap.err
    assert "below 1/8 = 0.125" in cal["warning"] and "above the highest impostor score" in cap.err
    assert main(["gallery", "calibrate", g, str(split / "Validation"), "--model", world["model"], "--target-far", "0.5"]) == 0
    assert json.loads(capsys.readouterr().out)["warning"] is None


def test_gallery_add_checks_everything_first(world, tmp_path, capsys):
    m = world["model"]
    items = tmp_path / "items"
    _save(items / "a" / "0.png", COLOURS["apple"], 1, 1)
    _save(items / "b" / "0.tif", COLOURS["pear"], 2, 2, fmt="TIFF")  # TIFF and WebP are enrolled like the others
    _save(items / "c" / "0.webp", COLOURS["plum"], 3, 3, fmt="WEBP")
    (items / "d").mkdir()
    (items / "d" / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    (items / "e").mkdir()  # no image at all
    g = str(tmp_path / "g")
    assert main(["gallery", "create", g, "--model", m]) == 0
    capsys.readouterr()
    assert main(["gallery", "add", g, str(items), "--model", m]) == 2
    err = capsys.readouterr().err
    assert "no image file: e" in err and "no readable image: d" in err and "Nothing was enrolled" in err
    assert main(["gallery", "list", g, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["items"] == []
    assert main(["gallery", "add", g, str(items), "--model", m, "--skip-empty"]) == 0
    assert "enrolled 3 items (3 images, 1 skipped)" in capsys.readouterr().out
    assert main(["gallery", "list", g, "--json"]) == 0
    assert [i["item_id"] for i in json.loads(capsys.readouterr().out)["items"]] == ["a", "b", "c"]


def test_gallery_add_from_split_csv_and_query_folders(world, tmp_path, capsys):
    split = world["split"]
    m = world["model"]
    manifest = tmp_path / "train.csv"  # the columns `itemrec train` writes in splits/*.csv
    with open(manifest, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label", "class_name", "coarse_label", "split"])
        for k, d in enumerate(sorted((split / "Train").iterdir())):
            for p in sorted(d.glob("*.png")):
                w.writerow([str(p), k, d.name, -1, "train"])
    g = str(tmp_path / "g")
    assert main(["gallery", "create", g, "--model", m]) == 0
    assert main(["gallery", "add", g, str(manifest), "--model", m]) == 0
    assert "enrolled 3 items (6 images, 0 skipped)" in capsys.readouterr().out
    assert main(["gallery", "query", g, str(split / "Validation"), "--model", m, "--json", "-k", "1"]) == 0
    answers = json.loads(capsys.readouterr().out)
    assert len(answers) == 8  # every image of the folder, searched recursively
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n junk")
    assert main(["gallery", "query", g, str(split / "Validation" / "PLUM" / "0.png"), str(bad), "--model", m]) == 2
    cap = capsys.readouterr()
    assert "PLUM/0.png: plum" in cap.out and "1 of 2 images could not be read" in cap.err


def test_embed_paths_listing_and_all_unreadable(world, tmp_path, capsys):
    m = world["model"]
    out = tmp_path / "x.npy"
    assert main(["embed", m, str(world["split"] / "Validation"), "--out", str(out), "--quiet"]) == 0
    listing = (tmp_path / "x.paths.txt").read_text().split()
    assert len(listing) == 8 and np.load(out).shape == (8, 3)
    np.testing.assert_allclose(np.load(out)[0], by_hand(listing[0]), atol=1e-5)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"nope")
    out2 = tmp_path / "y.npy"
    assert main(["embed", m, str(bad), "--out", str(out2), "--quiet"]) == 2
    assert "none of the 1 images could be read" in capsys.readouterr().err
    assert not out2.exists() and not (tmp_path / "y.paths.txt").exists()


def _help(argv, capsys) -> str:
    with pytest.raises(SystemExit):
        main(argv)
    return " ".join(capsys.readouterr().out.split())


def test_embed_help_names_the_listing(capsys):
    text = _help(["embed", "--help"], capsys)
    assert "--out emb.npy writes emb.paths.txt" in text and "OUT.paths.txt" not in text


def test_data_audit_split_tree_near_frames_and_against(world, tmp_path, capsys):
    split, video = world["split"], world["video"]
    assert main(["data", "audit", str(split), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    # 3 classes x 2 Train photos + 6 + 1 + 1 Validation photos, classes named SPLIT/CLASS
    assert rep["n_images"] == 14 and rep["n_classes"] == 6
    assert rep["class_counts"]["Validation/green_apple"] == 6 and rep["class_counts"]["Train/Green-Apple"] == 2
    assert main(["data", "audit", str(video), "--near-duplicates", "--json"]) == 0
    near = json.loads(capsys.readouterr().out)["near_duplicates"]
    assert near["near_pairs"] == 24 and near["exact_pairs"] == 0 and near["images_with_duplicate"] == 24
    assert {(r["class_a"], r["class_b"], r["pairs"]) for r in near["class_pairs"]} == {(c, c, 6) for c in COLOURS}
    # B holds a byte copy of an apple frame (exact), a JPEG re-encode of a pear frame (near) and an unrelated photo
    other = tmp_path / "other"
    (other / "fruit_a").mkdir(parents=True)
    shutil.copy(video / "apple" / "v0_f0.png", other / "fruit_a" / "copy.png")
    (other / "fruit_b").mkdir()
    Image.open(video / "pear" / "v1_f2.png").save(other / "fruit_b" / "reencoded.jpg", quality=95)
    _save(other / "fruit_b" / "new.png", (30, 30, 220), 777, 777)
    # expected near pairs by brute force with imagehash: B's 3 photos against A's 24 within 6 bits
    a_paths = sorted(video.rglob("*.png"))
    b_paths = sorted(p for p in other.rglob("*") if p.is_file())
    ha = [imagehash.phash(Image.open(p).convert("RGB")) for p in a_paths]
    hb = [imagehash.phash(Image.open(p).convert("RGB")) for p in b_paths]
    expected = {(a.parent.name, b.parent.name) for a, x in zip(a_paths, ha) for b, y in zip(b_paths, hb) if x - y <= 6}
    assert expected == {("apple", "fruit_a"), ("pear", "fruit_b")}
    pairs_csv = tmp_path / "pairs.csv"
    assert main(["data", "audit", str(video), "--against", str(other), "--json", "--pairs-csv", str(pairs_csv)]) == 0
    against = json.loads(capsys.readouterr().out)["against"]
    assert {(r["class_a"], r["class_b"]) for r in against["class_pairs"]} == expected
    assert against["exact_pairs"] == 1  # copy.png has the bytes of v0_f0.png only
    exact = [r for r in against["class_pairs"] if r["kind"] == "exact"]
    assert [(r["class_a"], r["class_b"], r["pairs"]) for r in exact] == [("apple", "fruit_a", 1)]
    rows = list(csv.DictReader(open(pairs_csv)))
    assert {r["scope"] for r in rows} == {"against"} and len(rows) == against["exact_pairs"] + against["near_pairs"]
    assert main(["data", "audit", str(video), "--against", str(other)]) == 0
    assert "against " in capsys.readouterr().out


def test_data_audit_unreadable_files_exit_2(tmp_path, capsys):
    root = tmp_path / "ds"
    _save(root / "a" / "0.png", COLOURS["apple"], 1, 1)
    _save(root / "a" / "1.png", COLOURS["apple"], 2, 2)
    (root / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n junk")
    assert main(["data", "audit", str(root)]) == 2
    cap = capsys.readouterr()
    assert "broken.png" in cap.out and "1 unreadable files" in cap.err
    (root / "a" / "broken.png").unlink()
    assert main(["data", "audit", str(root)]) == 0
