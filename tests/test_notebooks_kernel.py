"""A researcher's loop, in one live kernel: run, edit the parameters cell, re-run only the training cells.

The parameters cell rules: after it is edited and re-run, the training cell trains what it now
says (a new run folder, keyed by the training config), the earlier run stays on disk, and the
plots compare both. Tiny sizes keep each test to a few short trainings.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from notebook_runner import LiveKernel


def _runs(root: Path, stem: str) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(root.glob(f"{stem}_*/config.json"))}


@pytest.mark.slow
@pytest.mark.realdata
def test_notebook_02_new_lambda_trains_a_new_run_and_the_cmc_plot_keeps_both(data_root, mobilenet_weights, tmp_path):
    out = tmp_path / "02"
    with LiveKernel("02") as k:
        k.set_parameters(DATA_ROOT=str(data_root), OUT_DIR=str(out), LAMBDA=0.1, FROZEN_EPOCHS=1, FINETUNE_EPOCHS=0,
                         CMC_DRAWS=5, SUBSET={"train": 4, "val": None, "test": 2})
        k.run("parameters", k.code_cells()[1], "train", "cmc")
        first = _runs(out / "runs", "center")
        assert [c["loss"]["config"]["lam"] for c in first.values()] == [0.1]
        # the researcher edits λ in the parameters cell and re-runs it, then only the training and CMC cells
        k.set_parameters(LAMBDA=0.001)
        k.run("parameters", "train", "cmc")
        runs = _runs(out / "runs", "center")
        labels = json.loads(k.eval('__import__("json").dumps([ln.get_label() for ln in fig_lambda.axes[0].get_lines()])'))
    assert set(first) < set(runs) and len(runs) == 2  # run a is still there, run b is new
    (name_b,) = set(runs) - set(first)
    assert runs[name_b]["loss"]["config"]["lam"] == 0.001 and name_b.startswith("center_lam0.001_")
    assert runs[name_b]["train"]["frozen_epochs"] == 1 and runs[name_b]["eval"]["cmc_draws"] == 5
    (name_a,) = first
    assert (out / "runs" / name_a / "done.json").is_file() and runs[name_a]["loss"]["config"]["lam"] == 0.1
    # the CMC cell's figure holds one curve per λ, from the two kept runs
    assert sorted(label.split(" ")[0] for label in labels) == ["λ=0.001", "λ=0.1"]


@pytest.mark.slow
@pytest.mark.realdata
def test_notebook_01_new_epoch_count_trains_a_new_run_and_keeps_the_old(data_root, mobilenet_weights, tmp_path):
    out = tmp_path / "01"
    with LiveKernel("01") as k:
        k.set_parameters(DATA_ROOT=str(data_root), OUT_DIR=str(out), MINERS=["semi_hard"], EPOCHS=1, CMC_DRAWS=5,
                         SUBSET={"train": 4, "val": None, "test": 2})
        k.run("parameters", k.code_cells()[1], "train")
        first = _runs(out / "runs", "triplet")
        assert [c["train"]["frozen_epochs"] for c in first.values()] == [1]
        k.set_parameters(EPOCHS=2)
        k.run("parameters", "train")
        runs = _runs(out / "runs", "triplet")
        trained = int(k.eval('len(runs["semi_hard"].history)'))
        shown = k.eval('runs["semi_hard"].config.train.frozen_epochs')
    assert set(first) < set(runs) and len(runs) == 2
    (name_b,) = set(runs) - set(first)
    assert runs[name_b]["train"]["frozen_epochs"] == 2 and "frozen_epochs2" in name_b
    assert trained == 2 and shown == "2"  # the run the notebook now holds trained the new count
    (name_a,) = first
    assert (out / "runs" / name_a / "done.json").is_file()
    assert len((out / "runs" / name_a / "history.csv").read_text().splitlines()) == 1 + 1  # header + 1 epoch
