"""On-disk cache of frozen-backbone features, so the frozen phase decodes and runs the backbone once.

With the backbone frozen (and no augmentation), every epoch of the first
training phase feeds the same images through the same function
``image -> GAP(backbone(preprocess(image)))``. :class:`FeatureCache` computes
those pooled features once and stores them under a key that changes whenever
the function or its inputs could:

* the backbone name, the weights identity (SHA-256 of the weights file, or of
  the weight values for ImageNet/random weights), the input size, the resize
  mode and the preprocessing function;
* the Keras version and the cache format version;
* the ordered list of ``(absolute path, size in bytes, mtime in ns)`` of the images.

Touching, replacing or adding any image, or changing any of the settings,
gives a new key (a miss); the old entry is simply no longer used. Entries are
``<key>.npz`` (features, kept indices) plus ``<key>.json`` (what the key was
made of, and the skipped files), written atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

FORMAT_VERSION = 1


@dataclass
class CachedFeatures:
    """Features of the images that could be read: ``features[i]`` is image ``keep[i]`` of the request.

    Attributes:
        features: (M, D) float32 pooled backbone features, M ≤ N requested images.
        keep: (M,) int64 positions, in the requested paths, of the images that were read.
        skipped: ``(path, reason)`` of each image that could not be read.
        key: the cache key (hex), ``""`` when computed outside the cache.
        hit: whether the features came from the cache.
    """

    features: np.ndarray
    keep: np.ndarray
    skipped: list[tuple[str, str]]
    key: str
    hit: bool


def file_signature(paths: Sequence[str | os.PathLike]) -> list[tuple[str, int, int]]:
    """``(absolute path, size, mtime_ns)`` of each image, the part of a cache key that sees the files.

    Args:
        paths: image paths (``~`` expanded, symlinks resolved).

    Returns:
        One ``(absolute path, size in bytes, mtime in nanoseconds)`` per path, in order.

    Raises:
        FileNotFoundError: a file cannot be accessed; the message names it.
    """
    out = []
    for p in paths:
        path = Path(p).expanduser().resolve()
        try:
            st = path.stat()
        except OSError as exc:
            raise FileNotFoundError(f"image {path} cannot be accessed for the feature cache ({exc})") from exc
        out.append((str(path), int(st.st_size), int(st.st_mtime_ns)))
    return out


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes.

    Args:
        path: the file.
        chunk: bytes read at a time (default 1 MiB).

    Returns:
        The 64-character hex digest.
    """
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def weights_hash(model: Any) -> str:
    """Hex SHA-256 over a Keras model's weight arrays (dtype, shape and bytes, in order).

    Args:
        model: a Keras model (or anything with ``weights``).

    Returns:
        The 64-character hex digest.
    """
    h = hashlib.sha256()
    for w in model.weights:
        arr = np.ascontiguousarray(np.asarray(w.numpy() if hasattr(w, "numpy") else w))
        h.update(f"{arr.dtype.str}{arr.shape}".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def weights_identity(weights: Any, model: Any | None = None) -> str:
    """Identity of backbone weights: ``file:<sha256>`` for a weights file, else ``values:<sha256>`` of ``model``.

    Args:
        weights: ``"imagenet"``, ``None`` (random init) or the path of a weights file.
        model: the built model, needed for ImageNet or random weights (hashed by value).

    Returns:
        ``"file:<hex>"`` or ``"values:<hex>"``.

    Raises:
        FileNotFoundError: ``weights`` names a file that does not exist.
        ValueError: ImageNet/random weights without ``model``.
    """
    if weights is not None and weights != "imagenet":
        path = Path(os.fspath(weights)).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"backbone weights file not found: {path}")
        return "file:" + sha256_file(path)
    if model is None:
        raise ValueError("weights_identity needs the built model for ImageNet or random weights")
    return "values:" + weights_hash(model)


class FeatureCache:
    """A folder of cached feature arrays (see the module docstring).

    ``hits`` and ``misses`` count this object's lookups.

    Args:
        directory: the cache folder (``~`` expanded; created on the first write).
    """

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory).expanduser()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def make_key(
        backbone: str,
        weights_id: str,
        input_size: int,
        resize_mode: str,
        preprocessing: str,
        files: Sequence[tuple[str, int, int]],
    ) -> tuple[str, dict[str, Any]]:
        """The cache key of a feature computation and what it is made of.

        Args:
            backbone: the backbone's name.
            weights_id: :func:`weights_identity` of its weights.
            input_size: side S of the square input in pixels.
            resize_mode: ``"pad"`` or ``"crop"`` (:func:`itemrec.data.images.fit_image`).
            preprocessing: the name of the preprocessing function.
            files: :func:`file_signature` of the images, in order.

        Returns:
            ``(key, material)``: the first 32 hex characters of the SHA-256 of ``material``
            (sorted-key JSON), and the dict itself, which also records the Keras version and
            :data:`FORMAT_VERSION`.
        """
        import keras

        material = {
            "format": FORMAT_VERSION,
            "keras": keras.__version__,
            "backbone": backbone,
            "weights": weights_id,
            "input_size": int(input_size),
            "resize_mode": resize_mode,
            "preprocessing": preprocessing,
            "pooling": "gap",
            "decoder": "itemrec.data.images.load_images",
            "files": [list(f) for f in files],
        }
        key = hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:32]
        return key, material

    def _paths(self, key: str) -> tuple[Path, Path]:
        return self.directory / f"{key}.npz", self.directory / f"{key}.json"

    def contains(self, key: str) -> bool:
        """Whether an entry (both its ``.npz`` and ``.json``) is in the cache.

        Args:
            key: a key of :meth:`make_key`.

        Returns:
            True when both files exist.
        """
        npz, meta = self._paths(key)
        return npz.is_file() and meta.is_file()

    def load(self, key: str) -> CachedFeatures:
        """Read an entry.

        Args:
            key: a key of :meth:`make_key` that :meth:`contains`.

        Returns:
            The :class:`CachedFeatures`, ``hit=True``.

        Raises:
            ValueError: the entry is damaged or missing (unreadable files, missing arrays, rows
                and indices of different lengths); the message names the file.
        """
        npz, meta_path = self._paths(key)
        try:
            with np.load(npz) as data:
                feats, keep = data["features"], data["keep"]
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError, KeyError) as exc:
            raise ValueError(f"feature cache entry {npz} is damaged ({exc}); delete it to recompute") from exc
        if len(feats) != len(keep):
            raise ValueError(f"feature cache entry {npz} is damaged: {len(feats)} rows, {len(keep)} indices")
        return CachedFeatures(feats, keep, [tuple(s) for s in meta.get("skipped", [])], key, True)

    def store(self, key: str, material: dict[str, Any], result: CachedFeatures) -> None:
        """Write an entry atomically (temp file + ``os.replace``).

        Args:
            key: the entry's key.
            material: what the key was made of (:meth:`make_key`); written to the ``.json``
                without the file list, plus the image, kept and skipped counts.
            result: the features to store.
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        npz, meta_path = self._paths(key)
        fd, tmp = tempfile.mkstemp(dir=self.directory, suffix=".npz.tmp")
        os.close(fd)
        try:
            with open(tmp, "wb") as fh:
                np.savez(fh, features=result.features, keep=result.keep)
            os.replace(tmp, npz)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        meta = {k: v for k, v in material.items() if k != "files"}
        meta.update(n_images=len(material["files"]), n_kept=int(len(result.keep)), skipped=[list(s) for s in result.skipped])
        fd, tmp = tempfile.mkstemp(dir=self.directory, suffix=".json.tmp")
        with os.fdopen(fd, "w") as fh:
            json.dump(meta, fh, indent=1)
        os.replace(tmp, meta_path)

    def get_or_compute(
        self,
        extractor: Any | Callable[[], Any],
        paths: Sequence[str | os.PathLike],
        backbone: str,
        weights: Any,
        input_size: int,
        resize_mode: str = "pad",
        preprocessing: str | None = None,
        batch_size: int = 64,
        progress: bool = False,
        decoded: tuple[np.ndarray, np.ndarray, list] | None = None,
    ) -> CachedFeatures:
        """Features of ``paths`` through ``extractor``, read from the cache or computed and stored.

        The factory is only called on a miss, or when the weights have no file to
        hash (ImageNet/random weights are identified by their values).

        Args:
            extractor: a Keras feature extractor (raw pixels → (B, D)), or a zero-argument
                factory of one.
            paths: the image paths.
            backbone: the backbone's name (part of the key; names the preprocessing by default).
            weights: ``"imagenet"``, ``None`` or a weights file path (part of the key).
            input_size: side S in pixels the images are fitted to.
            resize_mode: ``"pad"`` or ``"crop"``.
            preprocessing: the preprocessing's name in the key (default: the backbone's
                ``preprocess_input``, ``x/255`` for small_cnn).
            batch_size: inference batch size.
            progress: a progress bar while computing.
            decoded: the ``(images, keep, skipped)`` of :func:`decode_images` for ``paths``
                when the caller has them already (saves decoding on a miss).

        Returns:
            The :class:`CachedFeatures` (``hit`` says which).

        Raises:
            FileNotFoundError: an image or the weights file cannot be accessed.
            ValueError: a damaged cache entry, or an unknown backbone.
        """
        paths = [str(p) for p in paths]
        files = file_signature(paths)
        model = None

        def get_model() -> Any:
            nonlocal model
            if model is None:
                model = extractor() if callable(extractor) and not hasattr(extractor, "predict_on_batch") else extractor
            return model

        wid = weights_identity(weights, None if (weights is not None and weights != "imagenet") else get_model())
        prep = preprocessing or _preprocessing_name(backbone)
        key, material = self.make_key(backbone, wid, input_size, resize_mode, prep, files)
        if self.contains(key):
            self.hits += 1
            return self.load(key)
        self.misses += 1
        if decoded is not None:
            images, keep, skipped = decoded
            result = CachedFeatures(features_of(get_model(), images, batch_size, progress), keep, list(skipped), key, False)
        else:
            result = compute_features(get_model(), paths, input_size, resize_mode, batch_size, progress)
            result.key = key
        self.store(key, material, result)
        return result


def _preprocessing_name(backbone: str) -> str:
    from itemrec.models.backbones import backbone_spec

    spec = backbone_spec(backbone)
    return "x/255" if backbone == "small_cnn" else f"keras.applications.{spec.module}.preprocess_input"


def decode_images(
    paths: Sequence[str], input_size: int, resize_mode: str = "pad", progress: bool = False
) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]]]:
    """Read and fit images as the inference side does: ``(uint8 (N, S, S, 3), keep, skipped)``.

    :func:`itemrec.data.images.load_images` (Pillow: any mode to RGB, EXIF
    orientation, aspect-preserving ``fit_image``), the reader of
    :class:`itemrec.embedder.ImageEmbedder`, so a model trains on the very
    pixels it will embed later, and cached features and image batches agree.

    Args:
        paths: image paths.
        input_size: side S in pixels.
        resize_mode: ``"pad"`` (letterbox) or ``"crop"`` (centre crop).
        progress: a progress bar.

    Returns:
        ``(images, keep, skipped)``: (M, S, S, 3) uint8 of the readable images, their (M,)
        positions in ``paths``, and ``(path, reason)`` of each unreadable file.

    Raises:
        ValueError: an unknown ``resize_mode`` or a non-positive size.
    """
    from itemrec.data.images import load_images

    return load_images([str(p) for p in paths], int(input_size), resize_mode, progress=progress)


def compute_features(
    model: Any,
    paths: Sequence[str],
    input_size: int,
    resize_mode: str = "pad",
    batch_size: int = 64,
    progress: bool = False,
    chunk: int = 512,
) -> CachedFeatures:
    """Read images in chunks as :func:`decode_images` does and run ``model`` on them (bounded memory).

    Args:
        model: a feature extractor taking raw pixels, (B, S, S, 3) → (B, D).
        paths: image paths.
        input_size: side S in pixels.
        resize_mode: ``"pad"`` or ``"crop"``.
        batch_size: inference batch size.
        progress: a progress bar over the chunks.
        chunk: images decoded at a time (default 512).

    Returns:
        :class:`CachedFeatures` with ``key=""`` and ``hit=False``; (0, D) features when
        nothing could be read.

    Raises:
        ValueError: from :func:`decode_images`.
    """
    paths = [str(p) for p in paths]
    dim = int(model.output_shape[-1])
    feats, keeps, skipped = [], [], []
    starts = range(0, len(paths), chunk)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="backbone features", unit="chunk")
    for start in starts:
        images, keep, skip = decode_images(paths[start : start + chunk], input_size, resize_mode)
        feats.append(features_of(model, images, batch_size))
        keeps.append(keep + start)
        skipped += skip
    features = np.concatenate(feats) if feats else np.zeros((0, dim), np.float32)
    keep = np.concatenate(keeps).astype(np.int64) if keeps else np.zeros(0, np.int64)
    return CachedFeatures(features, keep, skipped, "", False)


def features_of(model: Any, images: np.ndarray, batch_size: int = 64, progress: bool = False) -> np.ndarray:
    """``model`` applied to images (uint8 or float32 0..255) in batches, float32 (N, D).

    The last batch is zero-padded to ``batch_size`` (one traced shape). Under a
    multi-replica strategy the model is called directly (``predict_on_batch`` would run the
    batch on every replica).

    Args:
        model: a Keras model, (B, ...) → (B, D) (its output is reshaped to (B, D)).
        images: (N, ...) inputs.
        batch_size: inference batch size.
        progress: a progress bar over the batches.

    Returns:
        (N, D) float32.
    """
    dim = int(model.output_shape[-1])
    out = np.empty((len(images), dim), np.float32)
    starts = range(0, len(images), batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="backbone features", unit="batch")
    strategy = getattr(model, "distribute_strategy", None)
    distributed = strategy is not None and strategy.num_replicas_in_sync > 1
    for b in starts:
        x = np.asarray(images[b : b + batch_size], dtype=np.float32)
        rows = len(x)
        if rows < batch_size:  # pad the tail: one traced shape, no retracing
            x = np.concatenate([x, np.zeros((batch_size - rows,) + x.shape[1:], np.float32)])
        if distributed:  # predict_on_batch would run the batch on every replica; a plain call runs it once
            import keras

            y = keras.ops.convert_to_numpy(model(x, training=False))
        else:
            y = model.predict_on_batch(x)
        out[b : b + rows] = np.asarray(y, dtype=np.float32).reshape(len(x), dim)[:rows]
    return out
