"""The sizes of each notebook's modes, and what a run actually used.

Each notebook's parameters cell selects its sizes here::

    QUICK = True
    SIZES = presets.sizes("02", QUICK)      # the mode's values; change any line below
    FROZEN_EPOCHS = SIZES["FROZEN_EPOCHS"]

Modes: ``quick`` (a CPU smoke run: a subset, a few epochs), ``full`` (the
CPU-sized run the README reports) and, for notebooks 01 and 02, ``gpu`` (the
original write-ups' sizes: InceptionV3 at 299 px, their epochs and optimiser),
which ``QUICK = False`` selects when TensorFlow sees a GPU.

Papermill injects its parameters *after* the parameters cell, so a run that
switches mode by injection must inject the sizes too:
:func:`papermill_parameters` gives them. :func:`settings` records in
``results.json`` every parameter a notebook ran with and which mode they match
(``custom`` when a size was changed by hand).
"""

from __future__ import annotations

from typing import Any

_GROCERY_QUICK_SUBSET = {"train": 6, "val": None, "test": 3}  # photos per class kept of each official split

PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "01": {
        "quick": dict(SUBSET=_GROCERY_QUICK_SUBSET, BACKBONE="mobilenet_v2", INPUT_SIZE=64, OPTIMIZER="adam",
                      EPOCHS=3, FINETUNE_EPOCHS=0, CNN_EPOCHS=2, CNN_INPUT_SIZE=48, P=8, K=4, CMC_DRAWS=30),
        "full": dict(SUBSET=None, BACKBONE="mobilenet_v2", INPUT_SIZE=96, OPTIMIZER="adam",
                     EPOCHS=20, FINETUNE_EPOCHS=0, CNN_EPOCHS=8, CNN_INPUT_SIZE=64, P=16, K=4, CMC_DRAWS=100),
        # the original: InceptionV3 trunk, 299 px, frozen then fine-tuned (20 + 30 epochs)
        "gpu": dict(SUBSET=None, BACKBONE="inception_v3_mixed8", INPUT_SIZE=299, OPTIMIZER="adam",
                    EPOCHS=20, FINETUNE_EPOCHS=30, CNN_EPOCHS=30, CNN_INPUT_SIZE=128, P=16, K=4, CMC_DRAWS=200),
    },
    "02": {
        "quick": dict(SUBSET=_GROCERY_QUICK_SUBSET, BACKBONE="mobilenet_v2", INPUT_SIZE=64, OPTIMIZER="adam",
                      FROZEN_LR=1e-3, FINETUNE_LR=1e-5, FROZEN_EPOCHS=2, FINETUNE_EPOCHS=1, P=8, K=4,
                      CMC_DRAWS=30),
        "full": dict(SUBSET=None, BACKBONE="mobilenet_v2", INPUT_SIZE=96, OPTIMIZER="adam",
                     FROZEN_LR=1e-3, FINETUNE_LR=1e-5, FROZEN_EPOCHS=15, FINETUNE_EPOCHS=2, P=16, K=4,
                     CMC_DRAWS=200),
        # the original: InceptionV3, SGD, 20 epochs frozen then 30 fine-tuned
        "gpu": dict(SUBSET=None, BACKBONE="inception_v3_mixed8", INPUT_SIZE=299, OPTIMIZER="sgd",
                    FROZEN_LR=1e-2, FINETUNE_LR=1e-4, FROZEN_EPOCHS=20, FINETUNE_EPOCHS=30, P=16, K=4,
                    CMC_DRAWS=200),
    },
    "03": {
        "quick": dict(MIN_COUNT=300, MAX_PER_CLASS=30, INPUT_SIZE=48, FROZEN_EPOCHS=3, FINETUNE_EPOCHS=1, CNN_EPOCHS=2,
                      SWEEP_EPOCHS=3, LEARNING_RATES=[1e-2, 1e-3], OPTIMIZERS=["adam", "sgd"],
                      SWEEP_BACKBONES=["mobilenet_v2"], SWEEP_HEADS=["fc"]),
        "full": dict(MIN_COUNT=100, MAX_PER_CLASS=100, INPUT_SIZE=48, FROZEN_EPOCHS=15, FINETUNE_EPOCHS=1,
                     CNN_EPOCHS=10, SWEEP_EPOCHS=10, LEARNING_RATES=[1e-2, 1e-3, 1e-4],
                     OPTIMIZERS=["adam", "sgd", "rmsprop"], SWEEP_BACKBONES=["mobilenet_v2", "vgg16"],
                     SWEEP_HEADS=["fc", "bn_dropout"]),  # the original's whole sweep
        "gpu": dict(MIN_COUNT=100, MAX_PER_CLASS=None, INPUT_SIZE=224, FROZEN_EPOCHS=15, FINETUNE_EPOCHS=5,
                    CNN_EPOCHS=30, SWEEP_EPOCHS=10, LEARNING_RATES=[1e-2, 1e-3, 1e-4],
                    OPTIMIZERS=["adam", "sgd", "rmsprop"], SWEEP_BACKBONES=["mobilenet_v2", "vgg16"],
                    SWEEP_HEADS=["fc", "bn_dropout"]),
    },
    "04": {
        "quick": dict(INPUT_SIZE=96, TRAIN_PER_CLASS=20, TEST_PER_CLASS=10, SCALES=[8.0, 32.0], EPOCHS=8, HIDDEN=256),
        "full": dict(INPUT_SIZE=128, TRAIN_PER_CLASS=150, TEST_PER_CLASS=50, SCALES=[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0],
                     EPOCHS=20, HIDDEN=512),
    },
    "05": {
        "quick": dict(MNIST_LIMIT=2000, MARGINS=[0.2, 1.0], N_TRIPLETS=1500, EPOCHS=1, TSNE_POINTS=300,
                      FACES_PER_PERSON=6, FACE_SIZE=96),
        "full": dict(MNIST_LIMIT=None, MARGINS=[0.1, 0.2, 0.5, 1.0], N_TRIPLETS=15000, EPOCHS=2, TSNE_POINTS=2000,
                     FACES_PER_PERSON=None, FACE_SIZE=160),
    },
}


def gpu_available() -> bool:
    """Whether TensorFlow sees a GPU.

    Returns:
        True when ``tf.config.list_physical_devices("GPU")`` is not empty.
    """
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def mode(notebook: str, quick: bool, gpu: bool | None = None) -> str:
    """The mode a notebook runs in.

    Args:
        notebook: ``"01"`` ... ``"05"``.
        quick: the notebook's ``QUICK`` flag.
        gpu: whether a GPU is there (``None``: ask TensorFlow, :func:`gpu_available`).

    Returns:
        ``"quick"`` when ``quick``, else ``"gpu"`` when the notebook has GPU sizes and a GPU
        is there, else ``"full"``.

    Raises:
        KeyError: an unknown notebook.
    """
    if notebook not in PRESETS:
        raise KeyError(f"no presets for notebook {notebook!r}; have {sorted(PRESETS)}")
    if quick:
        return "quick"
    if "gpu" in PRESETS[notebook] and (gpu_available() if gpu is None else gpu):
        return "gpu"
    return "full"


def sizes(notebook: str, quick: bool, gpu: bool | None = None, which: str | None = None) -> dict[str, Any]:
    """A copy of the sizes of ``notebook`` in the mode :func:`mode` picks (or the mode named by ``which``).

    Args:
        notebook: ``"01"`` ... ``"05"``.
        quick: the notebook's ``QUICK`` flag.
        gpu: whether a GPU is there (``None``: ask TensorFlow).
        which: a mode to take instead of :func:`mode`'s choice (``"quick"``, ``"full"``, ``"gpu"``).

    Returns:
        Parameter name -> value; lists and dicts are copies, so a notebook may change them.

    Raises:
        KeyError: an unknown notebook, or a mode it has no preset for.
    """
    chosen = which or mode(notebook, quick, gpu)
    if chosen not in PRESETS.get(notebook, {}):
        raise KeyError(f"notebook {notebook!r} has no {chosen!r} preset; have {sorted(PRESETS.get(notebook, {}))}")
    return {k: (dict(v) if isinstance(v, dict) else list(v) if isinstance(v, list) else v)
            for k, v in PRESETS[notebook][chosen].items()}


def papermill_parameters(notebook: str, quick: bool, gpu: bool | None = None, **extra: Any) -> dict[str, Any]:
    """What to inject with papermill to run ``notebook`` in a mode: ``QUICK``, every size, then ``extra``.

    ``papermill.execute_notebook(path, out, parameters=papermill_parameters("02", False, OUT_DIR="/tmp/02"))``.

    Args:
        notebook: ``"01"`` ... ``"05"``.
        quick: the ``QUICK`` value to inject.
        gpu: whether a GPU is there (``None``: ask TensorFlow).
        **extra: more parameters, injected last (they override sizes of the same name).

    Returns:
        The parameters dict.

    Raises:
        KeyError: an unknown notebook.
    """
    return {"QUICK": bool(quick), **sizes(notebook, quick, gpu), **extra}


def settings(notebook: str, namespace: dict[str, Any]) -> dict[str, Any]:
    """Every parameter a notebook ran with (its upper-case names) and the mode those values match.

    Only names in upper case, not starting with ``_``, other than ``SIZES``, with plain values
    (str, numbers, bools, ``None``, lists, tuples as lists, dicts) are recorded.

    Args:
        notebook: ``"01"`` ... ``"05"``.
        namespace: the notebook's ``globals()``.

    Returns:
        ``{"mode": "quick" | "full" | "gpu" | "custom", "parameters": {NAME: value}}``; ``custom``
        when the sizes equal no preset (a size was changed in the parameters cell).

    Raises:
        KeyError: an unknown notebook.
    """
    simple = (str, int, float, bool, type(None), list, tuple, dict)
    params = {k: (list(v) if isinstance(v, tuple) else v) for k, v in namespace.items()
              if k.isupper() and not k.startswith("_") and isinstance(v, simple) and k != "SIZES"}
    matched = "custom"
    for name, preset in PRESETS[notebook].items():
        if all(k in params and _same(params[k], v) for k, v in preset.items()):
            matched = name
            break
    return {"mode": matched, "parameters": params}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b
