"""The notebooks as stored: paired with their percent-format .py, without outputs, parameters that rule.

Fast checks (no kernel). ``make test`` strips outputs first (``make strip``), so a
researcher may save an executed notebook; a notebook committed with outputs, or
whose .py says something else, fails here.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import jupytext
import nbformat
import pytest
from jupytext.compare import compare_notebooks

from itemrec.experiments import presets
from notebook_runner import NOTEBOOKS, assigned_names, is_clean, parameters_cell

STORED = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
KEYS = [p.name[:2] for p in STORED]


def test_every_notebook_has_its_pair_and_a_preset():
    assert KEYS == ["01", "02", "03", "04", "05"]
    assert sorted(p.name[:2] for p in NOTEBOOKS.glob("[0-9][0-9]_*.py")) == KEYS
    assert sorted(presets.PRESETS) == KEYS
    assert not (NOTEBOOKS / "_build").exists()  # no string-literal builders left


@pytest.mark.parametrize("path", STORED, ids=KEYS)
def test_stored_clean_and_equal_to_its_py(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert is_clean(nb), f"{path.name} has stored outputs: run `make strip`"
    assert nb.metadata["jupytext"]["formats"] == "ipynb,py:percent"
    py = path.with_suffix(".py")
    # jupytext's own comparison of the two representations (raises naming the first differing cell)
    compare_notebooks(jupytext.read(py), jupytext.read(path), fmt="py:percent")


@pytest.mark.parametrize("path", STORED, ids=KEYS)
def test_parameters_cell_selects_the_preset_and_no_later_cell_reassigns_a_parameter(path):
    key = path.name[:2]
    nb = nbformat.read(path, as_version=4)
    cell = parameters_cell(nb, path.name)
    src = cell.source
    assert "QUICK = True" in src and f'SIZES = presets.sizes("{key}", QUICK)' in src
    for name in presets.PRESETS[key]["quick"]:
        assert f'{name} = SIZES["{name}"]' in src, f"{path.name}: {name} is not taken from the preset"
    params = assigned_names(src) - {"presets"}
    assert {"QUICK", "OUT_DIR", "DATA_ROOT", "SEED"} <= params
    after = nb.cells[nb.cells.index(cell) + 1:]
    for c in after:
        if c.cell_type == "code":
            again = assigned_names(c.source) & params
            assert not again, f"{path.name}: a later cell reassigns {sorted(again)}:\n{c.source[:200]}"
    src_all = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "%matplotlib inline" in src_all


def test_nbstripout_makes_an_executed_notebook_storable(tmp_path):
    src = NOTEBOOKS / STORED[1].name
    nb = nbformat.read(src, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    code[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="trained\n")]
    code[1].execution_count = 7
    copy = tmp_path / src.name
    nbformat.write(nb, copy)
    shutil.copy(src.with_suffix(".py"), copy.with_suffix(".py"))
    assert not is_clean(nbformat.read(copy, as_version=4))
    subprocess.run([sys.executable, "-m", "nbstripout", str(copy)], check=True)
    stripped = nbformat.read(copy, as_version=4)
    assert is_clean(stripped)
    compare_notebooks(jupytext.read(copy.with_suffix(".py")), jupytext.read(copy), fmt="py:percent")


def test_editing_the_py_changes_the_notebook(tmp_path):
    src = STORED[1]
    for suffix in (".ipynb", ".py"):
        shutil.copy(src.with_suffix(suffix), tmp_path / src.with_suffix(suffix).name)
    py = tmp_path / src.with_suffix(".py").name
    text = py.read_text()
    assert "LAMBDA = 0.1 " in text
    py.write_text(text.replace("LAMBDA = 0.1 ", "LAMBDA = 0.003 "))
    ipynb = py.with_suffix(".ipynb")
    before = nbformat.read(ipynb, as_version=4)
    with pytest.raises(Exception):  # the pair disagrees until it is synced
        compare_notebooks(jupytext.read(py), jupytext.read(ipynb), fmt="py:percent")
    subprocess.run([sys.executable, "-m", "jupytext", "--sync", str(py)], check=True, capture_output=True)
    after = nbformat.read(ipynb, as_version=4)
    assert "LAMBDA = 0.003 " in parameters_cell(after).source
    assert "LAMBDA = 0.1 " in parameters_cell(before).source
    assert [c.get("id") for c in after.cells] == [c.get("id") for c in before.cells]  # same cells, edited


# -- presets ------------------------------------------------------------------------------------


def test_presets_modes_and_settings():
    assert presets.mode("02", True) == "quick"
    assert presets.mode("02", False, gpu=False) == "full" and presets.mode("02", False, gpu=True) == "gpu"
    assert presets.mode("04", False, gpu=True) == "full"  # no GPU sizes for 04
    gpu = presets.sizes("02", False, gpu=True)
    assert (gpu["BACKBONE"], gpu["INPUT_SIZE"], gpu["OPTIMIZER"]) == ("inception_v3_mixed8", 299, "sgd")
    assert (gpu["FROZEN_EPOCHS"], gpu["FINETUNE_EPOCHS"]) == (20, 30)  # the original's epochs
    for key, modes in presets.PRESETS.items():
        assert len({frozenset(m) for m in modes.values()}) == 1, f"{key}: modes set different names"
    params = presets.papermill_parameters("02", False, gpu=False, OUT_DIR="/x")
    assert params["QUICK"] is False and params["FROZEN_EPOCHS"] == 15 and params["OUT_DIR"] == "/x"
    ns = {"QUICK": True, "SEED": 0, "out": "lowercase is not a parameter", **presets.sizes("02", True)}
    assert presets.settings("02", ns)["mode"] == "quick"
    assert "out" not in presets.settings("02", ns)["parameters"]
    ns["FROZEN_EPOCHS"] = 5
    assert presets.settings("02", ns)["mode"] == "custom"
    ns.update(presets.sizes("02", False, gpu=False))
    assert presets.settings("02", ns)["mode"] == "full"
    sizes = presets.sizes("02", True)
    sizes["SUBSET"]["train"] = 99  # a copy: the preset is untouched
    assert presets.PRESETS["02"]["quick"]["SUBSET"]["train"] == 6
    with pytest.raises(KeyError, match="no presets"):
        presets.mode("09", True)
    with pytest.raises(KeyError, match="no 'gpu' preset"):
        presets.sizes("04", False, which="gpu")
