"""Notebooks 04 and 05 run top to bottom with papermill in QUICK mode on the real data.

Papermill injects QUICK mode's sizes, the data, weights and a temporary output folder; the
executed notebook's inline images, its ``results.json`` and figures are checked. The stored form
is checked in ``test_notebooks_stored.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import numpy as np
import pytest

from notebook_runner import bare_figures, image_outputs, run_notebook

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
NB04 = NOTEBOOKS / "04_packed_scene_clustering.ipynb"
NB05 = NOTEBOOKS / "05_digit_triplets_and_face_retrieval.ipynb"
SHELF_LABELS = ROOT / "tests" / "data" / "shelf_labels.json"


def run_quick(key: str, params: dict, monkeypatch) -> nbformat.NotebookNode:
    # OpenMP busy-waiting (scikit-learn's t-SNE) crawls on a shared 2-core machine; TensorFlow has its own pools.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    nb = run_notebook(key, params, timeout=600)[0]
    assert not bare_figures(nb), f"{key}: cells {bare_figures(nb)} print a figure's repr instead of showing it"
    return nb


def test_cells_stay_short_glue_with_prose_between():
    for path in (NB04, NB05):
        nb = nbformat.read(path, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert sum(c.cell_type == "markdown" for c in nb.cells) >= 8  # prose between the steps
        # no logic lives only in the notebook: cells are short glue around package calls
        assert max(len(c.source.splitlines()) for c in code) <= 40


def _in_unit(x) -> bool:
    return x is not None and 0.0 <= float(x) <= 1.0


def _above(x, floor) -> bool:
    """In [0, 1] and above ``floor`` (a floor set well above chance, well below the value observed)."""
    return _in_unit(x) and float(x) > floor


@pytest.mark.slow
@pytest.mark.realdata
def test_notebook_04_quick(data_root, mobilenet_weights, tmp_path, monkeypatch):
    out = tmp_path / "04"
    nb = run_quick("04", dict(DATA_ROOT=str(data_root), WEIGHTS=str(mobilenet_weights), OUT_DIR=str(out),
                                 CACHE_DIR=None, SHELF_LABELS=str(SHELF_LABELS), README_IMAGES=str(tmp_path / "readme")),
                      monkeypatch)
    res = json.loads((out / "results.json").read_text())
    P = res["settings"]["parameters"]
    assert res["settings"]["mode"] == "quick"
    # the audit finds the corruption the dataset README describes, and the cleaning undoes it
    assert res["audit"]["n_files"] == 10540 and len(res["audit"]["duplicated_classes"]) == 2
    assert res["clean"]["n_classes"] == 27 - 2 - len(res["clean"]["dropped_classes"])
    # copies leak across a per-file split, never across the duplicate-safe one
    assert res["split"]["leaked_duplicate_safe"] == 0 and res["split"]["leaked_per_file"] > 100
    sweep = res["sweep"]
    assert [r["head"] for r in sweep][:2] == ["frozen features (no head)", "softmax (baseline)"]
    assert len(sweep) == 2 + len(P["SCALES"])
    # every row, the frozen features and the softmax baseline too: 24 classes, about 9 test crops each, chance
    # Recall@1 about 0.04 and MAP@R about 0.01. Observed (2026-12-01): Recall@1 0.80-0.83, MAP@R 0.47-0.60 (the frozen
    # features 0.47). Floors at about 0.6x catch a broken head, embedding or evaluation in any row.
    assert all(_above(r["recall_at_1"], 0.5) and _above(r["map_at_r"], 0.3) for r in sweep), sweep
    assert res["best_scale"] in P["SCALES"]
    best = max((r for r in sweep if r["scale"] is not None), key=lambda r: r["map_at_r"])
    assert best["recall_at_1"] > 0.5  # 24 classes: chance is about 0.04
    shelf = res["shelf"]
    assert shelf["n_boxes"] == 63 and 2 <= shelf["n_clusters"] <= 63 and 0 <= shelf["n_noise"] <= 63
    overlay = Path(shelf["overlay"])
    assert overlay.is_file()
    from PIL import Image

    with Image.open(overlay) as im:
        assert max(im.size) == 1200
    scores = shelf["scores"]
    assert scores is not None and -1 <= scores["ari"] <= 1 and _in_unit(scores["nmi"]) and scores["n_true_classes"] == 22
    assert scores["ari"] > 0.2 and shelf["frozen_scores"] is not None
    assert (out / "scale_sweep.png").is_file()
    small = [tmp_path / "readme" / n for n in ("packed_scale_sweep.png", "packed_shelf_clusters.png")]
    assert all(p.is_file() and p.stat().st_size <= 150_000 for p in small)
    assert image_outputs(nb) >= 4  # the sweep, the curves, the t-SNE of the clusters, the overlay (JPEG)
    assert (out / "head_curves.png").is_file() and (out / "head_tsne.png").is_file()


@pytest.mark.slow
@pytest.mark.realdata
def test_notebook_05_quick(data_root, mobilenet_weights, tmp_path, monkeypatch):
    out = tmp_path / "05"
    nb = run_quick("05", dict(DATA_ROOT=str(data_root), WEIGHTS=str(mobilenet_weights), OUT_DIR=str(out),
                                 README_IMAGES=None), monkeypatch)
    res = json.loads((out / "results.json").read_text())
    P = res["settings"]["parameters"]
    assert res["settings"]["mode"] == "quick"
    d = res["digits"]
    assert sum(d["sizes"].values()) == P["MNIST_LIMIT"]
    assert [r["margin"] for r in d["margin_sweep"]] == list(P["MARGINS"])
    # ten digits, about 40 of each in val and test: chance Recall@1 about 0.1, MAP@R about 0.02, triplet accuracy
    # (d(a, p) < d(a, n)) 0.5. Observed (2026-12-01) after one epoch: val Recall@1 0.69 / 0.71, MAP@R 0.35 / 0.33,
    # triplet accuracy 0.87 / 0.84 (margins 0.2 / 1.0); test Recall@1 0.735, MAP@R 0.39. Floors at about 0.6x.
    for r in d["margin_sweep"]:
        assert _above(r["val_recall_at_1"], 0.45) and _above(r["val_map_at_r"], 0.2), r
        assert _above(r["val_triplet_accuracy"], 0.7), r
    assert d["best_margin"] in P["MARGINS"]
    assert _above(d["test_recall_at_1"], 0.45) and _above(d["test_map_at_r"], 0.22), d
    assert 0.2 < d["classifier_accuracy"] <= 1.0  # ten digits: chance 0.1, even after one short epoch
    rej = res["rejection"]
    assert rej["n_letters"] > 100
    assert all(_in_unit(rej[k]) for k in ("val_rejection", "digit_rejection", "letter_rejection", "auc"))
    assert rej["val_rejection"] <= P["TARGET_IN_REJECTION"] + 1e-9
    # rejecting digits (knowns) is lower-better: a ceiling. tau is fitted to reject 5 % of the validation digits;
    # observed 0.04 on the 400 test digits (2026-12-01). 3x the target catches a threshold that does not carry over.
    assert rej["digit_rejection"] <= 3 * P["TARGET_IN_REJECTION"], rej
    # a score unrelated to digit-ness rejects letters as often as digits, AUC 0.5. Observed (2026-12-01): letters
    # rejected 0.092 vs digits 0.04, AUC 0.60 (weak after one epoch in QUICK mode; 1482 letters vs 400 digits,
    # standard error about 0.015). The floor 0.55 is half the observed margin over chance.
    assert rej["letter_rejection"] > rej["digit_rejection"] and rej["auc"] > 0.55, rej
    orig = rej["original_gini_rule"]
    assert orig["threshold"] == P["GINI_COEFFICIENT_THRESHOLD"] == 0.87
    assert all(_in_unit(orig[k]) for k in ("digit_rejection", "letter_rejection", "auc"))
    better_auc = max(rej["auc"], orig["auc"])
    assert rej["better_rule"].startswith("Gini impurity" if rej["auc"] == better_auc else "Gini coefficient")
    f = res["faces"]
    assert f["n_photos"] + f["n_dropped_not_faces"] == 5 * P["FACES_PER_PERSON"] and f["n_people"] == 5
    assert P["FACES_ONLY"] is True and f["n_photos"] >= 0.7 * 5 * P["FACES_PER_PERSON"]
    for key in ("detection_rate", "loo_precision_at_1", "loo_precision_at_3", "whole_photo_loo_precision_at_1"):
        assert _in_unit(f[key]), key
    # 5 people, about 5 face crops each (26 kept): chance LOO precision@k about 4/25 = 0.16. Observed (2026-12-01):
    # crops precision@1 0.73, @3 0.71; whole photos precision@1 0.69. Floors at about 0.6x catch crops or
    # embeddings that carry no identity.
    assert f["loo_precision_at_1"] > 0.45 and f["loo_precision_at_3"] > 0.4, f
    assert f["whole_photo_loo_precision_at_1"] > 0.4, f
    assert f["detection_rate"] >= 0.7
    assert -1 <= f["hdbscan_optics_ari"] <= 1 and -1 <= f["agglomerative_ari"] <= 1
    # ARI is 0 for clusterings unrelated to the people; observed (2026-12-01) agglomerative 0.48, HDBSCAN/OPTICS 0.26
    assert f["agglomerative_ari"] > 0.25 and f["hdbscan_optics_ari"] > 0.1, f
    for name in ("digits_tsne.png", "gini_rejection.png", "face_crops.png", "faces_tsne.png"):
        assert (out / name).is_file(), name
    assert image_outputs(nb) >= 6 + len(P["MARGINS"])  # samples, one per margin, t-SNE, confusion, Gini, crops, faces
    assert np.isfinite(rej["tau"])
