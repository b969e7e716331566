"""Turn images into embeddings with a Keras embedding model, and fingerprint that model.

The model takes raw RGB pixels (float, 0..255) and does its own preprocessing
(as :func:`itemrec.models.build_embedding_model` builds it); images are fitted to
the model's input size with :func:`itemrec.data.images.fit_image` (``"pad"``
letterbox or ``"crop"``), exactly as in training.

The *fingerprint* identifies everything that changes the embedding of an image:
the architecture (SHA-256 of the model's JSON config), the weights (SHA-256 over
every weight array, in order, with shapes), input size, resize mode, preprocessing
and embedding dimension. A gallery records it and refuses vectors from another
model, since embeddings of different models are not comparable.

Keras is imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from itemrec.embedded import EmbeddedSet
from itemrec.model_file import (
    ModelLoadError,
    ModelNotFoundError,
    SIDECAR_SUFFIX,
    load_embedding_model,
    model_hashes,
    sidecar_path,
)

PREPROCESSING = "in-model: raw RGB float32 0..255"

__all__ = ["ImageEmbedder", "EmbeddedSet", "ModelLoadError", "ModelNotFoundError", "fingerprint_id", "sidecar_path",
           "PREPROCESSING", "SIDECAR_SUFFIX"]


def fingerprint_id(fingerprint: dict[str, Any]) -> str:
    """Short id of a fingerprint dict: the first 16 hex digits of SHA-256 of its sorted JSON.

    Args:
        fingerprint: a fingerprint dict (:meth:`ImageEmbedder.fingerprint`); values JSON-serialisable.

    Returns:
        16 lowercase hex digits.

    Raises:
        TypeError: a value cannot be written as JSON.
    """
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:16]


def _size_pair(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        return int(size), int(size)
    h, w = (int(s) for s in size)
    return h, w


class ImageEmbedder:
    """Batched image -> embedding extraction with a Keras model (see module docstring).

    Embeddings are returned as the model gives them (float32 (N, D), not L2-normalised here;
    the gallery normalises).

    Args:
        model: a Keras model from raw RGB pixels (batch, H, W, 3), float 0..255, to (batch, D).
        image_size: the model's input size, ``S`` or ``(H, W)`` pixels.
        resize_mode: how images of other sizes are fitted: ``"pad"`` (letterbox) or ``"crop"``.
        batch_size: images per forward pass.
        name: a name for messages (default: the model's).
        max_pixels: the largest image (width x height) accepted from files and uploads
            (default: :data:`itemrec.data.images.DEFAULT_MAX_PIXELS`).

    Raises:
        ValueError: a bad ``resize_mode`` or ``batch_size``; a model without exactly one
            (batch, D) output; a model whose fixed input size differs from ``image_size``.
    """

    def __init__(
        self,
        model: Any,
        image_size: int | Sequence[int],
        resize_mode: str = "pad",
        batch_size: int = 64,
        name: str | None = None,
        max_pixels: int | None = None,
    ) -> None:
        if resize_mode not in ("pad", "crop"):
            raise ValueError(f"resize_mode must be 'pad' or 'crop', got {resize_mode!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model
        self.image_size = _size_pair(image_size)
        self.resize_mode = resize_mode
        self.batch_size = int(batch_size)
        self.name = name or getattr(model, "name", "model")
        self.max_pixels = max_pixels
        out = model.output_shape
        if isinstance(out, list):
            raise ValueError(f"embedding model {self.name!r} must have one output, has {len(out)}")
        if len(out) != 2 or out[-1] is None:
            raise ValueError(f"embedding model {self.name!r} must output (batch, D) vectors, output shape is {out}")
        self.embedding_dim = int(out[-1])
        in_shape = model.input_shape
        if isinstance(in_shape, tuple) and len(in_shape) == 4 and in_shape[1] is not None:
            if tuple(in_shape[1:3]) != self.image_size or in_shape[3] != 3:
                raise ValueError(
                    f"model {self.name!r} takes inputs {in_shape[1:]}, but image_size is {self.image_size} (x3)"
                )
        self._fingerprint: dict[str, Any] | None = None

    # -- embedding ---------------------------------------------------------------
    def embed_arrays(self, images: Any) -> np.ndarray:
        """Embeddings of uint8 RGB images, fitted to the input size when they differ from it.

        Args:
            images: an (N, H, W, 3) or (H, W, 3) uint8 array, or a list of (H, W, 3) uint8 arrays.

        Returns:
            (N, D) float32 embeddings.

        Raises:
            ValueError: not uint8, or not of shape (..., 3).
        """
        from itemrec.data.images import fit_image

        if isinstance(images, np.ndarray) and images.ndim == 3:
            images = images[None]
        if isinstance(images, np.ndarray):
            if images.ndim != 4 or images.shape[-1] != 3:
                raise ValueError(f"expected uint8 images of shape (N, H, W, 3), got {images.shape}")
            if images.dtype != np.uint8:
                raise ValueError(f"expected uint8 images (0..255), got dtype {images.dtype}")
            if tuple(images.shape[1:3]) != self.image_size:
                images = np.stack([fit_image(im, self.image_size, self.resize_mode) for im in images]) if len(images) else images
            batch = images
        else:
            batch = np.stack([self._fit(im, i) for i, im in enumerate(images)]) if len(images) else None
        if batch is None or not len(batch):
            return np.zeros((0, self.embedding_dim), np.float32)
        return self._predict(batch)

    def _predict(self, batch: np.ndarray) -> np.ndarray:
        """Embeddings (N, D) float32 of fitted images (N, H, W, 3), uint8 or float32 0..255."""
        out = np.empty((len(batch), self.embedding_dim), np.float32)
        for start in range(0, len(batch), self.batch_size):
            x = batch[start : start + self.batch_size].astype(np.float32, copy=False)
            y = np.asarray(self.model.predict_on_batch(x), dtype=np.float32)
            out[start : start + len(x)] = y.reshape(len(x), self.embedding_dim)
        return out

    def _fit(self, im: Any, i: int) -> np.ndarray:
        from itemrec.data.images import fit_image

        im = np.asarray(im)
        if im.dtype != np.uint8 or im.ndim != 3 or im.shape[-1] != 3:
            raise ValueError(f"image {i}: expected uint8 (H, W, 3), got {im.dtype} {im.shape}")
        return im if tuple(im.shape[:2]) == self.image_size else fit_image(im, self.image_size, self.resize_mode)

    def embed(
        self, paths: Sequence[str | os.PathLike], labels: Any = None, strict: bool = False, progress: bool = False
    ) -> EmbeddedSet:
        """Read, fit and embed image files; unreadable ones are skipped, labels kept aligned.

        Works in chunks of ``batch_size`` files (at least 16) so memory stays bounded; the next
        chunk is decoded (in parallel threads, :func:`~itemrec.data.images.load_images`) while
        the model runs on this one.

        Args:
            paths: (M,) image files.
            labels: (M,) one label per file (array, list, or pandas Series/DataFrame rows), or None.
            strict: raise on the first unreadable file instead of skipping it.
            progress: show a tqdm bar.

        Returns:
            An :class:`~itemrec.embedded.EmbeddedSet`: ``vectors`` (N, D) float32 of the N
            readable files, their ``labels`` and ``paths`` in input order, and ``skipped``
            ``(path, reason)``.

        Raises:
            BadImageError: (``strict`` only) a file cannot be read as an image.
            ValueError: ``labels`` does not hold one entry per path.
        """
        paths = list(paths)
        if labels is not None and len(labels) != len(paths):
            raise ValueError(f"{len(labels)} labels for {len(paths)} paths; give one label per path")
        emb, keep, skipped = self._embed_files_on_disk(paths, strict, progress)
        return EmbeddedSet.from_kept(emb, keep, paths, labels, skipped)

    def embed_paths(
        self, paths: Sequence[str | os.PathLike], strict: bool = False, progress: bool = False
    ) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]]]:
        """Deprecated: use :meth:`embed`, whose result keeps labels and paths aligned.

        Args:
            paths: (M,) image files.
            strict: raise on the first unreadable file instead of skipping it.
            progress: show a tqdm bar.

        Returns:
            ``embeddings (N, D) float32``, ``keep_indices (N,) int64`` (positions in ``paths``),
            ``skipped`` ``[(path, reason)]``.

        Raises:
            BadImageError: (``strict`` only) a file cannot be read as an image.
        """
        warnings.warn("ImageEmbedder.embed_paths is deprecated; use embed(paths, labels), which returns an "
                      "EmbeddedSet", DeprecationWarning, stacklevel=2)
        return self._embed_files_on_disk(list(paths), strict, progress)

    def _embed_files_on_disk(
        self, paths: list[str | os.PathLike], strict: bool, progress: bool
    ) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]]]:
        """``(embeddings (N, D) float32, kept positions (N,) int64, skipped [(path, reason)])``."""
        from concurrent.futures import ThreadPoolExecutor

        from itemrec.data.images import DEFAULT_MAX_PIXELS, load_images

        chunk = max(self.batch_size, 16)
        embs, keeps, skipped = [], [], []
        max_px = self.max_pixels or DEFAULT_MAX_PIXELS
        starts = list(range(0, len(paths), chunk))

        def read(start: int) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]]]:
            imgs, keep, skip = load_images(paths[start : start + chunk], self.image_size, self.resize_mode, strict, max_px)
            return imgs.astype(np.float32), keep, skip  # the model's input dtype, converted off the main thread

        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(paths), desc="embedding", unit="img")
        with ThreadPoolExecutor(max_workers=1) as reader:
            pending = reader.submit(read, starts[0]) if starts else None
            for j, start in enumerate(starts):
                imgs, keep, skip = pending.result()
                pending = reader.submit(read, starts[j + 1]) if j + 1 < len(starts) else None
                embs.append(self._predict(imgs))
                keeps.append(keep + start)
                skipped += skip
                if bar is not None:
                    bar.update(min(chunk, len(paths) - start))
        if bar is not None:
            bar.close()
        if not embs:
            return np.zeros((0, self.embedding_dim), np.float32), np.zeros(0, np.int64), []
        return np.concatenate(embs), np.concatenate(keeps).astype(np.int64), skipped

    def embed_bytes(
        self, files: Sequence[bytes], labels: Any = None, strict: bool = True, names: Sequence[str] | None = None
    ) -> EmbeddedSet:
        """Embed encoded image files given as bytes (uploads); labels kept aligned as in :meth:`embed`.

        Each upload is decoded by :func:`~itemrec.data.images.decode_image` (the same pixels
        :func:`~itemrec.data.images.read_image` gives for the file on disk).

        Args:
            files: (M,) encoded images (JPEG, PNG, ...).
            labels: (M,) one label per file, or None.
            strict: raise on the first undecodable upload (default) instead of skipping it.
            names: (M,) names used as the set's ``paths`` and in messages (default ``"upload i"``).

        Returns:
            An :class:`~itemrec.embedded.EmbeddedSet` whose ``paths`` are the kept uploads' names.

        Raises:
            BadImageError: (``strict`` only) an upload cannot be decoded; the message names it.
            ValueError: ``labels`` or ``names`` does not hold one entry per file.
        """
        names = list(names) if names is not None else [f"upload {i}" for i in range(len(files))]
        if len(names) != len(files):
            raise ValueError(f"{len(names)} names for {len(files)} files")
        if labels is not None and len(labels) != len(files):
            raise ValueError(f"{len(labels)} labels for {len(files)} files; give one label per file")
        emb, keep, skipped = self._embed_uploads(files, strict, names)
        return EmbeddedSet.from_kept(emb, keep, names, labels, skipped)

    def _embed_uploads(
        self, files: Sequence[bytes], strict: bool, names: list[str]
    ) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]]]:
        from itemrec.data.images import DEFAULT_MAX_PIXELS, BadImageError, decode_image

        imgs, keep, skipped = [], [], []
        for i, data in enumerate(files):
            try:
                img = decode_image(data, names[i], max_pixels=self.max_pixels or DEFAULT_MAX_PIXELS)
            except BadImageError as exc:
                if strict:
                    raise
                skipped.append((names[i], exc.reason))
                continue
            imgs.append(self._fit(img, i))
            keep.append(i)
        emb = self.embed_arrays(np.stack(imgs)) if imgs else np.zeros((0, self.embedding_dim), np.float32)
        return emb, np.asarray(keep, np.int64), skipped

    # -- identity ------------------------------------------------------------------
    def fingerprint(self) -> dict[str, Any]:
        """What determines the embeddings (see module docstring); computed once and cached.

        Returns:
            A copy of ``{"architecture", "weights", "input_size", "resize_mode", "preprocessing",
            "embedding_dim"}`` (the first two SHA-256 hex digests, see
            :func:`itemrec.model_file.model_hashes`).
        """
        if self._fingerprint is None:
            arch, weights = model_hashes(self.model)
            self._fingerprint = {
                "architecture": arch,
                "weights": weights,
                "input_size": list(self.image_size),
                "resize_mode": self.resize_mode,
                "preprocessing": PREPROCESSING,
                "embedding_dim": self.embedding_dim,
            }
        return dict(self._fingerprint)

    @property
    def fingerprint_id(self) -> str:
        """16 hex digits identifying :meth:`fingerprint` (see :func:`fingerprint_id`)."""
        return fingerprint_id(self.fingerprint())

    # -- persistence ---------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Save the model as ``.keras`` and a JSON sidecar (image size, resize mode, batch size, name).

        Args:
            path: the ``.keras`` file to write (its folder is created).

        Returns:
            ``path`` as a :class:`~pathlib.Path`.

        Raises:
            ValueError: ``path`` does not end in ``.keras``.
        """
        path = Path(path)
        if path.suffix != ".keras":
            raise ValueError(f"embedding models are saved as .keras files, got {path}")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.model.save(path)
        meta = {
            "image_size": list(self.image_size),
            "resize_mode": self.resize_mode,
            "batch_size": self.batch_size,
            "name": self.name,
            "fingerprint_id": self.fingerprint_id,
        }
        sidecar_path(path).write_text(json.dumps(meta, indent=1))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, batch_size: int | None = None, max_pixels: int | None = None) -> "ImageEmbedder":
        """Load a ``.keras`` embedding model (+ its sidecar, if any; else size from the model's input).

        The one loader every command and the service use: Keras's ``safe_mode=True`` (no
        arbitrary code from the file), and only a one-input, one-output embedding model.

        Args:
            path: the ``.keras`` file (a training run's ``embedding.keras``).
            batch_size: images per forward pass (default: the sidecar's, else 64).
            max_pixels: the largest image accepted (default: the reader's limit).

        Returns:
            The embedder.

        Raises:
            ModelLoadError: (a ``ValueError``) the path is missing, not a regular file (a folder,
                a FIFO), not a complete ``.keras`` archive (truncated, damaged), not loadable, or not
                an embedding model (the message names the run's ``embedding.keras`` when given
                its training ``model.keras``).
        """
        path = Path(path)
        model, meta = load_embedding_model(path)
        return cls(
            model,
            meta["image_size"],
            meta.get("resize_mode", "pad"),
            batch_size or int(meta.get("batch_size", 64)),
            meta.get("name", path.stem),
            max_pixels,
        )
