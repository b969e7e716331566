"""Notebooks 01-03 run top to bottom with papermill in QUICK mode on the real data, figures inline.

The executions are slow (a kernel, TensorFlow and a few small trainings each), so
they are marked ``slow``; the stored form is checked in ``test_notebooks_stored.py``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from notebook_runner import bare_figures, image_outputs, run_notebook

# inline images each notebook shows at least, in QUICK mode (figures drawn by the package and shown)
MIN_IMAGES = {"01": 8, "02": 5, "03": 3}


def _unit(value, where):
    assert isinstance(value, float) and 0.0 <= value <= 1.0, f"{where} = {value!r} is not in [0, 1]"


def _run(key, out, data_root):
    nb, seconds = run_notebook(key, {"OUT_DIR": str(out), "DATA_ROOT": str(data_root)})
    results = json.loads((out / "results.json").read_text())
    assert results["quick"] is True and results["settings"]["mode"] == "quick"
    for name, file in results["files"].items():
        assert Path(file).is_file() and Path(file).stat().st_size > 0, f"{key}: {name} file {file} missing"
    assert image_outputs(nb) >= MIN_IMAGES[key], f"{key}: {image_outputs(nb)} inline images"
    assert not bare_figures(nb), f"{key}: cells {bare_figures(nb)} print a figure's repr instead of showing it"
    return results, seconds


@pytest.mark.slow
def test_notebook_01_triplet_quick(tmp_path, data_root, mobilenet_weights):
    results, seconds = _run("01", tmp_path, data_root)
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
    results, seconds = _run("02", tmp_path, data_root)
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
    results, seconds = _run("03", tmp_path, data_root)
    models = results["models"]
    assert set(models) == {"small_cnn", "mobilenet_v2+fc", "mobilenet_v2+bn_dropout", "vgg16+fc", "vgg16+bn_dropout"}
    for name, m in models.items():
        for key in ("accuracy", "f1_macro", "f1_weighted", "top5_accuracy"):
            _unit(m[key], f"03 {name}.{key}")
        assert m["top5_accuracy"] >= m["accuracy"]
        if name != "small_cnn":
            assert m["frozen_on_cached_features"] is True  # phase 1: the backbone is not in the trained model
            assert m["finetuned_backbone_params"] > 0
    # every model is a run of the one trainer, kept in its own folder
    assert len(set(results["run_dirs"].values())) == len(models)
    for run_dir in results["run_dirs"].values():
        assert (Path(run_dir) / "config.json").is_file() and (Path(run_dir) / "done.json").is_file()
    best = results["sweep"][0]
    assert best["optimizer"] == results["optimizer"] and best["lr"] == results["lr"]
    assert best["best_val_loss"] == min(r["best_val_loss"] for r in results["sweep"])
