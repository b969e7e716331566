"""Run notebooks 01-03 in full mode and refresh their README figures.

    ITEMREC_DATA=/path/to/datasets ITEMREC_WEIGHTS=/path/to/weights \\
        python notebooks/_build/run_full_01_03.py [--out /tmp/nb_full] [--only 01 03]

Each notebook runs with ``QUICK = False`` and ``OUT_DIR = <out>/<notebook>``;
the executed copy is saved as ``<out>/<notebook>.ipynb`` (never in the repo)
and its key figures are copied to ``readme_images/`` as small PNGs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))

NOTEBOOKS = {
    "01": ("01_triplet_loss_item_recognition", {"cmc.png": "01_triplet_cmc.png", "val_far.png": "01_triplet_val_far.png",
                                                "top5_matches.png": "01_triplet_top5_matches.png",
                                                "curves_semi_hard.png": "01_triplet_curves_semi_hard.png"}),
    "02": ("02_center_loss_item_recognition", {"cmc.png": "02_center_cmc.png", "center_curves.png": "02_center_curves.png"}),
    "03": ("03_fashion_classifier_transfer_learning", {"confusion.png": "03_fashion_confusion.png",
                                                       "predictions.png": "03_fashion_predictions.png",
                                                       "best_curves.png": "03_fashion_best_curves.png"}),
}


def main(argv: list[str] | None = None) -> int:
    from notebook_runner import run_notebook

    from itemrec.experiments.reporting import save_image_png

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="/tmp/nb_full", help="folder for the executed notebooks and their outputs")
    parser.add_argument("--only", nargs="*", default=sorted(NOTEBOOKS), choices=sorted(NOTEBOOKS))
    args = parser.parse_args(argv)
    out = Path(args.out)
    for key in args.only:
        stem, figures = NOTEBOOKS[key]
        run_out = out / stem
        t0 = time.perf_counter()
        run_notebook(REPO / "notebooks" / f"{stem}.ipynb", {"QUICK": False, "OUT_DIR": str(run_out)},
                     save_to=out / f"{stem}.ipynb", timeout=3600)
        print(f"{stem}: {time.perf_counter() - t0:.0f} s")
        for src, dst in figures.items():
            save_image_png(run_out / src, REPO / "readme_images" / dst, max_side=900, colors=96)
        if key == "02":
            frames = sorted((run_out / "runs" / "center").glob("phase*/features/frame_*.png"))
            if frames:
                save_image_png(frames[-1], REPO / "readme_images" / "02_center_deep_features.png", max_side=500)
        print(json.dumps(json.loads((run_out / "results.json").read_text()), indent=1)[:4000])
    return 0


if __name__ == "__main__":
    sys.exit(main())
