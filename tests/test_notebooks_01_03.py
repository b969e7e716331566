"""Notebooks 01-03: stored clean, and each runs top to bottom in QUICK mode on the real data.

The executions are slow (a kernel, TensorFlow and a few small trainings each), so
they are marked ``slow``; the storage checks are instant.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import nbformat
import pytest

from notebook_runner import is_clean, parameters_cell, run_notebook

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NB01 = NOTEBOOKS / "01_triplet_loss_item_recognition.ipynb"
NB02 = NOTEBOOKS / "02_center_loss_item_recognition.ipynb"
NB03 = NOTEBOOKS / "03_fashion_classifier_transfer_learning.ipynb"


@pytest.mark.parametrize("path", [NB01, NB02, NB03], ids=lambda p: p.stem[:2])
def test_stored_without_outputs_with_parameters_cell(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert is_clean(nb), f"{path.name} has stored outputs or execution counts"
    cell = parameters_cell(nb, path.name)
    for name in ("QUICK", "OUT_DIR", "DATA_ROOT", "SEED"):
        assert f"{name} =" in cell.source, f"{path.name}: parameters cell lacks {name}"


def _unit(value, where):
    assert isinstance(value, float) and 0.0 <= value <= 1.0, f"{where} = {value!r} is not in [0, 1]"


def _run(path, out, data_root, mobilenet_weights):
    nb, seconds = run_notebook(path, {"QUICK": True, "OUT_DIR": str(out), "DATA_ROOT": str(data_root)},
                               save_to=out / path.name)
    results = json.loads((out / "results.json").read_text())
    assert results["quick"] is True
    for name, file in results["files"].items():
        assert Path(file).is_file() and Path(file).stat().st_size > 0, f"{path.name}: {name} file {file} missing"
    return results, seconds


@pytest.mark.slow
def test_notebook_01_triplet_quick(tmp_path, data_root, mobilenet_weights):
    results, seconds = _run(NB01, tmp_path, data_root, mobilenet_weights)
    assert set(results["runs"]) == {"random", "batch_hard", "semi_hard", "small_cnn"}
    for run, m in results["runs"].items():
        for key in ("rank1", "rank5", "recall_at_1", "map_at_r", "roc_auc"):
            _unit(m[key], f"01 {run}.{key}")
        assert m["rank5"] >= m["rank1"], f"01 {run}: CMC must not decrease with rank"
    rows = results["verification"]
    assert [r["target_far"] for r in rows] == [0.1, 0.01, 0.001]
    for r in rows:
        for key in ("far_calib", "val_calib", "far_test", "val_test"):
            _unit(r[key], f"01 verification {key}")
        assert r["far_calib"] <= r["target_far"] + 1e-12  # fitted on calib: FAR there meets the target
    thresholds = [r["threshold"] for r in rows]
    assert thresholds == sorted(thresholds, reverse=True)  # lower FAR target -> stricter threshold
    proj = Path(results["files"]["projector"]).parent
    n_rows = len((proj / "tensors.tsv").read_text().splitlines())
    assert n_rows == len((proj / "metadata.tsv").read_text().splitlines()) - 1 > 0


@pytest.mark.slow
def test_notebook_02_center_quick(tmp_path, data_root, mobilenet_weights):
    results, seconds = _run(NB02, tmp_path, data_root, mobilenet_weights)
    assert set(results["cmc"]) == {"center", "softmax", "triplet"}
    for run, c in results["cmc"].items():
        _unit(c["rank1"], f"02 {run}.rank1")
        assert c["rank1_ci_low"] <= c["rank1"] <= c["rank1_ci_high"]
        assert math.isclose(c["rank1"], results["runs"][run]["rank1"])
    gif = Path(results["files"]["gif"])
    assert gif.read_bytes()[:6] in (b"GIF87a", b"GIF89a")
    from PIL import Image

    with Image.open(gif) as im:  # one frame per epoch: 2 frozen + 1 fine-tuned in QUICK mode
        assert im.n_frames == 3


@pytest.mark.slow
def test_notebook_03_fashion_quick(tmp_path, data_root, mobilenet_weights):
    results, seconds = _run(NB03, tmp_path, data_root, mobilenet_weights)
    models = results["models"]
    assert set(models) == {"small_cnn", "mobilenet_v2+fc", "mobilenet_v2+bn_dropout", "vgg16+fc", "vgg16+bn_dropout"}
    for name, m in models.items():
        for key in ("accuracy", "f1_macro", "f1_weighted", "top5_accuracy"):
            _unit(m[key], f"03 {name}.{key}")
        assert m["top5_accuracy"] >= m["accuracy"]
        if name != "small_cnn":
            assert m["backbone_unchanged"] is True and m["backbone_trainable_params"] == 0
            assert m["finetuned_backbone_params"] > 0
    best = results["sweep"][0]
    assert best["optimizer"] == results["optimizer"] and best["lr"] == results["lr"]
    assert best["best_val_loss"] == min(r["best_val_loss"] for r in results["sweep"])
