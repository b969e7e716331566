"""tf.data input pipelines: files → fitted, augmented, preprocessed float32 batches.

Robustness: before building the pipeline every file is probed
(:func:`itemrec.data.images.validate_files`: header, JPEG end marker, PNG
CRCs, in parallel threads). Bad files are dropped up front with a warning
listing the reasons (``strict=True`` raises instead), *together with their
labels*, so nothing crashes mid-epoch and no label moves onto another image.
Plain RGB/gray JPEGs and PNGs are decoded by ``tf.io.decode_image``; the
awkward rest (CMYK, 16-bit, alpha, EXIF rotation, GIF, BMP) by Pillow's
:func:`~itemrec.data.images.read_image` in a ``tf.numpy_function``, so both
routes give the same pixels as ``read_image``.

Order of operations: decode → aspect-preserving fit to ``image_size``
("pad": letterbox with zeros; "crop": centre crop; antialiased bilinear) →
cache (uint8) → shuffle → augment → batch → preprocess → prefetch.

Images come out as float32 in ``[0, 255]`` unless ``preprocess`` says
otherwise: a callable applied to each batch, or a backbone name whose Keras
``preprocess_input`` is used (``"mobilenet_v2"`` → ``[-1, 1]``).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from itemrec.data.images import BadImageError, read_image, validate_files
from itemrec.data.sampling import PKSampler

_PREPROCESS_MODULES = {
    "mobilenet_v2": "mobilenet_v2", "mobilenetv2": "mobilenet_v2", "mobilenet": "mobilenet",
    "mobilenet_v3": "mobilenet_v3", "resnet50": "resnet50", "resnet": "resnet", "resnet_v2": "resnet_v2",
    "vgg16": "vgg16", "vgg19": "vgg19", "inception_v3": "inception_v3", "xception": "xception",
    "efficientnet": "efficientnet", "efficientnet_v2": "efficientnet_v2", "densenet": "densenet",
    "convnext": "convnext",
}


@dataclass
class AugmentConfig:
    """Random augmentation applied per image (``0``/``False`` switches a part off).

    ``crop_area``/``crop_ratio``: random resized crop (area fraction and
    aspect range, as in Szegedy et al., "Going deeper with convolutions",
    2015), resized back to the image size; ``rotation``: max degrees;
    ``brightness`` (additive, on a 0..1 scale), ``contrast``, ``saturation``
    (multiplicative ranges ``1 ± x``), ``hue`` (max shift, 0..0.5).
    """

    flip: bool = True
    rotation: float = 10.0
    crop_area: tuple[float, float] = (0.6, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    brightness: float = 0.15
    contrast: float = 0.2
    saturation: float = 0.2
    hue: float = 0.02


def preprocess_function(preprocess: None | str | Callable) -> Callable | None:
    """Resolve ``preprocess`` (None, a callable, or a backbone name) to a callable on float32 0..255 batches."""
    if preprocess is None or callable(preprocess):
        return preprocess
    key = str(preprocess).lower().replace("-", "_")
    if key not in _PREPROCESS_MODULES:
        raise ValueError(f"unknown backbone {preprocess!r} for preprocess; known: {sorted(_PREPROCESS_MODULES)}")
    import importlib

    module = importlib.import_module(f"keras.applications.{_PREPROCESS_MODULES[key]}")
    return module.preprocess_input


def _fit_tf(img, size: tuple[int, int], mode: str):
    """TensorFlow twin of :func:`itemrec.data.images.fit_image` (antialiased bilinear)."""
    import tensorflow as tf

    th, tw = size
    shape = tf.cast(tf.shape(img)[:2], tf.float32)
    h, w = shape[0], shape[1]
    if mode == "pad":
        scale = tf.minimum(th / h, tw / w)
        nh = tf.clip_by_value(tf.cast(tf.round(h * scale), tf.int32), 1, th)
        nw = tf.clip_by_value(tf.cast(tf.round(w * scale), tf.int32), 1, tw)
    else:
        scale = tf.maximum(th / h, tw / w)
        nh = tf.maximum(tf.cast(tf.round(h * scale), tf.int32), th)
        nw = tf.maximum(tf.cast(tf.round(w * scale), tf.int32), tw)
    resized = tf.image.resize(img, tf.stack([nh, nw]), method="bilinear", antialias=True)
    resized = tf.clip_by_value(tf.round(resized), 0, 255)
    if mode == "pad":
        out = tf.image.pad_to_bounding_box(resized, (th - nh) // 2, (tw - nw) // 2, th, tw)
    else:
        out = tf.image.crop_to_bounding_box(resized, (nh - th) // 2, (nw - tw) // 2, th, tw)
    return tf.cast(tf.ensure_shape(out, (th, tw, 3)), tf.uint8)


def _decoder(size: tuple[int, int], mode: str, max_pixels: int):
    import tensorflow as tf

    def pil_read(path: bytes) -> np.ndarray:
        return read_image(path.decode("utf-8"), max_pixels=max_pixels)

    def decode(path, fast):
        def tf_route():
            img = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False, dtype=tf.uint8)
            return tf.ensure_shape(img, (None, None, 3))

        def pil_route():
            img = tf.numpy_function(pil_read, [path], tf.uint8, stateful=False)
            return tf.ensure_shape(img, (None, None, 3))

        img = tf.cond(fast, tf_route, pil_route)
        return _fit_tf(img, size, mode)

    return decode


def _augmenter(cfg: AugmentConfig, size: tuple[int, int]):
    import tensorflow as tf

    th, tw = size

    def augment(img, seed):
        seeds = tf.random.experimental.stateless_split(seed, num=8)
        x = tf.cast(img, tf.float32) / 255.0
        if cfg.crop_area and tuple(cfg.crop_area) != (1.0, 1.0):
            begin, csize, _ = tf.image.stateless_sample_distorted_bounding_box(
                tf.shape(x), tf.constant([[[0.0, 0.0, 1.0, 1.0]]]), seed=seeds[0],
                min_object_covered=0.0, aspect_ratio_range=cfg.crop_ratio, area_range=cfg.crop_area,
                max_attempts=20, use_image_if_no_bounding_boxes=True,
            )
            x = tf.image.resize(tf.slice(x, begin, csize), (th, tw), method="bilinear", antialias=True)
        if cfg.flip:
            x = tf.image.stateless_random_flip_left_right(x, seed=seeds[1])
        if cfg.rotation:
            angle = tf.random.stateless_uniform([], seeds[2], -cfg.rotation, cfg.rotation) * (np.pi / 180.0)
            c, s = tf.cos(angle), tf.sin(angle)
            cx, cy = (tw - 1) / 2.0, (th - 1) / 2.0
            # output pixel (x, y) samples input (c(x-cx) - s(y-cy) + cx, s(x-cx) + c(y-cy) + cy)
            transform = tf.stack([c, -s, cx - c * cx + s * cy, s, c, cy - s * cx - c * cy, 0.0, 0.0])
            x = tf.raw_ops.ImageProjectiveTransformV3(
                images=x[None], transforms=transform[None], output_shape=tf.constant([th, tw]),
                fill_value=0.0, interpolation="BILINEAR", fill_mode="CONSTANT",
            )[0]
        if cfg.brightness:
            x = tf.image.stateless_random_brightness(x, cfg.brightness, seed=seeds[3])
        if cfg.contrast:
            x = tf.image.stateless_random_contrast(x, 1 - cfg.contrast, 1 + cfg.contrast, seed=seeds[4])
        if cfg.saturation:
            x = tf.image.stateless_random_saturation(x, 1 - cfg.saturation, 1 + cfg.saturation, seed=seeds[5])
        if cfg.hue:
            x = tf.image.stateless_random_hue(x, cfg.hue, seed=seeds[6])
        return tf.ensure_shape(tf.clip_by_value(x, 0.0, 1.0) * 255.0, (th, tw, 3))

    return augment


def make_augmenter(cfg: AugmentConfig, size: tuple[int, int]) -> Callable:
    """Per-image augmentation ``(image (S, S, 3) uint8 or float 0..255, seed int64 [2]) -> float32 0..255``.

    Stateless (``tf.image.stateless_*``): the same seed gives the same result.
    Used inside ``tf.data`` maps (TensorFlow ops).
    """
    return _augmenter(cfg, (int(size[0]), int(size[1])))


def _checked(paths, labels, strict: bool, max_pixels: int, workers: int):
    paths = [os.fspath(p) for p in paths]
    labels = np.asarray(labels)
    if len(paths) != len(labels):
        raise ValueError(f"{len(paths)} paths but {len(labels)} labels")
    keep, fast, skipped = validate_files(paths, max_pixels=max_pixels, workers=workers)
    if skipped:
        if strict:
            path, reason = skipped[0]
            raise BadImageError(path, reason)
        shown = "; ".join(f"{p}: {r}" for p, r in skipped[:5])
        warnings.warn(f"skipping {len(skipped)} of {len(paths)} unreadable images ({shown}{' ...' if len(skipped) > 5 else ''})", stacklevel=3)
    if len(keep) == 0:
        raise ValueError(f"none of the {len(paths)} images can be read")
    return np.asarray(paths, dtype=object)[keep].astype(str), labels[keep], fast


def make_dataset(
    paths: Sequence[str | os.PathLike],
    labels: Sequence[int] | np.ndarray,
    image_size: int | tuple[int, int],
    preprocess: None | str | Callable = None,
    augment: bool | AugmentConfig = False,
    batch_size: int | None = 32,
    shuffle: bool = False,
    seed: int = 0,
    cache: bool | str | os.PathLike = False,
    resize_mode: str = "pad",
    strict: bool = False,
    drop_remainder: bool = False,
    max_pixels: int = 50_000_000,
    workers: int = 8,
    decoder: str = "auto",
):
    """A ``tf.data.Dataset`` of ``(images float32 (B, S, S, 3), labels int64 (B,))``.

    See the module docstring for the order of operations and the handling of
    bad files. ``cache``: ``True`` keeps decoded uint8 images in memory, a
    path caches them in files there. ``shuffle`` reshuffles every epoch
    (seeded). ``batch_size=None`` yields single images. ``decoder="pil"``
    decodes every file with Pillow instead of routing plain JPEG/PNG to
    ``tf.io.decode_image`` (``"auto"``); see ``bench/bench_data_pipeline.py``.
    """
    import tensorflow as tf

    if resize_mode not in ("pad", "crop"):
        raise ValueError(f"resize_mode must be 'pad' or 'crop', got {resize_mode!r}")
    size = (int(image_size), int(image_size)) if np.isscalar(image_size) else tuple(int(s) for s in image_size)
    prep = preprocess_function(preprocess)
    cfg = AugmentConfig() if augment is True else (augment or None)
    if decoder not in ("auto", "pil"):
        raise ValueError(f"decoder must be 'auto' or 'pil', got {decoder!r}")
    paths_k, labels_k, fast = _checked(paths, labels, strict, max_pixels, workers)
    if decoder == "pil":
        fast = np.zeros_like(fast)
    auto = tf.data.AUTOTUNE
    ds = tf.data.Dataset.from_tensor_slices((paths_k, fast, labels_k.astype(np.int64)))
    if shuffle and not cache:
        ds = ds.shuffle(len(paths_k), seed=seed, reshuffle_each_iteration=True)
    decode = _decoder(size, resize_mode, max_pixels)
    ds = ds.map(lambda p, f, y: (decode(p, f), y), num_parallel_calls=auto, deterministic=True)
    if cache:
        ds = ds.cache("" if cache is True else os.fspath(cache))
        if shuffle:
            ds = ds.shuffle(len(paths_k), seed=seed, reshuffle_each_iteration=True)
    if cfg is not None:
        aug = _augmenter(cfg, size)
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip((ds, seeds)).map(lambda xy, s: (aug(xy[0], s), xy[1]), num_parallel_calls=auto)
    else:
        ds = ds.map(lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=auto)
    if batch_size:
        ds = ds.batch(int(batch_size), drop_remainder=drop_remainder)
    if prep is not None:
        ds = ds.map(lambda x, y: (prep(x), y), num_parallel_calls=auto)
    return ds.prefetch(auto)


def make_pk_dataset(
    paths: Sequence[str | os.PathLike],
    labels: Sequence[int] | np.ndarray,
    image_size: int | tuple[int, int],
    P: int,
    K: int,
    seed: int = 0,
    n_batches: int | None = None,
    preprocess: None | str | Callable = None,
    augment: bool | AugmentConfig = False,
    cache: bool = True,
    resize_mode: str = "pad",
    strict: bool = False,
    max_pixels: int = 50_000_000,
    workers: int = 8,
):
    """P×K batches (:class:`~itemrec.data.sampling.PKSampler`) as a ``tf.data.Dataset``.

    Each iteration (epoch) yields ``n_batches`` new batches of ``P*K``
    images, class by class. With ``cache=True`` (default) every image is
    decoded once into memory (``N × S × S × 3`` bytes) and batches are gathered
    from it; otherwise each batch decodes its files.
    """
    import tensorflow as tf

    size = (int(image_size), int(image_size)) if np.isscalar(image_size) else tuple(int(s) for s in image_size)
    paths_k, labels_k, fast = _checked(paths, labels, strict, max_pixels, workers)
    sampler = PKSampler(labels_k, P, K, seed=seed, n_batches=n_batches)
    prep = preprocess_function(preprocess)
    cfg = AugmentConfig() if augment is True else (augment or None)
    auto = tf.data.AUTOTUNE
    decode = _decoder(size, resize_mode, max_pixels)
    idx = tf.data.Dataset.from_generator(lambda: iter(sampler), output_signature=tf.TensorSpec([P * K], tf.int64))
    idx = idx.apply(tf.data.experimental.assert_cardinality(len(sampler)))
    labels_t = tf.constant(labels_k.astype(np.int64))
    if cache:
        files = tf.data.Dataset.from_tensor_slices((paths_k, fast)).map(decode, num_parallel_calls=auto, deterministic=True)
        images = np.concatenate(list(files.batch(256).as_numpy_iterator()))
        images_t = tf.constant(images)
        ds = idx.map(lambda i: (tf.gather(images_t, i), tf.gather(labels_t, i)))
        ds = ds.unbatch()
    else:
        paths_t, fast_t = tf.constant(paths_k), tf.constant(fast)
        ds = idx.unbatch().map(lambda i: (decode(tf.gather(paths_t, i), tf.gather(fast_t, i)), tf.gather(labels_t, i)),
                               num_parallel_calls=auto, deterministic=True)
    if cfg is not None:
        aug = _augmenter(cfg, size)
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip((ds, seeds)).map(lambda xy, s: (aug(xy[0], s), xy[1]), num_parallel_calls=auto, deterministic=True)
    else:
        ds = ds.map(lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=auto, deterministic=True)
    ds = ds.batch(P * K, drop_remainder=True).apply(tf.data.experimental.assert_cardinality(len(sampler)))
    if prep is not None:
        ds = ds.map(lambda x, y: (prep(x), y), num_parallel_calls=auto)
    return ds.prefetch(auto)
