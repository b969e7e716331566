"""tf.data input pipelines: files → fitted, augmented, preprocessed float32 batches.

One decode path: every file is decoded and fitted by Pillow, with
:func:`itemrec.data.images.read_fitted` (the function embedding, the gallery
and the service use) in a ``tf.numpy_function`` that runs in parallel map
threads (Pillow releases the GIL while decoding), so the pipeline gives the
same pixels as :func:`~itemrec.data.images.read_image` +
:func:`~itemrec.data.images.fit_image`: EXIF orientation in every format,
transparent pixels white (alpha, palette and colour-key ``tRNS``).

Robustness: before building the pipeline every file is probed
(:func:`itemrec.data.probe.validate_files`: header, JPEG end marker, PNG
CRCs, in parallel threads) and bad files are dropped with a warning listing
the reasons (``strict=True`` raises instead), *together with their labels*.
A file that passes the cheap probe but fails to decode (damaged JPEG scan
data) is skipped inside the pipeline with a warning naming it (``strict``:
:class:`~itemrec.data.images.BadImageError` when it is reached), so no epoch
stops on a bad file and no label moves onto another image.
:func:`make_pk_dataset` decodes every file up front (cached) or fully checks
it up front (``cache=False``), so its P×K batches never lose an image.

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

from itemrec.data.images import DEFAULT_WORKERS, BadImageError, load_images, read_fitted
from itemrec.data.probe import validate_files
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

    Applied in this order on 0..1 pixels, then clipped to [0, 1] and scaled back to 0..255.

    Attributes:
        flip: random horizontal flip.
        rotation: the largest rotation in degrees (uniform in ±rotation, bilinear, black fill).
        crop_area: random resized crop, the range of the crop's area as a fraction of the image
            (Szegedy et al., "Going deeper with convolutions", CVPR 2015), resized back to
            the image size; ``(1, 1)`` switches it off.
        crop_ratio: the crop's aspect-ratio range (width / height).
        brightness: the largest additive brightness change, on a 0..1 scale.
        contrast: contrast factor range ``1 ± contrast``.
        saturation: saturation factor range ``1 ± saturation``.
        hue: the largest hue shift, 0..0.5.
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
    """Resolve ``preprocess`` to a callable on float32 0..255 batches.

    Args:
        preprocess: ``None``, a callable (returned as it is), or a backbone / Keras
            applications module name (``"mobilenet_v2"``, ``"resnet50"``, ``"vgg16"``, ...;
            case-insensitive, ``-`` read as ``_``) whose ``preprocess_input`` is used.

    Returns:
        The callable, or ``None``.

    Raises:
        ValueError: an unknown backbone name.
    """
    if preprocess is None or callable(preprocess):
        return preprocess
    key = str(preprocess).lower().replace("-", "_")
    if key not in _PREPROCESS_MODULES:
        raise ValueError(f"unknown backbone {preprocess!r} for preprocess; known: {sorted(_PREPROCESS_MODULES)}")
    import importlib

    module = importlib.import_module(f"keras.applications.{_PREPROCESS_MODULES[key]}")
    return module.preprocess_input


class _SkipReport:
    """Files the pipeline skipped because they failed to decode; warns once per file."""

    def __init__(self) -> None:
        import threading

        self.skipped: dict[str, str] = {}
        self._lock = threading.Lock()

    def add(self, path: str, reason: str) -> None:
        with self._lock:
            new = path not in self.skipped
            self.skipped[path] = reason
        if new:
            warnings.warn(f"skipping unreadable image {path}: {reason}", stacklevel=2)


def _decoder(size: tuple[int, int], mode: str, max_pixels: int, report: _SkipReport):
    """``path -> (image (S, S, 3) uint8, ok bool)``: :func:`read_fitted` in a ``tf.numpy_function``.

    A file that fails gives ``ok = False`` and a black image (filtered out by the caller)
    and is reported to ``report`` (a warning naming it).
    """
    import tensorflow as tf

    th, tw = size
    blank = np.zeros((th, tw, 3), np.uint8)

    def pil_read(path: bytes) -> tuple[np.ndarray, np.bool_]:
        name = path.decode("utf-8")
        try:
            return read_fitted(name, size, mode, max_pixels), np.bool_(True)
        except BadImageError as exc:
            report.add(name, exc.reason)
            return blank, np.bool_(False)

    def decode(path):
        img, ok = tf.numpy_function(pil_read, [path], (tf.uint8, tf.bool), stateful=False)
        return tf.ensure_shape(img, (th, tw, 3)), tf.ensure_shape(ok, ())

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

    Args:
        cfg: what to apply (:class:`AugmentConfig`).
        size: (S_h, S_w), the images' size in pixels (random crops are resized back to it).

    Returns:
        The augmentation function.
    """
    return _augmenter(cfg, (int(size[0]), int(size[1])))


def _decoded_ok(x, ok, y):
    return ok


def _drop_ok(x, ok, y):
    return x, y


def _warn_skipped(skipped: list[tuple[str, str]], n: int, strict: bool) -> None:
    if not skipped:
        return
    if strict:
        path, reason = skipped[0]
        raise BadImageError(path, reason)
    shown = "; ".join(f"{p}: {r}" for p, r in skipped[:5])
    warnings.warn(f"skipping {len(skipped)} of {n} unreadable images ({shown}{' ...' if len(skipped) > 5 else ''})", stacklevel=4)


def _paths_labels(paths, labels) -> tuple[list[str], np.ndarray]:
    paths = [os.fspath(p) for p in paths]
    labels = np.asarray(labels)
    if len(paths) != len(labels):
        raise ValueError(f"{len(paths)} paths but {len(labels)} labels")
    return paths, labels


def _checked(paths, labels, strict: bool, max_pixels: int, workers: int, decode: bool):
    """Probe the files (fully decoding with ``decode``); the kept ``(paths, labels)``."""
    paths, labels = _paths_labels(paths, labels)
    keep, skipped = validate_files(paths, max_pixels=max_pixels, workers=workers, decode=decode)
    _warn_skipped(skipped, len(paths), strict)
    if len(keep) == 0:
        raise ValueError(f"none of the {len(paths)} images can be read")
    return np.asarray(paths, dtype=object)[keep].astype(str), labels[keep]


def _size(image_size: int | tuple[int, int]) -> tuple[int, int]:
    return (int(image_size), int(image_size)) if np.isscalar(image_size) else tuple(int(s) for s in image_size)


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
    workers: int = DEFAULT_WORKERS,
):
    """A ``tf.data.Dataset`` of ``(images float32 (B, S, S, 3), labels int64 (B,))``.

    See the module docstring for the order of operations and the handling of
    bad files. The files the pipeline skipped are in the returned dataset's ``skipped``
    dict (path -> reason), filled as the pipeline reaches them.

    Args:
        paths: N image files.
        labels: N integer labels.
        image_size: S or (S_h, S_w) in pixels.
        preprocess: ``None`` (float32 0..255), a callable on batches, or a backbone name
            (see :func:`preprocess_function`).
        augment: ``True`` for the default :class:`AugmentConfig`, a config, or ``False``.
        batch_size: B; ``None`` yields single images.
        shuffle: reshuffle every epoch (seeded).
        seed: the seed of the shuffle and the augmentation.
        cache: ``True`` keeps decoded uint8 images in memory, a path caches them in files
            there, ``False`` decodes every epoch.
        resize_mode: ``"pad"`` (letterbox) or ``"crop"`` (centre crop).
        strict: every file is fully decoded up front and the first bad one raises;
            otherwise bad files are skipped with a warning (up front, or when the
            pipeline reaches them).
        drop_remainder: drop a last, smaller batch.
        max_pixels: the largest ``width * height`` accepted per image.
        workers: threads for the up-front probe.

    Returns:
        The prefetched ``tf.data.Dataset``, with a ``skipped`` attribute.

    Raises:
        ValueError: ``len(paths) != len(labels)``, a bad ``resize_mode``, an unknown
            ``preprocess`` name, or no readable image.
        BadImageError: ``strict`` and a file that cannot be decoded.
    """
    import tensorflow as tf

    if resize_mode not in ("pad", "crop"):
        raise ValueError(f"resize_mode must be 'pad' or 'crop', got {resize_mode!r}")
    size = _size(image_size)
    prep = preprocess_function(preprocess)
    cfg = AugmentConfig() if augment is True else (augment or None)
    paths_k, labels_k = _checked(paths, labels, strict, max_pixels, workers, decode=strict)
    auto = tf.data.AUTOTUNE
    ds = tf.data.Dataset.from_tensor_slices((paths_k, labels_k.astype(np.int64)))
    if shuffle and not cache:
        ds = ds.shuffle(len(paths_k), seed=seed, reshuffle_each_iteration=True)
    report = _SkipReport()
    decode = _decoder(size, resize_mode, max_pixels, report)
    ds = ds.map(lambda p, y: (*decode(p), y), num_parallel_calls=auto, deterministic=True)
    ds = ds.filter(_decoded_ok).map(_drop_ok)
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
    ds = ds.prefetch(auto)
    ds.skipped = report.skipped
    return ds


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
    workers: int = DEFAULT_WORKERS,
):
    """P×K batches (:class:`~itemrec.data.sampling.PKSampler`) as a ``tf.data.Dataset``.

    Each iteration (epoch) yields ``n_batches`` new batches of ``P*K``
    images, class by class. With ``cache=True`` (default) every image is
    decoded once up front into memory (``N × S × S × 3`` bytes, parallel
    threads) and batches are gathered from it; otherwise every file is fully
    decoded once up front as a check and each batch decodes its files again.
    Either way a file that fails to decode is dropped (with its label) before
    the sampler is built, so a batch never comes up short.

    Args:
        paths: N image files.
        labels: N integer labels.
        image_size: S or (S_h, S_w) in pixels.
        P: classes per batch.
        K: images per class.
        seed: the seed of the sampler and the augmentation.
        n_batches: batches per epoch (default: the sampler's, images // (P*K)).
        preprocess: ``None``, a callable on batches, or a backbone name.
        augment: ``True``, an :class:`AugmentConfig`, or ``False``.
        cache: decode every image once into memory (see above).
        resize_mode: ``"pad"`` or ``"crop"``.
        strict: raise on the first file that cannot be decoded instead of dropping it.
        max_pixels: the largest ``width * height`` accepted per image.
        workers: decoding / probing threads.

    Returns:
        The prefetched ``tf.data.Dataset`` of (P*K, S_h, S_w, 3) float32 batches and (P*K,)
        int64 labels, its cardinality ``n_batches``.

    Raises:
        ValueError: ``len(paths) != len(labels)``, no readable image, a bad ``resize_mode``
            or ``preprocess`` name; from :class:`PKSampler`, bad P/K or fewer than P classes
            with two images.
        BadImageError: ``strict`` and a file that cannot be decoded.
    """
    import tensorflow as tf

    size = _size(image_size)
    if cache:
        paths_l, labels_l = _paths_labels(paths, labels)
        images, keep, skipped = load_images(paths_l, size, resize_mode, strict, max_pixels, workers=workers)
        _warn_skipped(skipped, len(paths_l), strict)
        if len(keep) == 0:
            raise ValueError(f"none of the {len(paths_l)} images can be read")
        labels_k = labels_l[keep]
    else:
        paths_k, labels_k = _checked(paths, labels, strict, max_pixels, workers, decode=True)
    sampler = PKSampler(labels_k, P, K, seed=seed, n_batches=n_batches)
    prep = preprocess_function(preprocess)
    cfg = AugmentConfig() if augment is True else (augment or None)
    auto = tf.data.AUTOTUNE
    idx = tf.data.Dataset.from_generator(lambda: iter(sampler), output_signature=tf.TensorSpec([P * K], tf.int64))
    idx = idx.apply(tf.data.experimental.assert_cardinality(len(sampler)))
    labels_t = tf.constant(labels_k.astype(np.int64))
    if cache:
        images_t = tf.constant(images)
        ds = idx.map(lambda i: (tf.gather(images_t, i), tf.gather(labels_t, i)))
        ds = ds.unbatch()
    else:
        decode = _decoder(size, resize_mode, max_pixels, _SkipReport())
        paths_t = tf.constant(paths_k)
        ds = idx.unbatch().map(lambda i: (decode(tf.gather(paths_t, i))[0], tf.gather(labels_t, i)),
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
