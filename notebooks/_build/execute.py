"""Run a notebook top to bottom with nbclient, parameters injected, and save the executed copy.

    python notebooks/_build/execute.py notebooks/04_packed_scene_clustering.ipynb /tmp/nb_full/04.ipynb \\
        -p QUICK=False -p README_IMAGES='"../readme_images"'

Each ``-p NAME=VALUE`` (VALUE a Python literal) is appended to the cell tagged
``parameters``, so it overrides that setting; the kernel runs in ``notebooks/``.
The stored notebook is not modified. Prints each code cell's wall time.
"""

from __future__ import annotations

import argparse
import ast
import sys
import time
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]


def _param(text: str) -> tuple[str, object]:
    name, sep, value = text.partition("=")
    if not sep or not name.isidentifier():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    try:
        return name, ast.literal_eval(value)
    except (ValueError, SyntaxError) as exc:
        raise argparse.ArgumentTypeError(f"{name}: {value!r} is not a Python literal (quote strings twice)") from exc


def _seconds(cell) -> float | None:
    ex = cell.metadata.get("execution", {})
    a, b = ex.get("iopub.execute_input"), ex.get("shell.execute_reply")
    if not (a and b):
        return None
    parse = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00"))  # noqa: E731
    return (parse(b) - parse(a)).total_seconds()


def main(argv: list[str] | None = None) -> int:
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("notebook", type=Path)
    ap.add_argument("executed", type=Path, help="where to write the executed copy")
    ap.add_argument("-p", "--param", type=_param, action="append", default=[], metavar="NAME=VALUE")
    ap.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    args = ap.parse_args(argv)
    nb = nbformat.read(args.notebook, as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    if len(cells) != 1:
        ap.error(f"{args.notebook} needs exactly one cell tagged 'parameters' (has {len(cells)})")
    if args.param:
        cells[0].source += "\n# injected by execute.py\n" + "\n".join(f"{k} = {v!r}" for k, v in args.param)
    start = time.perf_counter()
    status = 0
    try:
        NotebookClient(nb, timeout=args.timeout, kernel_name="python3", resources={"metadata": {"path": str(HERE)}}).execute()
    except CellExecutionError as exc:
        print(exc, file=sys.stderr)
        status = 1
    finally:
        args.executed.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, args.executed)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and (s := _seconds(cell)) is not None:
            print(f"cell {i:3d} {s:8.1f} s  {cell.source.splitlines()[0][:70] if cell.source else ''}")
    print(f"{args.notebook.name}: {time.perf_counter() - start:.1f} s in all -> {args.executed}")
    return status


if __name__ == "__main__":
    sys.exit(main())
