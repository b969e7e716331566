"""Input-pipeline throughput beside the MobileNetV2 forward pass it has to feed.

JPEG files (the Grocery Store train split via ITEMREC_DATA, or the synthetic
catalogue written to a temp folder when that is absent) -> fitted, MobileNetV2-
preprocessed 160 px float32 batches of 32. Measured side by side in one run:

* up-front file validation (header / end-marker / CRC probes, threads), and the
  full-decode check (``decode=True``);
* ``make_dataset`` (every file through Pillow's ``read_fitted`` in a
  numpy_function, the one decode path): one warm-up pass, then a timed epoch, no cache;
* the MobileNetV2 (alpha 1.0, ImageNet no-top weights from ITEMREC_WEIGHTS if
  present, random otherwise) forward pass at 160 px on in-memory batches;
* the synthetic catalogue renderer at 64 px (target >= 200 images/s).

The target is pipeline >= 3x the forward pass, so that the model never waits.
On a shared machine the numbers move with the other load: say so with them.

Run: python bench/bench_data_pipeline.py [--limit N]
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")



def source(limit: int):
    from itemrec import settings
    from itemrec.data.loaders import load_grocery

    try:
        ds = load_grocery().split("train")
        name = "grocery-store train"
    except settings.DataNotFoundError:
        from itemrec.data.synthetic import write_catalogue

        tmp = tempfile.mkdtemp(prefix="itemrec-bench-")
        atexit.register(shutil.rmtree, tmp, True)
        ds = write_catalogue(tmp, n_products=40, photos_per_product=min(30, -(-limit // 40)), image_size=348)
        name = f"synthetic catalogue 348 px in {tmp}"
    paths, labels = ds.paths[:limit], ds.labels[:limit]
    return name, list(paths), labels


def epoch_rate(ds) -> float:
    n, t = 0, time.perf_counter()
    for x, _ in ds:
        n += int(x.shape[0])
    return n / (time.perf_counter() - t)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=1600, help="files to use (default 1600)")
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()

    import keras
    import tensorflow as tf

    from itemrec.data.probe import validate_files
    from itemrec.data.pipeline import make_dataset
    from itemrec.data.synthetic import render_catalogue

    name, paths, labels = source(args.limit)
    print(f"data: {name}, {len(paths)} files; {os.cpu_count()} CPU cores (shared: numbers vary with other load)")

    t = time.perf_counter()
    keep, skipped = validate_files(paths)
    v_rate = len(paths) / (time.perf_counter() - t)
    print(f"validation (cheap probe): {v_rate:8.1f} files/s  ({len(keep)} ok, {len(skipped)} bad)")
    t = time.perf_counter()
    validate_files(paths, decode=True)
    print(f"validation (full decode): {len(paths) / (time.perf_counter() - t):8.1f} files/s")

    ds = make_dataset(paths, labels, args.size, preprocess="mobilenet_v2", batch_size=args.batch)
    for _ in ds.take(3):  # trace / warm up
        pass
    p_rate = epoch_rate(ds)
    print(f"pipeline (Pillow decode + fit): {p_rate:8.1f} images/s")

    try:
        from itemrec import settings

        weights = str(settings.local_weights())
    except Exception:  # noqa: BLE001 - weights are optional here
        weights = None
    model = keras.applications.MobileNetV2(include_top=False, alpha=1.0, weights=weights, input_shape=(args.size, args.size, 3), pooling="avg")
    x = tf.random.uniform((args.batch, args.size, args.size, 3), -1, 1)
    fwd = tf.function(lambda t: model(t, training=False))
    fwd(x)
    n_batches = 12
    t = time.perf_counter()
    for _ in range(n_batches):
        fwd(x).numpy()
    m_rate = n_batches * args.batch / (time.perf_counter() - t)
    print(f"MobileNetV2 forward {args.size} px (weights={'imagenet-local' if weights else 'random'}): {m_rate:8.1f} images/s")
    print(f"ratio pipeline / forward: {p_rate / m_rate:5.2f}x  (target >= 3x)")

    t = time.perf_counter()
    cat = render_catalogue(n_products=20, photos_per_product=25, image_size=64)
    s_rate = len(cat.photos) / (time.perf_counter() - t)
    print(f"synthetic render 64 px: {s_rate:8.1f} images/s  (target >= 200)")


if __name__ == "__main__":
    main()
