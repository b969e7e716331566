"""Training benchmarks, measured side by side in one run and printed as ratios.

1. Frozen phase: one epoch of the head trained on cached backbone features
   (:class:`itemrec.training.FeatureCache`) vs one epoch of the naive fit (the
   full model with a frozen backbone on image batches). Target: >= 10x faster.
   The one-off cost of filling the cache is printed too.
2. The full training pipeline of :func:`itemrec.training.run_experiment`
   (decoded images in memory -> tf.data gather of P×K index batches -> model
   -> in-batch batch-hard mining -> triplet loss -> update) vs a bare train
   step of the same compiled model on one in-memory batch
   (``train_on_batch``). Target: >= 0.9x the bare step rate.
3. JPEG files -> embeddings (:meth:`itemrec.embedder.ImageEmbedder.embed`,
   and the feature cache's :func:`itemrec.training.features.compute_features`) vs the bare forward
   pass on in-memory tensors. Target: >= 0.9x.

Data: the synthetic catalogue written as JPEGs to a temp dir. Model: MobileNetV2
(the local ImageNet weights when ``ITEMREC_WEIGHTS`` has them, else random
weights: the timings do not depend on the values). Times are the best of
``--repeats`` epochs/passes after a warm-up (tracing excluded), the candidates
of each comparison alternating. The CPU may be shared
with other work: ratios measured in the same run are the numbers to read.

    python bench/bench_training.py [--products 24] [--photos 16] [--size 96] [--repeats 7]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _interleaved_epochs(runs: dict, steps: int, repeats: int) -> dict:
    """Best (minimum) seconds per epoch of each ``name -> (model, dataset)``, epochs alternating.

    One warm-up epoch each (tracing), then ``repeats`` rounds of one epoch per
    candidate. On a shared CPU other processes only ever add time, so the
    minimum over alternating rounds is the least disturbed estimate of each.
    """
    times: dict[str, list[float]] = {name: [] for name in runs}
    for r in range(repeats + 1):
        for name, (model, ds) in runs.items():
            t0 = time.perf_counter()
            model.fit(ds, epochs=1, steps_per_epoch=steps, verbose=0, shuffle=False)
            if r:
                times[name].append(time.perf_counter() - t0)
    return {name: min(v) for name, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--products", type=int, default=24)
    parser.add_argument("--photos", type=int, default=16)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    import keras
    import numpy as np

    from itemrec import settings
    from itemrec.data.synthetic import write_catalogue
    from itemrec.embedder import ImageEmbedder
    from itemrec.losses import SoftmaxLoss, TripletLoss
    from itemrec.models import MetricLearningModel, attach_head, build_backbone, build_head, set_trainable
    from itemrec.training.data import batch_indices, make_train_dataset
    from itemrec.training.features import FeatureCache, compute_features, decode_images

    try:
        weights = str(settings.local_weights())
    except settings.DataNotFoundError:
        weights = None
    S = args.size
    print(f"bench_training: MobileNetV2 {S}px, weights={'local ImageNet' if weights else 'random'}, "
          f"{args.products} products x {args.photos} photos; CPU threads visible: {os.cpu_count()} (may be shared)")
    with tempfile.TemporaryDirectory() as tmp:
        ds = write_catalogue(os.path.join(tmp, "cat"), args.products, args.photos, image_size=64, seed=0)
        paths, labels = list(ds.paths), ds.labels
        n = len(paths)
        keras.utils.set_random_seed(0)
        backbone = set_trainable(build_backbone("mobilenet_v2", S, weights), "frozen")
        extractor = attach_head(backbone, None, preprocess="mobilenet_v2", name="features")

        # -- 1. frozen phase: cached features vs naive fit ---------------------------------
        FeatureCache(os.path.join(tmp, "warmup")).get_or_compute(extractor, paths[:64], "mobilenet_v2", weights, S)
        t0 = time.perf_counter()
        cache = FeatureCache(os.path.join(tmp, "cache"))
        feats = cache.get_or_compute(extractor, paths, "mobilenet_v2", weights, S)
        fill = time.perf_counter() - t0  # warm: the forward pass is traced already
        t0 = time.perf_counter()
        again = cache.get_or_compute(extractor, paths, "mobilenet_v2", weights, S)
        hit_time = time.perf_counter() - t0
        assert again.hit
        images, keep, _ = decode_images(paths, S)
        y = labels[keep]
        batch = 32
        idx_all = batch_indices(y, 1, batch, seed=0)[0]
        steps = idx_all.shape[0]
        head_c = build_head(feats.features.shape[1], 128, 0.2, 256)
        cached_model = MetricLearningModel(head_c, SoftmaxLoss(args.products))
        cached_model.compile(optimizer=keras.optimizers.Adam(1e-3))
        head_n = build_head(feats.features.shape[1], 128, 0.2, 256)
        naive_model = MetricLearningModel(attach_head(backbone, head_n, preprocess="mobilenet_v2"), SoftmaxLoss(args.products))
        naive_model.compile(optimizer=keras.optimizers.Adam(1e-3))
        t = _interleaved_epochs({"cached": (cached_model, make_train_dataset(feats.features, y, idx_all)),
                                 "naive": (naive_model, make_train_dataset(images, y, idx_all))}, steps, args.repeats)
        t_cached, t_naive = t["cached"], t["naive"]
        print("\n1. frozen-phase epoch (%d images, %d steps of %d)" % (n, steps, batch))
        print(f"   naive fit (backbone every epoch): {t_naive:8.3f} s/epoch")
        print(f"   cached features:                 {t_cached:8.3f} s/epoch   -> {t_naive / t_cached:6.1f}x faster (target >= 10x)")
        print(f"   filling the cache once: {fill:.2f} s (decode + backbone); a cache hit: {hit_time * 1000:.0f} ms")
        for epochs in (5, 20):
            print(f"   {epochs} epochs incl. filling the cache: naive {epochs * t_naive:.1f} s, cached "
                  f"{fill + epochs * t_cached:.1f} s -> {epochs * t_naive / (fill + epochs * t_cached):.1f}x")

        # -- 2. full pipeline (tf.data + PxK + mining + loss) vs bare train step ----------------
        P, K = 8, 4
        set_trainable(backbone, 20)
        head_t = build_head(feats.features.shape[1], 128, 0.2, 256)
        model = MetricLearningModel(attach_head(backbone, head_t, preprocess="mobilenet_v2"), TripletLoss(0.2, "batch_hard"))
        model.compile(optimizer=keras.optimizers.Adam(1e-5))
        pk = batch_indices(y, 1, P * K, seed=0, p=P, k=K)[0]
        steps_pk = pk.shape[0]
        import tensorflow as tf

        xb = tf.constant(images[pk[0]].astype(np.float32))
        yb = tf.constant(y[pk[0]].astype(np.int32))
        t = _interleaved_epochs({"pipeline": (model, make_train_dataset(images, y, pk)),
                                 "bare": (model, tf.data.Dataset.from_tensors((xb, yb)).repeat())}, steps_pk, args.repeats)
        t_pipe, t_bare = t["pipeline"], t["bare"]
        print(f"\n2. training step, P x K = {P} x {K}, top 20 backbone layers trainable, batch-hard triplet")
        print(f"   bare step: fit on one in-memory batch tensor:  {t_bare / steps_pk * 1000:8.1f} ms/step")
        print(f"   full pipeline (tf.data PxK gather + fit):    {t_pipe / steps_pk * 1000:8.1f} ms/step"
              f"   -> {t_bare / t_pipe:5.2f}x the bare rate (target >= 0.9x)")

        # -- 3. JPEG files -> embeddings vs bare forward pass -----------------------------
        emb_model = attach_head(backbone, head_t, preprocess="mobilenet_v2")
        embedder = ImageEmbedder(emb_model, S, batch_size=64)
        x_mem = images.astype(np.float32)
        embedder.embed(paths[:64])
        for b in range(0, 128, 64):
            emb_model.predict_on_batch(x_mem[b : b + 64])
        t_files, t_fwd, t_cachepath = [], [], []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            embedder.embed(paths)
            t_files.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            for b in range(0, n, 64):
                emb_model.predict_on_batch(x_mem[b : b + 64])
            t_fwd.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            compute_features(emb_model, paths, S, batch_size=64)
            t_cachepath.append(time.perf_counter() - t0)
        f, w, c = (min(v) for v in (t_files, t_fwd, t_cachepath))
        print(f"\n3. embeddings of {n} JPEG files, batches of 64")
        print(f"   bare forward pass on in-memory tensors:       {n / w:8.1f} img/s")
        print(f"   ImageEmbedder.embed (Pillow decode):          {n / f:8.1f} img/s   -> {w / f:5.2f}x (target >= 0.9x)")
        print(f"   feature cache's compute_features:             {n / c:8.1f} img/s   -> {w / c:5.2f}x")


if __name__ == "__main__":
    main()
