"""Recall@1 (P@1), R-precision and MAP@R: itemrec's evaluation against pytorch-metric-learning's
``AccuracyCalculator`` (its default FAISS exact k-NN) on the same embeddings, in one run.

itemrec's side is :func:`itemrec.evaluation.retrieval_report` on the neighbour engine
(:mod:`itemrec.evaluation.neighbours`): FAISS's flat search picks ``k + margin`` candidates,
which are re-ranked on exact pair distances by ``(distance, index)``; rows whose list cannot
be proved complete are redone from NumPy distance blocks.

For each size: random clustered 128-d embeddings, L2-normalised (so L2 and cosine rank alike), 100
points per class on average; the set is its own reference set, self excluded. The two run in turn,
``--repeats`` times each (itemrec, PML, itemrec, PML, ...), so that a burst of load on a shared
machine falls on both; it prints both implementations' values, their largest difference, each
one's seconds (every run, then the median) and the ratio of the medians PML / itemrec (above 1:
itemrec is faster).

    python bench/bench_pml_evaluation.py                 # 10,000 and 100,000 points, 3 runs each
    python bench/bench_pml_evaluation.py --sizes 10000   # quicker
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from itemrec._numeric import l2_normalize_rows


def make_data(n: int, dim: int = 128, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` L2-normalised ``dim``-d float32 points around ``n // 100`` random centres, and their labels."""
    rng = np.random.default_rng(seed)
    n_classes = max(2, n // 100)
    centres = rng.normal(size=(n_classes, dim)).astype(np.float32)
    labels = rng.integers(0, n_classes, n)
    x = centres[labels] + 2.5 * rng.normal(size=(n, dim)).astype(np.float32)
    return l2_normalize_rows(x, dtype=np.float32), labels.astype(np.int64)


def ours(x: np.ndarray, y: np.ndarray) -> tuple[dict[str, float], float]:
    """itemrec's values and seconds (the set is its own reference set)."""
    from itemrec.evaluation import retrieval_report

    t0 = time.perf_counter()
    rep = retrieval_report(x, y, ks=(1,), metric="l2")
    seconds = time.perf_counter() - t0
    return {"precision_at_1": float(rep.recall_at_k[1]), "r_precision": float(rep.r_precision),
            "map_at_r": float(rep.map_at_r)}, seconds


def pml(x: np.ndarray, y: np.ndarray) -> tuple[dict[str, float], float]:
    """pytorch-metric-learning's values and seconds on the same arrays."""
    import torch
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

    calc = AccuracyCalculator(include=("precision_at_1", "r_precision", "mean_average_precision_at_r"),
                              k="max_bin_count")  # its default k-NN: FAISS, exact L2
    t0 = time.perf_counter()
    got = calc.get_accuracy(torch.from_numpy(x), torch.from_numpy(y))
    seconds = time.perf_counter() - t0
    return {"precision_at_1": float(got["precision_at_1"]), "r_precision": float(got["r_precision"]),
            "map_at_r": float(got["mean_average_precision_at_r"])}, seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--repeats", type=int, default=3, help="runs of each implementation, in turn (default 3)")
    args = ap.parse_args()
    print(f"{'n':>8} {'metric':>15} {'itemrec':>10} {'PML':>10} {'|diff|':>9}")
    for n in args.sizes:
        x, y = make_data(n)
        times_a, times_b = [], []
        for _ in range(max(1, args.repeats)):
            a, ta = ours(x, y)
            b, tb = pml(x, y)
            times_a.append(ta)
            times_b.append(tb)
        for key in a:
            print(f"{n:>8} {key:>15} {a[key]:>10.6f} {b[key]:>10.6f} {abs(a[key] - b[key]):>9.2e}")
        ma, mb = float(np.median(times_a)), float(np.median(times_b))
        runs = ", ".join(f"{p:.2f}/{q:.2f}" for p, q in zip(times_a, times_b))
        print(f"{n:>8} {'seconds':>15} {ma:>10.2f} {mb:>10.2f}   PML / itemrec = {mb / ma:.2f}x"
              f"   (median of {len(times_a)}; runs itemrec/PML: {runs})")


if __name__ == "__main__":
    main()
