"""Driver of notebook 03: a fashion article-type classifier by transfer learning.

The fashion set's ``articleType`` labels, rare classes dropped, split
stratified and seeded (:func:`fashion_splits`, the closed-set protocol of
:func:`itemrec.training.make_splits`). :func:`train_classifier` trains one
backbone + head:

* a pretrained (or randomly initialised) backbone is first **frozen**: its
  pooled features are computed once (:class:`itemrec.training.FeatureCache`)
  and only the head trains on them, so the backbone cannot change (the result
  records the backbone's weight hash before and after, and its trainable
  parameter count, 0); then its top ``finetune_layers`` layers are
  **fine-tuned** with the head on image batches at a small learning rate,
  BatchNorm kept in inference mode (the Keras transfer-learning recipe);
* each phase ends with the weights of its epoch of lowest validation loss;
* the small CNN (:func:`itemrec.models.small_cnn`) trains from scratch, all
  layers, BatchNorm in training mode.

Heads (:func:`classifier_head`): ``"fc"`` = Dense(hidden, ReLU) → Dense(C);
``"bn_dropout"`` = BatchNorm → Dropout → Dense(hidden, ReLU) → BatchNorm →
Dropout → Dense(C) (Ioffe & Szegedy 2015; Srivastava et al. 2014). Both give
logits trained with sparse categorical cross-entropy.

:func:`sweep_head` is the learning-rate × optimiser sweep on the frozen
features, scored by the best validation loss; :func:`predict_images` and
:func:`plot_predictions` show single-image predictions.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
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
    from ``seed``. ``root`` is the ``fashion-products`` folder (default under
    ``$ITEMREC_DATA``). Labels are dense ``0..C-1``; names in ``train.class_names``.
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


class ImageStore:
    """Decoded uint8 images of each split at one input size, decoded once and kept in memory."""

    def __init__(self, splits: Any, input_size: int, resize_mode: str = "pad") -> None:
        self.splits = splits
        self.input_size = int(input_size)
        self.resize_mode = resize_mode
        self._cache: dict[str, tuple[np.ndarray, np.ndarray, list]] = {}

    @property
    def class_names(self) -> list[str]:
        return list(self.splits.train.class_names)

    def decoded(self, part: str) -> tuple[np.ndarray, np.ndarray, list]:
        """``(images, keep, skipped)`` of split ``part`` (see :func:`itemrec.training.decode_images`)."""
        from itemrec.training.features import decode_images

        if part not in ("train", "val", "test"):
            raise ValueError(f"part must be 'train', 'val' or 'test'; got {part!r}")
        if part not in self._cache:
            ds = getattr(self.splits, part)
            self._cache[part] = decode_images(list(ds.paths), self.input_size, self.resize_mode)
        return self._cache[part]

    def arrays(self, part: str) -> tuple[np.ndarray, np.ndarray]:
        """``(images uint8 (N, S, S, 3), labels (N,))`` of the readable images of ``part``."""
        x, keep, _ = self.decoded(part)
        return x, getattr(self.splits, part).labels[keep]

    def paths(self, part: str) -> np.ndarray:
        _, keep, _ = self.decoded(part)
        return np.asarray(getattr(self.splits, part).paths, dtype=object)[keep]


# -- models -----------------------------------------------------------------------------


def classifier_head(
    feature_dim: int, n_classes: int, kind: str = "fc", hidden: int = 256, dropout: float = 0.5, name: str | None = None
) -> Any:
    """Pooled features (B, feature_dim) → logits (B, n_classes); ``kind`` is ``"fc"`` or ``"bn_dropout"``."""
    import keras

    if kind not in HEADS:
        raise ValueError(f"unknown head {kind!r}; choose one of {HEADS}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must lie in [0, 1); got {dropout}")
    inputs = keras.Input((int(feature_dim),), name="features")
    x = inputs
    if kind == "bn_dropout":
        x = keras.layers.BatchNormalization(name="bn_in")(x)
        x = keras.layers.Dropout(dropout, name="dropout_in")(x)
    x = keras.layers.Dense(int(hidden), activation="relu", name="fc")(x)
    if kind == "bn_dropout":
        x = keras.layers.BatchNormalization(name="bn_fc")(x)
        x = keras.layers.Dropout(dropout, name="dropout_fc")(x)
    logits = keras.layers.Dense(int(n_classes), dtype="float32", name="logits")(x)
    return keras.Model(inputs, logits, name=name or f"{kind}_head")


def _optimizer(name: str, lr: float) -> Any:
    from itemrec.training.builders import build_optimizer

    try:
        return build_optimizer(name, float(lr))
    except KeyError:
        raise ValueError(f"unknown optimizer {name!r}; choose adam, adamw, sgd or rmsprop") from None


def _compile(model: Any, optimizer: str, lr: float) -> None:
    import keras

    model.compile(optimizer=_optimizer(optimizer, lr),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])


def _keep_best() -> Any:
    """A callback that leaves the model with the weights of its best epoch by validation loss."""
    import keras

    return keras.callbacks.EarlyStopping(monitor="val_loss", patience=1 << 30, restore_best_weights=True)


def _frame(history: Any, phase: int, start: int) -> Any:
    import pandas as pd

    f = pd.DataFrame(history.history)
    f.insert(0, "phase", phase)
    f.insert(0, "epoch", np.arange(start, start + len(f)))
    return f


def _backbone_and_features(store: ImageStore, backbone: str, weights: Any, cache_dir: str | os.PathLike | None,
                           seed: int) -> tuple[Any, dict[str, np.ndarray]]:
    """Build the (seeded) backbone frozen and the cached pooled features of train/val."""
    import keras

    from itemrec.models import attach_head, build_backbone, set_trainable
    from itemrec.training.features import FeatureCache, features_of

    keras.utils.set_random_seed(int(seed))
    base = set_trainable(build_backbone(backbone, store.input_size, weights), "frozen")
    extractor = attach_head(base, None, preprocess=backbone, bn_inference=True, name="features")
    feats = {}
    for part in ("train", "val"):
        if cache_dir is None:
            feats[part] = features_of(extractor, store.decoded(part)[0])
        else:
            cached = FeatureCache(cache_dir).get_or_compute(
                extractor, list(getattr(store.splits, part).paths), backbone, weights, store.input_size,
                store.resize_mode, decoded=store.decoded(part))
            feats[part] = cached.features
    return base, feats


@dataclass
class ClassifierResult:
    """One trained classifier and its test scores."""

    name: str
    backbone: str
    head: str
    history: Any  # pandas.DataFrame: epoch, phase, loss, accuracy, val_loss, val_accuracy
    report: Any  # itemrec.evaluation.ClassificationReport on test
    model: Any  # keras.Model: raw pixels (S, S, 3) 0..255 -> logits
    seconds: float
    frozen_check: dict[str, Any] = field(default_factory=dict)

    def metrics(self) -> dict[str, float]:
        """Test accuracy, top-5, macro/weighted F1, best validation loss (overall, frozen and
        fine-tuned phase; NaN for a phase that did not run) and training seconds."""
        r, h = self.report, self.history
        per_phase = {f"best_val_loss_{name}": float(h.loc[h["phase"] == n, "val_loss"].min()) if (h["phase"] == n).any()
                     else float("nan") for n, name in ((1, "frozen"), (2, "finetuned"))}
        return {"accuracy": r.accuracy, "top5_accuracy": r.top_k_accuracy.get(5, float("nan")),
                "f1_macro": r.f1_macro, "f1_weighted": r.f1_weighted,
                "best_val_loss": float(h["val_loss"].min()), **per_phase, "seconds": self.seconds}


def train_classifier(
    store: ImageStore,
    backbone: str = "mobilenet_v2",
    weights: Any = "local",
    head: str = "fc",
    frozen_epochs: int = 5,
    finetune_epochs: int = 1,
    lr: float = 1e-3,
    finetune_lr: float = 1e-5,
    optimizer: str = "adam",
    finetune_layers: int | str = 20,
    batch_size: int = 32,
    hidden: int = 256,
    dropout: float = 0.5,
    cache_dir: str | os.PathLike | None = None,
    seed: int = 0,
    name: str | None = None,
) -> ClassifierResult:
    """Train ``backbone`` + ``head`` on ``store`` (see the module docstring) and score it on test.

    ``weights``: ``"local"`` (the MobileNetV2 file), ``"imagenet"`` (download),
    ``None`` or a file path. ``small_cnn`` trains from scratch for
    ``frozen_epochs + finetune_epochs`` epochs at ``lr``.
    """
    import keras

    from itemrec import evaluation as ev
    from itemrec.models import attach_head, build_backbone, set_trainable
    from itemrec.training.builders import resolve_weights
    from itemrec.training.data import batch_indices, make_eval_dataset, make_train_dataset
    from itemrec.training.features import weights_hash

    t0 = time.perf_counter()
    weights = resolve_weights(weights)
    n_classes = len(store.class_names)
    x, y = store.arrays("train")
    xv, yv = store.arrays("val")
    frames, check = [], {}
    scratch = backbone == "small_cnn"
    if scratch:
        keras.utils.set_random_seed(int(seed))
        base = set_trainable(build_backbone(backbone, store.input_size, weights), "all")
        dim = int(base.output_shape[-1])
        hd = classifier_head(dim, n_classes, head, hidden, dropout)
        model = attach_head(base, hd, preprocess=backbone, bn_inference=False, name="classifier")
        phases = [(2, 0, int(frozen_epochs + finetune_epochs), lr)]
    else:
        base, feats = _backbone_and_features(store, backbone, weights, cache_dir, seed)
        hd = classifier_head(int(feats["train"].shape[1]), n_classes, head, hidden, dropout)
        if frozen_epochs:
            before = weights_hash(base)
            check["backbone_trainable_params"] = int(sum(np.prod(w.shape) for w in base.trainable_weights))
            _compile(hd, optimizer, lr)
            hist = hd.fit(feats["train"], y, validation_data=(feats["val"], yv), epochs=int(frozen_epochs),
                          batch_size=int(batch_size), shuffle=True, callbacks=[_keep_best()], verbose=0)
            frames.append(_frame(hist, 1, 0))
            check["backbone_unchanged"] = weights_hash(base) == before
        model = attach_head(base, hd, preprocess=backbone, bn_inference=True, name="classifier")
        phases = [(2, int(frozen_epochs), int(finetune_epochs), finetune_lr)] if finetune_epochs else []
        if finetune_epochs:
            set_trainable(base, finetune_layers)
            check["finetuned_backbone_params"] = int(sum(np.prod(w.shape) for w in base.trainable_weights))
    for phase, start, epochs, rate in phases:
        if epochs <= 0:
            continue
        _compile(model, optimizer, rate)
        bs = min(int(batch_size), len(y))
        idx = batch_indices(y, epochs, bs, int(seed) + phase)
        hist = model.fit(make_train_dataset(x, y, idx, seed=int(seed)), validation_data=make_eval_dataset(xv, yv, bs),
                         epochs=epochs, steps_per_epoch=idx.shape[1], shuffle=False, callbacks=[_keep_best()],
                         verbose=0)
        frames.append(_frame(hist, phase, start))
    if not frames:
        raise ValueError("nothing to train: give frozen_epochs or finetune_epochs > 0")
    import pandas as pd

    history = pd.concat(frames, ignore_index=True)
    xt, yt = store.arrays("test")
    logits = np.asarray(model.predict(xt.astype(np.float32), batch_size=64, verbose=0))
    report = ev.classification_report(yt, logits, store.class_names, ks=(1, 5))
    return ClassifierResult(name or f"{backbone}+{head}", backbone, head, history, report, model,
                            time.perf_counter() - t0, check)


def sweep_head(
    store: ImageStore,
    backbone: str = "mobilenet_v2",
    weights: Any = "local",
    learning_rates: tuple[float, ...] = (1e-2, 1e-3, 1e-4),
    optimizers: tuple[str, ...] = ("adam", "sgd"),
    epochs: int = 5,
    head: str = "fc",
    batch_size: int = 32,
    cache_dir: str | os.PathLike | None = None,
    seed: int = 0,
) -> Any:
    """Learning rate × optimiser on the frozen features: one row each, sorted by best validation loss.

    Columns: ``optimizer``, ``lr``, ``best_val_loss``, ``best_epoch`` (1-based),
    ``val_accuracy`` (at the best epoch). Every head starts from the same seeded
    initial weights, so only the optimiser and the rate differ.
    """
    import keras
    import pandas as pd

    from itemrec.training.builders import resolve_weights

    if not learning_rates or not optimizers:
        raise ValueError("give at least one learning rate and one optimizer")
    weights = resolve_weights(weights)
    _, feats = _backbone_and_features(store, backbone, weights, cache_dir, seed)
    _, y = store.arrays("train")
    _, yv = store.arrays("val")
    rows = []
    for opt in optimizers:
        for rate in learning_rates:
            keras.utils.set_random_seed(int(seed))
            hd = classifier_head(int(feats["train"].shape[1]), len(store.class_names), head)
            _compile(hd, opt, rate)
            h = hd.fit(feats["train"], y, validation_data=(feats["val"], yv), epochs=int(epochs),
                       batch_size=int(batch_size), shuffle=True, verbose=0).history
            best = int(np.nanargmin(h["val_loss"]))
            rows.append({"optimizer": opt, "lr": float(rate), "best_val_loss": float(h["val_loss"][best]),
                         "best_epoch": best + 1, "val_accuracy": float(h["val_accuracy"][best])})
    return pd.DataFrame(rows).sort_values("best_val_loss", kind="stable").reset_index(drop=True)


# -- predictions ---------------------------------------------------------------------------


def predict_images(model: Any, paths: list[str | os.PathLike], input_size: int, class_names: list[str],
                   top: int = 3, resize_mode: str = "pad") -> Any:
    """Softmax predictions of single image files: one row per readable image.

    Columns ``path``, ``predicted``, ``probability`` and ``top`` (the ``top``
    best ``(class, probability)`` pairs). Unreadable files raise, naming them.
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
    """The images of :func:`predict_images` with their predicted class (green when it matches ``true_names``)."""
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
