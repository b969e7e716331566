"""CMC + MAP@R + VAL/FAR on N × N embeddings: chunked engine vs the full-matrix NumPy version.

Each variant runs in its own subprocess so its peak memory (ru_maxrss) is its own;
both see the same random clustered data (``--n`` points, ``--dim`` dims, ``--classes``
classes, the set is its own reference set with self excluded). Prints the time of
each metric, the totals, their ratio and the peak memory, and checks that both give
the same numbers.

    python bench/bench_evaluation.py                 # 20,000 × 20,000, 128-d
    python bench/bench_evaluation.py --n 5000        # quicker
    python bench/bench_evaluation.py --large 100000  # chunked only: CMC + MAP@R at 100k × 100k
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

TARGET_FAR = 1e-3
MAX_RANK = 10


def make_data(n: int, dim: int, n_classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, dim)).astype(np.float32)
    labels = rng.integers(0, n_classes, n)
    x = centres[labels] + 1.8 * rng.normal(size=(n, dim)).astype(np.float32)
    return x.astype(np.float32), labels.astype(np.int64)


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_chunked(x, y) -> dict:
    from itemrec.evaluation import cmc, evaluate_threshold, fit_threshold, retrieval_report

    out, t = {}, {}
    t0 = time.perf_counter()
    out["cmc"] = cmc(x, y, x, y, MAX_RANK, exclude_self=True).mean.tolist()
    t["cmc"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    rep = retrieval_report(x, y, ks=(1,))
    out["map_at_r"], out["r_precision"] = rep.map_at_r, rep.r_precision
    t["map_at_r"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    # the same set for fitting and reporting here only to compare the two implementations
    th = fit_threshold(x, y, TARGET_FAR)
    rep = evaluate_threshold(th, x, y)
    out["threshold"], out["val"], out["far"] = th.value, rep.val, rep.far
    t["val_far"] = time.perf_counter() - t0
    return {"results": out, "times": t}


def run_full(x, y) -> dict:
    out, t = {}, {}
    t0 = time.perf_counter()
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    d = 1.0 - xn @ xn.T
    np.fill_diagonal(d, np.inf)
    same = y[:, None] == y[None, :]
    np.fill_diagonal(same, False)
    t["distances"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    best = np.where(same, d, np.inf).min(axis=1)
    ranks = 1 + ((d < best[:, None]) & ~same).sum(axis=1)
    out["cmc"] = [float(np.mean(ranks <= r)) for r in range(1, MAX_RANK + 1)]
    t["cmc"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    r = same.sum(axis=1)
    order = np.argsort(d, axis=1)[:, : r.max()]
    rel = np.take_along_axis(same, order, axis=1)
    pos = np.arange(1, order.shape[1] + 1)
    within = pos[None, :] <= r[:, None]
    prec = np.cumsum(rel, axis=1) / pos
    valid = r > 0
    out["map_at_r"] = float(np.mean(((prec * rel * within).sum(1) / np.maximum(r, 1))[valid]))
    out["r_precision"] = float(np.mean(((rel & within).sum(1) / np.maximum(r, 1))[valid]))
    del order, rel, prec, within
    t["map_at_r"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    upper = np.triu(np.ones(d.shape, dtype=bool), 1)
    ds = d[upper & same]
    dd = np.sort(d[upper & ~same])
    k = int(np.floor(TARGET_FAR * len(dd)))
    lo, hi = float(dd[k - 1]), float(dd[k])
    value = (lo + hi) / 2 if lo < hi else float(np.nextafter(hi, -np.inf))
    out["threshold"] = value
    out["val"] = float(np.mean(ds <= value))
    out["far"] = float(np.mean(dd <= value))
    t["val_far"] = time.perf_counter() - t0
    return {"results": out, "times": t}


def large(n: int, dim: int, n_classes: int) -> None:
    """Chunked CMC + MAP@R on n × n (the full matrix would not fit in memory)."""
    from itemrec.evaluation import cmc, retrieval_report

    x, y = make_data(n, dim, n_classes)
    base = rss_mb()
    t0 = time.perf_counter()
    c = cmc(x, y, x, y, MAX_RANK, exclude_self=True)
    t1 = time.perf_counter()
    rep = retrieval_report(x, y, ks=(1,))
    t2 = time.perf_counter()
    print(f"{n:,} × {n:,}, {dim}-d, {n_classes} classes (full float32 matrix would need {n * n * 4 / 2**30:.1f} GiB)")
    print(f"chunked CMC {t1 - t0:.1f} s (CMC@1 {c.mean[0]:.4f}), MAP@R {t2 - t1:.1f} s (MAP@R {rep.map_at_r:.4f}, "
          f"R-precision {rep.r_precision:.4f}); peak RSS {rss_mb():.0f} MB, {rss_mb() - base:.0f} MB over the data")


def child(variant: str, n: int, dim: int, n_classes: int) -> None:
    x, y = make_data(n, dim, n_classes)
    base = rss_mb()
    t0 = time.perf_counter()
    res = (run_chunked if variant == "chunked" else run_full)(x, y)
    res["total_s"] = time.perf_counter() - t0
    res["peak_rss_mb"] = rss_mb()
    res["base_rss_mb"] = base
    print(json.dumps(res))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--classes", type=int, default=200)
    parser.add_argument("--large", type=int, metavar="N", help="run only the chunked CMC + MAP@R on N × N")
    parser.add_argument("--variant", choices=("chunked", "full"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.large:
        large(args.large, args.dim, max(args.classes, args.large // 100))
        return 0
    if args.variant:
        child(args.variant, args.n, args.dim, args.classes)
        return 0
    print(f"{args.n:,} × {args.n:,} embeddings, {args.dim}-d, {args.classes} classes, cosine; "
          f"{os.cpu_count()} CPUs (shared with other users: timings are noisy)")
    runs = {}
    for variant in ("chunked", "full"):
        cmd = [sys.executable, __file__, "--variant", variant, "--n", str(args.n), "--dim", str(args.dim),
               "--classes", str(args.classes)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"{variant} failed:\n{proc.stderr}")
            return 1
        runs[variant] = json.loads(proc.stdout.strip().splitlines()[-1])
    c, f = runs["chunked"], runs["full"]
    print(f"{'':12s}{'chunked':>12s}{'full matrix':>14s}")
    for key in ("cmc", "map_at_r", "val_far"):
        print(f"{key + ' s':12s}{c['times'][key]:12.2f}{f['times'][key]:14.2f}")
    print(f"{'(distances)':12s}{'-':>12s}{f['times']['distances']:14.2f}")
    print(f"{'total s':12s}{c['total_s']:12.2f}{f['total_s']:14.2f}   full/chunked = {f['total_s'] / c['total_s']:.2f}")
    print(f"{'peak RSS MB':12s}{c['peak_rss_mb']:12.0f}{f['peak_rss_mb']:14.0f}   full/chunked = "
          f"{f['peak_rss_mb'] / c['peak_rss_mb']:.2f}")
    print(f"{'  over data':12s}{c['peak_rss_mb'] - c['base_rss_mb']:12.0f}{f['peak_rss_mb'] - f['base_rss_mb']:14.0f}")
    rc, rf = c["results"], f["results"]
    print(f"results: CMC@1 {rc['cmc'][0]:.4f} / {rf['cmc'][0]:.4f}, CMC@10 {rc['cmc'][-1]:.4f} / {rf['cmc'][-1]:.4f}, "
          f"MAP@R {rc['map_at_r']:.5f} / {rf['map_at_r']:.5f}, R-precision {rc['r_precision']:.5f} / "
          f"{rf['r_precision']:.5f}, threshold@FAR={TARGET_FAR:g} {rc['threshold']:.6f} / {rf['threshold']:.6f}, "
          f"VAL {rc['val']:.5f} / {rf['val']:.5f}, FAR {rc['far']:.6f} / {rf['far']:.6f}")
    agree = (np.allclose(rc["cmc"], rf["cmc"], atol=1e-4) and abs(rc["map_at_r"] - rf["map_at_r"]) < 1e-4
             and abs(rc["val"] - rf["val"]) < 1e-4 and abs(rc["far"] - rf["far"]) < 1e-5)
    print("agree:", agree)
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
