"""Run notebooks with papermill in a mode, their sizes injected, and keep the executed copies out of the repo.

    python notebooks/run_notebook.py 02                     # QUICK sizes
    python notebooks/run_notebook.py 01 02 --full           # full sizes (the GPU sizes when a GPU is there)
    python notebooks/run_notebook.py 02 -p LAMBDA 0.01      # any parameter of the parameters cell
    python notebooks/run_notebook.py 01 02 03 --full --readme-images   # and refresh the README figures

Papermill injects the parameters in a cell after the parameters cell, so the
mode's sizes (``itemrec.experiments.presets``) are injected with ``QUICK``.
Each run writes ``<out>/<notebook>/`` (``OUT_DIR``) and the executed copy
``<out>/<notebook>.ipynb``; the stored notebook is not touched.
"""

from __future__ import annotations

import argparse
import ast
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

# figures copied to readme_images/ by --readme-images: {notebook: {file in OUT_DIR: README file}}
README_FIGURES = {
    "01": {"cmc.png": "01_triplet_cmc.png", "val_far.png": "01_triplet_val_far.png",
           "top5_matches.png": "01_triplet_top5_matches.png", "curves_semi_hard.png": "01_triplet_curves_semi_hard.png"},
    "02": {"cmc.png": "02_center_cmc.png", "center_curves.png": "02_center_curves.png"},
    "03": {"confusion.png": "03_fashion_confusion.png", "predictions.png": "03_fashion_predictions.png",
           "best_curves.png": "03_fashion_best_curves.png"},
}


def notebook_path(key: str) -> Path:
    """The stored notebook whose name starts with ``key`` (``"02"``); ``SystemExit(2)`` when there is none."""
    found = sorted(HERE.glob(f"{key}_*.ipynb"))
    if len(found) != 1:
        raise SystemExit(f"error: no single notebook {key}_*.ipynb in {HERE} (found {[p.name for p in found]})")
    return found[0]


def _value(text: str) -> object:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text  # a bare word is a string, as with papermill -p


def main(argv: list[str] | None = None) -> int:
    import papermill as pm

    from itemrec.experiments import presets
    from itemrec.experiments.reporting import save_image_png

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("notebooks", nargs="+", help="notebook numbers, e.g. 01 02")
    ap.add_argument("--full", action="store_true", help="the full sizes (QUICK = False)")
    ap.add_argument("--out", type=Path, default=Path("/tmp/itemrec_notebooks"), help="folder for outputs and executed copies")
    ap.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    ap.add_argument("--readme-images", action="store_true", help="copy the key figures to readme_images/")
    ap.add_argument("--timeout", type=int, default=3600, help="seconds per cell")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for key in args.notebooks:
        path = notebook_path(key)
        out = (args.out / path.stem).resolve()
        params = presets.papermill_parameters(key, quick=not args.full, OUT_DIR=str(out),
                                              **{k: _value(v) for k, v in args.param})
        t0 = time.perf_counter()
        pm.execute_notebook(str(path), str(args.out / path.name), parameters=params, cwd=str(HERE),
                            kernel_name="python3", execution_timeout=args.timeout, progress_bar=False)
        print(f"{path.stem}: {time.perf_counter() - t0:.0f} s -> {args.out / path.name}")
        if args.readme_images:
            for src, dst in README_FIGURES.get(key, {}).items():
                save_image_png(out / src, REPO / "readme_images" / dst, max_side=900, colors=96)
    return 0


if __name__ == "__main__":
    sys.exit(main())
