"""Execute a notebook with injected parameters (papermill-style, with nbclient only).

``run_notebook(path, {"QUICK": True, "OUT_DIR": str(tmp)})`` finds the code cell
tagged ``parameters``, checks that every injected name is assigned there, appends
the new assignments to that cell's source (so the injected values win, and the
cell still documents the defaults), executes the notebook top to bottom in a
fresh ``python3`` kernel and returns the executed notebook and its wall time.
A failing cell raises ``nbclient.exceptions.CellExecutionError`` naming the cell.
"""

from __future__ import annotations

import ast
import os
import time
from pathlib import Path
from typing import Any

import nbformat


def parameters_cell(nb: Any, where: str = "notebook") -> Any:
    """The one code cell tagged ``parameters``; ``ValueError`` when there is none or several."""
    cells = [c for c in nb.cells if c.cell_type == "code" and "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise ValueError(f"{where}: expected one code cell tagged 'parameters', found {len(cells)}")
    return cells[0]


def assigned_names(source: str) -> set[str]:
    """Names assigned at the top level of ``source``."""
    names: set[str] = set()
    for node in ast.parse(source).body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        for t in targets:
            if isinstance(t, ast.Name):
                names.add(t.id)
    return names


def inject_parameters(nb: Any, params: dict[str, Any], where: str = "notebook") -> Any:
    """Append ``name = repr(value)`` lines for ``params`` to the parameters cell (in place)."""
    cell = parameters_cell(nb, where)
    unknown = sorted(set(params) - assigned_names(cell.source))
    if unknown:
        raise ValueError(f"{where}: parameters {unknown} are not assigned in its parameters cell")
    lines = [f"{k} = {v!r}" for k, v in params.items()]
    cell.source = cell.source.rstrip() + "\n\n# injected parameters\n" + "\n".join(lines) + "\n"
    return nb


def is_clean(nb: Any) -> bool:
    """True when no code cell has outputs or an execution count (the stored form)."""
    return all(not c.get("outputs") and c.get("execution_count") is None for c in nb.cells if c.cell_type == "code")


def run_notebook(
    path: str | os.PathLike,
    params: dict[str, Any] | None = None,
    save_to: str | os.PathLike | None = None,
    timeout: int = 900,
    cwd: str | os.PathLike | None = None,
) -> tuple[Any, float]:
    """Execute ``path`` with ``params`` injected; ``(executed notebook, seconds)``.

    ``save_to`` writes the executed copy; ``cwd`` is the kernel's working
    directory (default: the notebook's folder).
    """
    from nbclient import NotebookClient

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    inject_parameters(nb, params or {}, str(path))
    client = NotebookClient(
        nb, timeout=timeout, kernel_name="python3",
        resources={"metadata": {"path": str(cwd or path.parent)}},
    )
    t0 = time.perf_counter()
    try:
        client.execute()
    finally:
        if save_to is not None:
            Path(save_to).parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, save_to)
    return nb, time.perf_counter() - t0
