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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

PREPROCESSING = "in-model: raw RGB float32 0..255"
SIDECAR_SUFFIX = ".embedder.json"


def fingerprint_id(fingerprint: dict[str, Any]) -> str:
    """Short id of a fingerprint dict: the first 16 hex digits of SHA-256 of its sorted JSON."""
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:16]


def _size_pair(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        return int(size), int(size)
    h, w = (int(s) for s in size)
    return h, w


def sidecar_path(model_path: str | os.PathLike) -> Path:
    """``model.keras`` -> ``model.embedder.json``."""
    p = Path(model_path)
    return p.with_name(p.name[: -len(p.suffix)] + SIDECAR_SUFFIX if p.suffix else p.name + SIDECAR_SUFFIX)


class ImageEmbedder:
    """Batched image -> L2-free embedding extraction with a Keras model (see module docstring).

    Embeddings are returned as the model gives them (float32 (N, D)); the gallery normalises.
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
        """Embeddings (N, D) float32 of uint8 RGB images: an (N, H, W, 3) array or a list of (H, W, 3) arrays."""
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

    def embed_paths(
        self, paths: Sequence[str | os.PathLike], strict: bool = False, progress: bool = False
    ) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]]]:
        """Read, fit and embed image files: ``(embeddings, keep_indices, skipped [(path, reason)])``.

        Unreadable files are skipped (listed with the reason) unless ``strict``, where
        :class:`~itemrec.data.images.BadImageError` is raised. Works in chunks of ``batch_size``
        files so memory stays bounded; the next chunk is decoded (in parallel threads,
        :func:`~itemrec.data.images.load_images`) while the model runs on this one.

        Returns:
            ``embeddings (N, D) float32``, ``keep_indices (N,) int64`` (positions in ``paths``),
            ``skipped`` ``[(path, reason)]``.
        """
        from concurrent.futures import ThreadPoolExecutor

        from itemrec.data.images import DEFAULT_MAX_PIXELS, load_images

        paths = list(paths)
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

    def embed_files(
        self, files: Sequence[bytes], strict: bool = True, names: Sequence[str] | None = None
    ) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]]]:
        """Embed encoded image files given as bytes (uploads); same returns as :meth:`embed_paths`.

        Each upload is decoded by :func:`~itemrec.data.images.decode_image` (the same pixels
        :func:`~itemrec.data.images.read_image` gives for the file on disk); errors name ``names[i]``.
        """
        from itemrec.data.images import DEFAULT_MAX_PIXELS, BadImageError, decode_image

        names = list(names) if names is not None else [f"upload {i}" for i in range(len(files))]
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
        """What determines the embeddings (see module docstring); computed once and cached."""
        if self._fingerprint is None:
            config = json.loads(self.model.to_json())
            arch = hashlib.sha256(json.dumps(_strip_names(config), sort_keys=True).encode()).hexdigest()
            h = hashlib.sha256()
            for w in self.model.weights:
                arr = np.ascontiguousarray(np.asarray(w.numpy() if hasattr(w, "numpy") else w))
                h.update(f"{arr.dtype.str}{arr.shape}".encode())
                h.update(arr.tobytes())
            self._fingerprint = {
                "architecture": arch,
                "weights": h.hexdigest(),
                "input_size": list(self.image_size),
                "resize_mode": self.resize_mode,
                "preprocessing": PREPROCESSING,
                "embedding_dim": self.embedding_dim,
            }
        return dict(self._fingerprint)

    @property
    def fingerprint_id(self) -> str:
        return fingerprint_id(self.fingerprint())

    # -- persistence ---------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Save the model as ``.keras`` and a JSON sidecar (image size, resize mode, batch size, name)."""
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
        import keras

        path = Path(path)
        _check_model_file(path)
        from itemrec.models import register_custom_objects

        register_custom_objects()
        try:
            model = keras.saving.load_model(path, compile=False, safe_mode=True)
        except Exception as exc:
            raise ModelLoadError(f"cannot load embedding model {path}: {type(exc).__name__}: {exc}") from exc
        _check_embedding_model(model, path)
        side = sidecar_path(path)
        meta = json.loads(side.read_text()) if side.is_file() else {}
        size = meta.get("image_size")
        if size is None:
            shape = model.input_shape
            if not (isinstance(shape, tuple) and len(shape) == 4 and shape[1] is not None):
                raise ModelLoadError(f"{path}: no {side.name} sidecar and the model input {shape} has no fixed size")
            size = shape[1:3]
        return cls(
            model,
            size,
            meta.get("resize_mode", "pad"),
            batch_size or int(meta.get("batch_size", 64)),
            meta.get("name", path.stem),
            max_pixels,
        )


class ModelLoadError(ValueError):
    """A model file that cannot be used as an embedding model; the message says why and what to pass."""


class ModelNotFoundError(ModelLoadError, FileNotFoundError):
    """The model path does not exist (both a :class:`ModelLoadError` and a ``FileNotFoundError``)."""


def _check_model_file(path: Path) -> None:
    """Refuse, with a message saying what to do, anything that is not a complete ``.keras`` archive."""
    import stat
    import zipfile

    try:
        mode = path.stat().st_mode
    except FileNotFoundError as exc:
        raise ModelNotFoundError(f"embedding model {path} does not exist") from exc
    except OSError as exc:
        raise ModelLoadError(f"cannot access embedding model {path} ({exc.strerror or exc})") from exc
    if stat.S_ISDIR(mode):
        hint = f"; did you mean {path / 'embedding.keras'}?" if (path / "embedding.keras").is_file() else ""
        raise ModelLoadError(f"embedding model {path} is a folder, not a .keras file{hint}")
    if not stat.S_ISREG(mode):
        kind = "a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device or special file"
        raise ModelLoadError(f"embedding model {path} is {kind}, not a regular file; pass a .keras file")
    if path.suffix != ".keras":
        raise ModelLoadError(f"embedding model {path} is not a .keras file (save models with ImageEmbedder.save)")
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            bad = zf.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise ModelLoadError(
            f"embedding model {path} is not a complete .keras archive (truncated or damaged: {exc}); "
            "copy or save it again"
        ) from exc
    if bad is not None:
        raise ModelLoadError(f"embedding model {path} is damaged ({bad} fails its CRC check); copy or save it again")
    if "config.json" not in names:
        raise ModelLoadError(f"{path} is a zip archive but not a Keras model (no config.json)")


def _check_embedding_model(model: Any, path: Path) -> None:
    """Refuse anything but one image input (batch, H, W, 3) -> one (batch, D) output."""
    try:
        inputs, outputs = list(model.inputs or []), list(model.outputs or [])
    except (AttributeError, ValueError):
        inputs, outputs = [], []
    problem = None
    if len(inputs) != 1 or len(outputs) != 1:
        problem = f"it has {len(inputs)} inputs and {len(outputs)} outputs ({type(model).__name__})"
    else:
        in_shape, out_shape = tuple(inputs[0].shape), tuple(outputs[0].shape)
        if len(in_shape) != 4 or in_shape[-1] != 3:
            problem = f"its input has shape {in_shape}, not (batch, H, W, 3)"
        elif len(out_shape) != 2 or out_shape[-1] is None:
            problem = f"its output has shape {out_shape}, not (batch, D)"
    if problem is None:
        return
    run_embedding = path.with_name("embedding.keras")
    if path.name != run_embedding.name and run_embedding.is_file():
        hint = f"this looks like a training run's model file; use {run_embedding}"
    else:
        hint = "pass the embedding.keras of a training run (models/<run>/embedding.keras)"
    raise ModelLoadError(f"{path} is not an embedding model (one image input -> one (batch, D) output): {problem}; {hint}")


def _strip_names(config: Any) -> Any:
    """The model config with names made canonical: the model's own name dropped and layer
    names replaced by their position (``layer_0``, ``layer_1``, …) wherever they occur, so two
    copies of one architecture built in any order (``conv2d`` vs ``conv2d_1``) hash the same,
    while the wiring between layers is kept.
    """
    if not (isinstance(config, dict) and isinstance(config.get("config"), dict)):
        return config
    inner = {k: v for k, v in config["config"].items() if k != "name"}
    names = {layer.get("name", layer.get("config", {}).get("name")): f"layer_{i}"
             for i, layer in enumerate(inner.get("layers", [])) if isinstance(layer, dict)}
    names.pop(None, None)

    def rename(x: Any) -> Any:
        if isinstance(x, str):
            return names.get(x, x)
        if isinstance(x, list):
            return [rename(v) for v in x]
        if isinstance(x, dict):
            return {k: rename(v) for k, v in x.items()}
        return x

    return {**{k: v for k, v in config.items() if k != "config"}, "config": rename(inner)}
