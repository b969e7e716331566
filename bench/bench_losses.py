"""Time the vectorised triplet losses (keras.ops) against a NumPy triplet loop.

Run: ``python bench/bench_losses.py`` (any ``KERAS_BACKEND``). Prints, per
miner, the milliseconds per loss evaluation of the keras.ops version
(eager, after one warm-up call) and of the plain NumPy loop over every
triplet, measured side by side in this run, and their ratio. Also shows how
the (B, B, B) triplet tensor scales with the batch size.
"""

from __future__ import annotations

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402


def numpy_loop(x: np.ndarray, y: np.ndarray, miner: str, margin: float) -> float:
    """The slow reference: squared L2, explicit loops over anchors, positives, negatives."""
    b = len(y)
    d = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    losses = []
    for a in range(b):
        pos = [p for p in range(b) if p != a and y[p] == y[a]]
        neg = [n for n in range(b) if y[n] != y[a]]
        if not pos or not neg:
            continue
        if miner == "batch_all":
            losses += [max(d[a, p] - d[a, n] + margin, 0.0) for p in pos for n in neg]
        elif miner == "batch_hard":
            losses.append(max(max(d[a, p] for p in pos) - min(d[a, n] for n in neg) + margin, 0.0))
        else:  # semi_hard
            for p in pos:
                farther = [d[a, n] for n in neg if d[a, n] > d[a, p]]
                dn = min(farther) if farther else max(d[a, n] for n in neg)
                losses.append(max(d[a, p] - dn + margin, 0.0))
    if miner == "batch_all":
        losses = [v for v in losses if v > 1e-16]
    return float(np.mean(losses)) if losses else 0.0


def timeit(fn, repeat: int) -> float:
    fn()  # warm-up
    t = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t) / repeat * 1e3


def main() -> None:
    import keras
    from keras import ops

    from itemrec.losses import TripletLoss

    print(f"backend={keras.backend.backend()}  D=128  classes=B/4")
    rng = np.random.default_rng(0)
    for b in (64, 128, 256):
        x = rng.normal(size=(b, 128)).astype(np.float32)
        y = rng.integers(0, b // 4, size=b)
        xt, yt = ops.convert_to_tensor(x), ops.convert_to_tensor(y)
        for miner in ("batch_all", "batch_hard", "semi_hard"):
            loss = TripletLoss(margin=1.0, miner=miner)
            vec_ms = timeit(lambda: ops.convert_to_numpy(loss.compute(xt, yt)[0]), repeat=5)
            line = f"B={b:4d} {miner:11s} keras.ops {vec_ms:8.2f} ms"
            if b <= 128:
                ref_ms = timeit(lambda: numpy_loop(x.astype(np.float64), y, miner, 1.0), repeat=1)
                got = float(ops.convert_to_numpy(loss.compute(xt, yt)[0]))
                want = numpy_loop(x.astype(np.float64), y, miner, 1.0)
                line += f"   numpy loop {ref_ms:9.2f} ms   speed-up x{ref_ms / vec_ms:7.1f}   |diff| {abs(got - want):.1e}"
            print(line, flush=True)


if __name__ == "__main__":
    main()
