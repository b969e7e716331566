"""Checks that a file is a usable embedding model, and the errors that say why not.

:meth:`itemrec.embedder.ImageEmbedder.load` runs :func:`check_model_file` before Keras reads
the file (so a folder, a FIFO or a truncated archive gets a message saying what to pass) and
:func:`check_embedding_model` after (one image input, one ``(batch, D)`` output).
:func:`model_hashes` gives the architecture and weights parts of the embedder's fingerprint.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

SIDECAR_SUFFIX = ".embedder.json"


def sidecar_path(model_path: str | os.PathLike) -> Path:
    """The JSON sidecar beside a model file: ``model.keras`` -> ``model.embedder.json``.

    Args:
        model_path: the ``.keras`` file.

    Returns:
        The sidecar's path (which need not exist).
    """
    p = Path(model_path)
    return p.with_name(p.name[: -len(p.suffix)] + SIDECAR_SUFFIX if p.suffix else p.name + SIDECAR_SUFFIX)


class ModelLoadError(ValueError):
    """A model file that cannot be used as an embedding model; the message says why and what to pass."""


class ModelNotFoundError(ModelLoadError, FileNotFoundError):
    """The model path does not exist (both a :class:`ModelLoadError` and a ``FileNotFoundError``)."""


def load_embedding_model(path: Path) -> tuple[Any, dict[str, Any]]:
    """Load a ``.keras`` embedding model safely, with its sidecar's settings.

    Args:
        path: the ``.keras`` file.

    Returns:
        ``(model, settings)``: the Keras model, and the sidecar's dict (``resize_mode``,
        ``batch_size``, ``name``, ...; empty keys when there is no sidecar) with
        ``image_size`` always set (from the model's input when the sidecar lacks it).

    Raises:
        ModelLoadError: as :func:`check_model_file` and :func:`check_embedding_model`; Keras
            cannot load the file (``safe_mode=True``); no image size is known.
    """
    import keras

    path = Path(path)
    check_model_file(path)
    from itemrec.models import register_custom_objects

    register_custom_objects()
    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:
        raise ModelLoadError(f"cannot load embedding model {path}: {type(exc).__name__}: {exc}") from exc
    check_embedding_model(model, path)
    side = sidecar_path(path)
    meta = json.loads(side.read_text()) if side.is_file() else {}
    size = meta.get("image_size")
    if size is None:
        shape = model.input_shape
        if not (isinstance(shape, tuple) and len(shape) == 4 and shape[1] is not None):
            raise ModelLoadError(f"{path}: no {side.name} sidecar and the model input {shape} has no fixed size")
        size = shape[1:3]
    meta["image_size"] = size
    return model, meta


def check_model_file(path: Path) -> None:
    """Refuse, with a message saying what to do, anything that is not a complete ``.keras`` archive.

    Args:
        path: the model file.

    Raises:
        ModelNotFoundError: ``path`` does not exist.
        ModelLoadError: it cannot be accessed, is a folder or special file, is not a ``.keras``
            file, or is not a complete, undamaged Keras zip archive.
    """
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


def check_embedding_model(model: Any, path: Path) -> None:
    """Refuse anything but one image input (batch, H, W, 3) -> one (batch, D) output.

    Args:
        model: the loaded Keras model.
        path: the file it came from (named in the message, with a hint at the run's
            ``embedding.keras`` when there is one beside it).

    Raises:
        ModelLoadError: the model has other inputs or outputs.
    """
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


def model_hashes(model: Any) -> tuple[str, str]:
    """SHA-256 of a Keras model's architecture and of its weights (the fingerprint's two hashes).

    The architecture hash is over the JSON config with names made canonical (see
    :func:`_strip_names`); the weights hash over every weight array, in order, with its dtype
    and shape.

    Args:
        model: a Keras model.

    Returns:
        ``(architecture hex digest, weights hex digest)``.
    """
    config = json.loads(model.to_json())
    arch = hashlib.sha256(json.dumps(_strip_names(config), sort_keys=True).encode()).hexdigest()
    h = hashlib.sha256()
    for w in model.weights:
        arr = np.ascontiguousarray(np.asarray(w.numpy() if hasattr(w, "numpy") else w))
        h.update(f"{arr.dtype.str}{arr.shape}".encode())
        h.update(arr.tobytes())
    return arch, h.hexdigest()


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
