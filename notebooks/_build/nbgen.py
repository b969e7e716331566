"""Tiny helpers for writing notebooks from Python with nbformat, stored without outputs.

``write_notebook(path, [md("# Title"), params("QUICK = True"), code("x = 1")])``.
Each ``build_*.py`` script next to this file regenerates its notebooks:
``python notebooks/_build/build_01_03.py``.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import nbformat
from nbformat import v4

KERNEL = {"display_name": "Python 3", "language": "python", "name": "python3"}


def md(text: str):
    """A Markdown cell (common indentation removed)."""
    return v4.new_markdown_cell(textwrap.dedent(text).strip())


def code(src: str, tags: tuple[str, ...] = ()):
    """A code cell without outputs (common indentation removed)."""
    cell = v4.new_code_cell(textwrap.dedent(src).strip())
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def params(src: str):
    """The parameters cell (tagged ``parameters`` for papermill / the test runner)."""
    return code(src, ("parameters",))


def write_notebook(path: str | Path, cells: list) -> Path:
    """Write ``cells`` as a clean notebook (no outputs, execution counts None) and validate it."""
    nb = v4.new_notebook(cells=cells, metadata={"kernelspec": KERNEL, "language_info": {"name": "python"}})
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i:03d}"
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nbformat.validate(nb)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path
