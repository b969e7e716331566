"""Driver of notebook 03: a fashion article-type classifier by transfer learning, trained by the one trainer.

The fashion set's ``articleType`` labels, rare classes dropped, split
stratified and seeded (:func:`fashion_splits`, the closed-set protocol of
:func:`itemrec.training.make_splits`). Each model is an
:class:`itemrec.training.ExperimentConfig` (:func:`fashion_config`) trained by
:func:`itemrec.training.run_experiment` through
:func:`itemrec.training.runs.run_or_load` (run folders keyed by the training
config, kept, read back when unchanged):

* a pretrained (or randomly initialised) backbone is first **frozen**: its
  pooled features are computed once (:class:`itemrec.training.FeatureCache`)
  and only the head and the classifier train on them, so the backbone is not
  even in the trained model; then its top ``finetune_layers`` layers are
  **fine-tuned** with the head on image batches at a small learning rate,
  BatchNorm kept in inference mode (the Keras transfer-learning recipe);
* each phase ends with the weights of its epoch of lowest validation loss;
* the small CNN (:func:`itemrec.models.small_cnn`) trains from scratch, all
  layers, BatchNorm in training mode: ask for it with ``frozen_epochs=0`` and
  ``finetune_layers="all"`` (nothing moves epochs between phases behind the caller's back).

Heads (``model.head``): ``"fc"`` = Dense(hidden, ReLU), ``"bn_dropout"`` =
BatchNorm → Dropout → Dense(hidden, ReLU) → BatchNorm → Dropout (Ioffe &
Szegedy 2015; Srivastava et al. 2014); the softmax loss's classifier (Dense(C))
gives the logits, trained with cross-entropy.

:func:`sweep_head` is the learning-rate × optimiser sweep on the frozen
features (one short run each), scored by the best validation loss;
:func:`predict_images` and :func:`plot_predictions` show single-image
predictions of a run (:class:`RunClassifier`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

HEADS = ("fc", "bn_dropout")


# -- data -------------------------------------------------------------------------------


def fashion_splits(
    root: str | os.PathLike | None = None,
    label_column: str = "articleType",
    min_count: int = 50,
    max_per_class: int | None = None,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 0,
) -> Any:
    """Closed-set train/val/test :class:`itemrec.training.SplitData` of the fashion set.

    Classes with fewer than ``min_count`` images are dropped; ``max_per_class``
    keeps a seeded random sample of each remaining class; the split is
    stratified (every class in every part) with ``numpy``/scikit-learn seeds
    from ``seed``. Labels are dense ``0..C-1``; names in ``train.class_names``.

    Args:
        root: the ``fashion-products`` folder (default under ``$ITEMREC_DATA``).
        label_column: the ``styles.csv`` column giving the class (default ``articleType``).
        min_count: the fewest images a class needs to stay.
        max_per_class: images kept per class (``None``: all).
        val_fraction: the validation part, a fraction of all images in (0, 1).
        test_fraction: the test part, a fraction of all images in (0, 1).
        seed: the seed of the sampling and the split.

    Returns:
        The ``SplitData`` (kind ``"closed"``).

    Raises:
        ConfigError: an invalid data or split setting.
        DataNotFoundError: the dataset folder or ``styles.csv`` is missing.
        ValueError: malformed ``styles.csv``, no images left, or a class too small to stratify.
    """
    from itemrec.training.config import DataConfig, SplitConfig
    from itemrec.training.data import load_experiment_data, make_splits

    data = DataConfig(name="fashion", root=None if root is None else str(root), label_column=label_column,
                      min_count=int(min_count), max_images_per_class=max_per_class)
    data.validate()
    split = SplitConfig(kind="closed", val_fraction=val_fraction, test_fraction=test_fraction, seed=int(seed))
    split.validate()
    ds = load_experiment_data(data, seed=int(seed))
    return make_splits(ds, split, "fashion")


# -- models -----------------------------------------------------------------------------


def fashion_config(
    name: str,
    output_dir: str | os.PathLike,
    *,
    backbone: str = "mobilenet_v2",
    weights: str | None = "local",
    head: str = "fc",
    root: str | os.PathLike | None = None,
    label_column: str = "articleType",
    min_count: int = 50,
    max_per_class: int | None = None,
    input_size: int = 48,
    optimizer: str = "adam",
    lr: float = 1e-3,
    frozen_epochs: int = 5,
    finetune_epochs: int = 1,
    finetune_lr: float = 1e-5,
    finetune_layers: int | str = 20,
    batch_size: int = 32,
    hidden: int = 256,
    dropout: float = 0.5,
    feature_cache_dir: str | os.PathLike | None = None,
    seed: int = 0,
) -> Any:
    """The :class:`itemrec.training.ExperimentConfig` of one fashion classifier (see the module docstring).

    The run's retrieval scores use L2 distance (``eval.metric``): the trunk ends in a ReLU
    layer whose output can be all zero, where cosine distance is undefined. The schedule is
    trained as given: a backbone without weights keeps random frozen features in phase 1
    (VGG16 offline: a floor); the small CNN from scratch is ``frozen_epochs=0``,
    ``finetune_layers="all"``. The split is always 15 % validation, 15 % test.

    Args:
        name: run name (the folder is ``output_dir/name``; see :func:`itemrec.training.runs.keyed`).
        output_dir: where runs go.
        backbone: a key of :data:`itemrec.models.backbones.BACKBONES`.
        weights: the backbone's weights (``"local"``, ``"imagenet"``, ``None``, a file).
        head: ``"fc"`` (Dense(hidden, ReLU)) or ``"bn_dropout"``.
        root: the dataset folder (:func:`fashion_splits`).
        label_column: the ``styles.csv`` label column.
        min_count: the fewest images a class needs to stay.
        max_per_class: images kept per class (``None``: all).
        input_size: pixels of the square input.
        optimizer: ``"adam"``, ``"sgd"`` or ``"rmsprop"`` (both phases).
        lr: phase 1's learning rate (backbone frozen, cached features).
        frozen_epochs: phase 1's epochs.
        finetune_epochs: phase 2's epochs (0: no fine-tuning).
        finetune_lr: phase 2's learning rate.
        finetune_layers: top layers of the backbone that train in phase 2, or ``"all"``.
        batch_size: images per step.
        hidden: units of the head's hidden layer.
        dropout: the dropout rate of ``bn_dropout`` (the ``fc`` head has none).
        feature_cache_dir: shared frozen-feature cache (default ``output_dir/.feature_cache``).
        seed: split, weights and batches.

    Returns:
        The validated config.

    Raises:
        ValueError: an unknown head.
        ConfigError: any invalid value.
    """
    from itemrec.training import ExperimentConfig

    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}; choose one of {HEADS}")
    return ExperimentConfig.from_dict({
        "name": name, "output_dir": str(output_dir), "seed": int(seed),
        "feature_cache_dir": None if feature_cache_dir is None else str(feature_cache_dir),
        "data": {"name": "fashion", "root": None if root is None else str(root), "label_column": label_column,
                 "min_count": int(min_count), "max_images_per_class": max_per_class},
        "split": {"kind": "closed", "val_fraction": 0.15, "test_fraction": 0.15, "seed": int(seed)},
        "model": {"backbone": backbone, "weights": weights, "input_size": int(input_size),
                  "head": "mlp" if head == "fc" else "bn_dropout", "hidden": int(hidden), "embedding_dim": None,
                  "dropout": 0.0 if head == "fc" else float(dropout), "l2_normalize": False},
        "loss": {"class_name": "SoftmaxLoss", "config": {}},
        "train": {"optimizer": optimizer, "frozen_epochs": int(frozen_epochs), "frozen_lr": float(lr),
                  "finetune_epochs": int(finetune_epochs), "finetune_lr": float(finetune_lr),
                  "finetune_layers": finetune_layers, "batch_size": int(batch_size), "monitor": "val_loss",
                  "tensorboard": False},
        # the trunk's output is a ReLU layer, not a unit embedding: it can be all zero, where cosine is undefined
        "eval": {"metric": "l2"},
    })


class RunClassifier:
    """A finished classifier run as a model of raw pixels (N, S, S, 3) 0..255 → logits (N, C).

    Loads ``<run_dir>/model.keras`` (an :class:`itemrec.models.MetricLearningModel` whose
    softmax loss holds the classifier).

    Args:
        run_dir: the run folder.

    Raises:
        ValueError: ``model.keras`` is missing or not a Keras model file (from Keras's loader).
    """

    def __init__(self, run_dir: str | os.PathLike) -> None:
        import keras

        from itemrec.models import register_custom_objects

        register_custom_objects()
        self.run_dir = Path(run_dir)
        self.model = keras.saving.load_model(self.run_dir / "model.keras", compile=False)

    def predict(self, images: np.ndarray, batch_size: int = 64, verbose: int = 0) -> np.ndarray:
        """Logits of ``images`` (float32 or uint8 pixels), float32 (N, C).

        Args:
            images: (N, S, S, 3) raw pixels 0..255.
            batch_size: inference batch size.
            verbose: Keras's ``predict`` verbosity.

        Returns:
            (N, C) float32 logits (apply a softmax for probabilities).
        """
        import keras

        emb = self.model.embedding_model.predict(np.asarray(images, np.float32), batch_size=batch_size, verbose=verbose)
        return np.asarray(keras.ops.convert_to_numpy(self.model.metric_loss.logits(emb)), np.float32)


@dataclass
class ClassifierResult:
    """One trained classifier run and its test scores.

    Attributes:
        name: the run's name.
        run: the :class:`itemrec.training.RunResult`.
        report: the :class:`itemrec.evaluation.ClassificationReport` on the test split.
        model: the run as a :class:`RunClassifier`.
    """

    name: str
    run: Any  # itemrec.training.RunResult
    report: Any  # itemrec.evaluation.ClassificationReport on test
    model: RunClassifier

    @property
    def history(self) -> Any:
        """pandas.DataFrame: epoch, phase, loss, ce, accuracy, val_loss, val_ce, val_accuracy."""
        return self.run.history

    @property
    def frozen_check(self) -> dict[str, Any]:
        """How the phases trained: phase 1 on cached features (the backbone not in the model), phase 2's trainable backbone size."""
        phases = self.run.training.get("phases", {})
        out: dict[str, Any] = {}
        if "phase1" in phases:
            out["frozen_on_cached_features"] = bool(phases["phase1"].get("feature_cache"))
        if "phase2" in phases:
            out["finetuned_backbone_params"] = int(phases["phase2"].get("trainable_backbone_params", 0))
        return out

    def metrics(self) -> dict[str, float]:
        """The headline numbers of the run.

        Returns:
            ``accuracy``, ``top5_accuracy``, ``f1_macro``, ``f1_weighted`` (test, in [0, 1]),
            ``best_val_loss`` overall, ``best_val_loss_frozen`` and ``best_val_loss_finetuned``
            (NaN for a phase that did not run), and ``seconds`` of training.
        """
        r, h = self.report, self.history
        per_phase = {f"best_val_loss_{name}": float(h.loc[h["phase"] == n, "val_loss"].min()) if (h["phase"] == n).any()
                     else float("nan") for n, name in ((1, "frozen"), (2, "finetuned"))}
        return {"accuracy": r.accuracy, "top5_accuracy": r.top_k_accuracy.get(5, float("nan")),
                "f1_macro": r.f1_macro, "f1_weighted": r.f1_weighted,
                "best_val_loss": float(h["val_loss"].min()), **per_phase,
                "seconds": float(self.run.training.get("seconds", float("nan")))}


def run_classifier(config: Any, progress: bool = False) -> ClassifierResult:
    """Train (or read back) ``config`` with :func:`itemrec.training.runs.run_or_load` and score its test split.

    Args:
        config: a :func:`fashion_config` config.
        progress: progress bars.

    Returns:
        The :class:`ClassifierResult` (test accuracy, top-5 and F1 over the test images that
        could be read).

    Raises:
        ConfigError: the run folder holds another training config.
        FileNotFoundError: a split manifest or the model is missing from the run folder.
    """
    from itemrec import evaluation as ev
    from itemrec.training.data import SplitData
    from itemrec.training.features import decode_images
    from itemrec.training.runs import run_or_load

    run = run_or_load(config, progress=progress)
    model = RunClassifier(run.run_dir)
    splits = SplitData.load(run.run_dir / "splits")
    m = config.model
    xt, keep, _ = decode_images(list(splits.test.paths), m.input_size, m.resize_mode)
    report = ev.classification_report(splits.test.labels[keep], model.predict(xt), list(splits.train.class_names),
                                      ks=(1, 5))
    return ClassifierResult(config.name, run, report, model)


def sweep_head(
    configs: dict[tuple[str, float], Any], progress: bool = False
) -> Any:
    """One short frozen-phase run per ``(optimizer, learning rate)`` config: a table sorted by best validation loss.

    Args:
        configs: ``{(optimizer, lr): ExperimentConfig}``, typically :func:`fashion_config` with
            ``finetune_epochs=0`` and only the optimiser and the rate changed.
        progress: progress bars.

    Returns:
        pandas.DataFrame with ``optimizer``, ``lr``, ``best_val_loss``, ``best_epoch`` (1-based),
        ``val_accuracy`` (at the best epoch), ``run`` (folder name), best first.

    Raises:
        ValueError: no configs.
    """
    import pandas as pd

    from itemrec.training.runs import run_or_load

    if not configs:
        raise ValueError("give at least one (optimizer, learning rate) config")
    rows = []
    for (opt, rate), config in configs.items():
        h = run_or_load(config, progress=progress).history
        best = int(np.nanargmin(h["val_loss"].to_numpy(dtype=float)))
        rows.append({"optimizer": opt, "lr": float(rate), "best_val_loss": float(h["val_loss"].iloc[best]),
                     "best_epoch": best + 1, "val_accuracy": float(h["val_accuracy"].iloc[best]),
                     "run": config.name})
    return pd.DataFrame(rows).sort_values("best_val_loss", kind="stable").reset_index(drop=True)


# -- predictions ---------------------------------------------------------------------------


def predict_images(model: Any, paths: list[str | os.PathLike], input_size: int, class_names: list[str],
                   top: int = 3, resize_mode: str = "pad") -> Any:
    """Softmax predictions of single image files: one row per image.

    Args:
        model: anything with ``predict(images float32 (N, S, S, 3), verbose=0) -> (N, C)``
            logits, e.g. a :class:`RunClassifier`.
        paths: image files.
        input_size: side S in pixels the images are fitted to.
        class_names: the C class names, in label order.
        top: how many best classes to list per image.
        resize_mode: ``"pad"`` or ``"crop"``.

    Returns:
        pandas.DataFrame with columns ``path``, ``predicted``, ``probability`` and ``top``
        (the ``top`` best ``(class, probability)`` pairs, probabilities rounded to 4 digits).

    Raises:
        ValueError: an unreadable file (named), or a model whose class count differs from
            ``class_names``.
    """
    import pandas as pd

    from itemrec.data.images import load_images

    images, keep, skipped = load_images([str(p) for p in paths], input_size, resize_mode)
    if skipped:
        raise ValueError(f"cannot read images: {skipped[:3]}")
    logits = np.asarray(model.predict(images.astype(np.float32), verbose=0), dtype=np.float64)
    if logits.shape[1] != len(class_names):
        raise ValueError(f"model gives {logits.shape[1]} classes but {len(class_names)} class names were given")
    z = logits - logits.max(axis=1, keepdims=True)
    prob = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    order = np.argsort(-prob, axis=1, kind="stable")[:, :top]
    rows = [{"path": str(paths[i]), "predicted": class_names[order[r, 0]], "probability": float(prob[r, order[r, 0]]),
             "top": [(class_names[j], round(float(prob[r, j]), 4)) for j in order[r]]} for r, i in enumerate(keep)]
    return pd.DataFrame(rows)


def plot_predictions(table: Any, true_names: list[str] | None = None, thumb: int = 96,
                     path: str | os.PathLike | None = None) -> Any:
    """The images of :func:`predict_images` with their predicted class (green when it matches ``true_names``).

    Args:
        table: the DataFrame :func:`predict_images` returned.
        true_names: the true class of each row (``None``: titles in black, no verdict).
        thumb: the side in pixels each image is drawn at.
        path: where to save the figure too; parents are created.

    Returns:
        The ``matplotlib.figure.Figure`` (up to 6 images per row).

    Raises:
        ValueError: an empty table, or ``true_names`` of another length.
        FileNotFoundError: an image path no longer exists.
    """
    from itemrec.plots._common import load_image, maybe_save, new_figure

    n = len(table)
    if n == 0:
        raise ValueError("no predictions to plot")
    if true_names is not None and len(true_names) != n:
        raise ValueError(f"{len(true_names)} true names for {n} predictions")
    cols = min(n, 6)
    rows = -(-n // cols)
    fig = new_figure(1.9 * cols, 2.3 * rows)
    for i, r in enumerate(table.itertuples()):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.imshow(load_image(r.path, thumb))
        ok = None if true_names is None else r.predicted == true_names[i]
        colour = "black" if ok is None else ((0.1, 0.6, 0.1) if ok else (0.85, 0.1, 0.1))
        title = f"{r.predicted}\n{r.probability:.2f}"
        if true_names is not None:
            title += f"\n(true: {true_names[i]})"
        ax.set_title(title, fontsize=7, color=colour)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return maybe_save(fig, path)
