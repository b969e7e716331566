"""Helpers of the notebook tests: papermill runs, stored-form checks, cells run one by one in a live kernel.

``run_notebook("02", {"OUT_DIR": str(tmp)})`` executes ``notebooks/02_*.ipynb``
with papermill in QUICK mode (the sizes of :mod:`itemrec.experiments.presets`
injected with ``QUICK``), in ``notebooks/``, and returns the executed notebook
and its wall time. A failing cell raises ``papermill.PapermillExecutionError``
naming the cell. :class:`LiveKernel` runs chosen cells of a notebook in one
kernel, the way a researcher re-runs cells after editing one.
"""

from __future__ import annotations

import ast
import os
import time
from pathlib import Path
from typing import Any

import nbformat

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def notebook_path(key: str) -> Path:
    """``notebooks/<key>_*.ipynb``."""
    found = sorted(NOTEBOOKS.glob(f"{key}_*.ipynb"))
    assert len(found) == 1, f"expected one notebook {key}_*.ipynb, found {found}"
    return found[0]


def parameters_cell(nb: Any, where: str = "notebook") -> Any:
    """The one code cell tagged ``parameters``; ``ValueError`` when there is none or several."""
    cells = [c for c in nb.cells if c.cell_type == "code" and "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise ValueError(f"{where}: expected one code cell tagged 'parameters', found {len(cells)}")
    return cells[0]


def assigned_names(source: str) -> set[str]:
    """Names bound at the top level of ``source`` (assignments, for/with targets, imports, defs)."""
    names: set[str] = set()

    def targets(t: ast.AST) -> None:
        if isinstance(t, ast.Name):
            names.add(t.id)
        elif isinstance(t, (ast.Tuple, ast.List)):
            for e in t.elts:
                targets(e)

    lines = [ln for ln in source.splitlines() if not ln.lstrip().startswith(("%", "!"))]  # magics
    for node in ast.parse("\n".join(lines)).body:
        if isinstance(node, ast.Assign):
            for t in node.targets:
                targets(t)
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign, ast.For)):
            targets(node.target)
        elif isinstance(node, ast.With):
            for item in node.items:
                if item.optional_vars is not None:
                    targets(item.optional_vars)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
    return names


def is_clean(nb: Any) -> bool:
    """True when no code cell has outputs or an execution count (the stored form)."""
    return all(not c.get("outputs") and c.get("execution_count") is None for c in nb.cells if c.cell_type == "code")


def image_outputs(nb: Any) -> int:
    """Outputs that show an image inline (PNG figures, JPEG photos, GIF animations), over all code cells."""
    return sum(any(k.startswith("image/") for k in o.get("data", {}))
               for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))


def bare_figures(nb: Any) -> list[int]:
    """Indices of code cells with a figure shown only as its text repr (``<Figure size ...>``, no image)."""
    return [i for i, c in enumerate(nb.cells) if c.cell_type == "code" for o in c.get("outputs", [])
            if str(o.get("data", {}).get("text/plain", "")).startswith("<Figure size")
            and not any(k.startswith("image/") for k in o.get("data", {}))]


def run_notebook(key: str, params: dict[str, Any], save_to: str | os.PathLike | None = None,
                 timeout: int = 900) -> tuple[Any, float]:
    """Execute notebook ``key`` with papermill in QUICK mode, ``params`` injected; ``(executed notebook, seconds)``."""
    import papermill as pm

    from itemrec.experiments import presets

    path = notebook_path(key)
    out = Path(save_to) if save_to is not None else Path(params["OUT_DIR"]) / f"{path.stem}.executed.ipynb"
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    pm.execute_notebook(str(path), str(out), parameters=presets.papermill_parameters(key, True, gpu=False, **params),
                        cwd=str(NOTEBOOKS), kernel_name="python3", execution_timeout=timeout, progress_bar=False)
    return nbformat.read(out, as_version=4), time.perf_counter() - t0


class LiveKernel:
    """One kernel running a notebook's cells on demand (``with LiveKernel("02") as k: k.run("parameters")``).

    Cells are named by tag (the first code cell carrying it, or the ``n``-th) or by index;
    :meth:`set_parameters` rewrites assignments in the parameters cell, as a researcher edits it.
    """

    def __init__(self, key: str, timeout: int = 900) -> None:
        from nbclient import NotebookClient

        self.nb = nbformat.read(notebook_path(key), as_version=4)
        self.client = NotebookClient(self.nb, timeout=timeout, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOKS)}})
        self._ctx = None

    def __enter__(self) -> "LiveKernel":
        self._ctx = self.client.setup_kernel()
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._ctx.__exit__(*exc)

    def index(self, tag: str, n: int = 0) -> int:
        found = [i for i, c in enumerate(self.nb.cells) if c.cell_type == "code" and tag in c.metadata.get("tags", [])]
        return found[n]

    def code_cells(self) -> list[int]:
        return [i for i, c in enumerate(self.nb.cells) if c.cell_type == "code"]

    def run(self, *cells: int | str) -> None:
        for cell in cells:
            i = self.index(cell) if isinstance(cell, str) else cell
            self.client.execute_cell(self.nb.cells[i], i)

    def set_parameters(self, **values: Any) -> None:
        """Replace (or add) ``NAME = value`` lines in the parameters cell."""
        cell = parameters_cell(self.nb)
        lines = cell.source.splitlines()
        for name, value in values.items():
            new = f"{name} = {value!r}"
            hit = [j for j, ln in enumerate(lines) if ln.split("=")[0].strip() == name and not ln.startswith(" ")]
            if hit:
                lines[hit[-1]] = new
            else:
                lines.append(new)
        cell.source = "\n".join(lines)

    def eval(self, expression: str) -> str:
        """The text an expression prints in the kernel."""
        cell = nbformat.v4.new_code_cell(f"print({expression})")
        self.nb.cells.append(cell)
        try:
            self.client.execute_cell(cell, len(self.nb.cells) - 1)
        finally:
            self.nb.cells.pop()
        return "".join(o.get("text", "") for o in cell.outputs if o.get("output_type") == "stream").strip()
