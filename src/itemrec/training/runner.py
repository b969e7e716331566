"""``run_experiment(config)``: train an embedding model in two phases and write the run folder.

Phase 1 (``train.frozen_epochs``): the backbone is frozen. Without
augmentation the head (and the loss's own weights) train on backbone features
computed once by :class:`~itemrec.training.features.FeatureCache`; this is
the same function as the full model with a frozen backbone run on the same
batches (BatchNorm in inference mode, the same pixels), only without running
the backbone every epoch. With augmentation every epoch sees new pixels, so
the phase honestly falls back to image batches and says so in the log and in
``training.json``.

Phase 2 (``train.finetune_epochs``): the top ``train.finetune_layers`` backbone
layers train too, on image batches.

Each phase resumes after a kill (``keras.callbacks.BackupAndRestore``), keeps
its best-on-validation weights and writes ``phaseN/history.csv``. Finished
phases leave ``phaseN/done.json`` and their weights, so re-running the same
config continues where it stopped. The run folder ``output_dir/name`` gets:

``config.json``, ``splits/`` (CSV manifests), ``model.keras`` (the training
model: embedding model + loss with its heads/centres), ``embedding.keras`` and
``embedding.embedder.json`` (readable by :meth:`itemrec.embedder.ImageEmbedder.load`),
``history.csv``/``history.json``, ``training.json``, ``metrics.json`` and the
plots of :func:`itemrec.training.report.evaluate_run`.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from itemrec.training.builders import build_loss, build_optimizer, resolve_weights, wrap_for_training
from itemrec.training.config import ConfigError, ExperimentConfig
from itemrec.training.data import make_eval_dataset, make_train_dataset
from itemrec.training.features import FeatureCache

log = logging.getLogger("itemrec.training")


@dataclass
class RunResult:
    """What :func:`run_experiment` produced.

    Attributes:
        run_dir: the run folder, ``output_dir/name``.
        config: the config the run was trained with.
        history: a ``pandas.DataFrame``, one row per epoch across both phases
            (:func:`combined_history`).
        metrics: the evaluation metrics written to ``metrics.json`` (empty when the run was
            not evaluated).
        training: what ``training.json`` holds: replicas, strategy, monitor, validation
            classes, per-phase info (epochs, seconds, best epoch, feature cache use) and the
            total seconds.
        files: names (``"embedding"``, ``"model"``, ``"history"``, ``"config"``, ``"metrics"``)
            to the paths written.
    """

    run_dir: Path
    config: ExperimentConfig
    history: Any  # pandas.DataFrame, one row per epoch
    metrics: dict[str, Any]
    training: dict[str, Any]
    files: dict[str, Path] = field(default_factory=dict)


# -- weights of finished phases ------------------------------------------------------


def save_variables(path: Path, groups: dict[str, list]) -> None:
    """Save Keras variables (by group, in order) to an ``.npz``.

    Args:
        path: the ``.npz`` file to write (NumPy appends ``.npz`` when the name lacks it).
        groups: group name to its variables; variable ``i`` of group ``g`` is stored as
            ``"g/000i"``.
    """
    arrays = {f"{g}/{i:04d}": np.asarray(v.numpy()) for g, vs in groups.items() for i, v in enumerate(vs)}
    np.savez(path, **arrays)


def load_variables(path: Path, groups: dict[str, list]) -> None:
    """Assign the arrays of :func:`save_variables` back; shapes must match.

    Args:
        path: the ``.npz`` file :func:`save_variables` wrote.
        groups: the same groups, holding the same variables in the same order.

    Raises:
        ValueError: a stored array's shape differs from its variable's.
        KeyError: the file lacks a variable of ``groups`` (a different model).
    """
    with np.load(path) as data:
        for g, vs in groups.items():
            for i, v in enumerate(vs):
                arr = data[f"{g}/{i:04d}"]
                if tuple(arr.shape) != tuple(v.shape):
                    raise ValueError(f"{path}: {g} variable {i} has shape {arr.shape}, model expects {tuple(v.shape)}")
                v.assign(arr)


# -- the run ----------------------------------------------------------------------------


def _prepare_run_dir(config: ExperimentConfig, overwrite: bool) -> Path:
    run_dir = config.run_dir
    if overwrite and run_dir.exists():
        if not (run_dir / "config.json").is_file():
            raise ConfigError(f"refusing to delete {run_dir}: it has no config.json, so it is not an itemrec run")
        shutil.rmtree(run_dir)
    saved = run_dir / "config.json"
    if saved.is_file():
        old = json.loads(saved.read_text())
        if old != config.to_dict():
            raise ConfigError(
                f"{run_dir} holds a run with a different config; choose another name, or pass overwrite=True "
                "(itemrec train --overwrite) to replace it"
            )
        if (run_dir / "done.json").is_file():
            raise ConfigError(f"{run_dir} already holds this finished run; pass overwrite=True (--overwrite) to redo it")
        log.info("resuming the unfinished run in %s", run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    config.to_json(saved)
    return run_dir


class _Trainer:
    """The state shared by the phases of one run."""

    def __init__(self, config: ExperimentConfig, run_dir: Path, progress: bool) -> None:
        from itemrec.training.data import experiment_splits
        from itemrec.training.distribute import check_pk_for_replicas, get_strategy

        self.config, self.run_dir, self.progress = config, run_dir, progress
        self.splits = experiment_splits(config)
        self.splits.save(run_dir / "splits")
        self.strategy = get_strategy(config.strategy)
        self.replicas = int(self.strategy.num_replicas_in_sync)
        t = config.train
        check_pk_for_replicas(t.p, t.k, t.global_batch, self.replicas)
        self.weights = resolve_weights(config.model.weights, config.model.backbone)
        self.info: dict[str, Any] = {"replicas": self.replicas, "strategy": config.strategy, "phases": {}}
        self._decoded: dict[str, tuple] = {}
        self.cache = FeatureCache(config.cache_dir)
        self.monitor = t.monitor
        if t.monitor == "auto":
            self.monitor = "valcls_score" if self.splits.val_classes is not None else "val_loss"
        if self.monitor.startswith("valcls_") and self.splits.val_classes is None:
            raise ConfigError(f"train.monitor={self.monitor!r} needs validation classes (split.val_classes_fraction > 0)")
        self.info["monitor"] = self.monitor
        self.info["validation_classes"] = self.splits.validation_classes
        if t.p is not None and t.p > self.splits.n_train_classes:
            raise ConfigError(f"train.p={t.p} exceeds the {self.splits.n_train_classes} training classes of this split; "
                              "lower train.p (or split.val_classes_fraction)")

    def decoded(self, part: str) -> tuple[np.ndarray, np.ndarray, list]:
        """Decoded uint8 images of the ``train``/``val`` split (cached in memory)."""
        from itemrec.training.features import decode_images

        if part not in self._decoded:
            ds = getattr(self.splits, part)
            m = self.config.model
            self._decoded[part] = decode_images(list(ds.paths), m.input_size, m.resize_mode, self.progress)
            if self._decoded[part][2]:
                self.info.setdefault("skipped_images", []).extend(self._decoded[part][2])
        return self._decoded[part]

    def features(self, paths: list) -> Any:
        """Pooled frozen-backbone features of ``paths`` (:class:`~itemrec.training.features.CachedFeatures`)."""
        m = self.config.model
        return self.cache.get_or_compute(self.extractor, [str(p) for p in paths], m.backbone, self.weights, m.input_size,
                                    m.resize_mode, progress=self.progress)

    def build(self) -> None:
        import keras

        from itemrec.models import attach_head, build_backbone, build_head, set_trainable

        c, m = self.config, self.config.model
        keras.utils.set_random_seed(c.seed)
        with self.strategy.scope():
            filters = tuple(m.cnn_filters) if m.cnn_filters else None
            self.backbone = set_trainable(build_backbone(m.backbone, m.input_size, self.weights, filters), "frozen")
            self.extractor = attach_head(self.backbone, None, preprocess=m.backbone, bn_inference=True, name="features")
            dim = int(self.extractor.output_shape[-1])
            if m.head == "none":  # the pooled backbone features are the embedding
                self.head = build_head(dim, None, 0.0, None, l2_normalize=m.l2_normalize)
            elif m.head in ("mlp", "bn_dropout"):
                self.head = build_head(dim, m.embedding_dim, m.dropout, m.hidden, m.activation, m.l2_normalize,
                                       kind=m.head)
            else:
                self.head = build_head(dim, m.embedding_dim, m.dropout, m.hidden, l2_normalize=m.l2_normalize,
                                       kind=m.head, init=m.head_init, decay_to_init=m.decay_to_init)
            if m.head == "linear" and m.head_init == "pca":
                self.head.get_layer("adapter").fit_pca(self.features(list(self.splits.train.paths)).features)
            self.loss = build_loss(c.loss, self.splits.n_train_classes)
            self.loss.build_for(int(self.head.output_shape[-1]))
            if c.train.init_from_catalogue:
                init_class_vectors(self.loss, self.head, self.features(self.catalogue_paths()).features)
        # pretrained (or phase-1-frozen) backbones keep BatchNorm in inference mode; from scratch they train it
        self.bn_inference = self.weights is not None or c.train.frozen_epochs > 0

    def catalogue_paths(self) -> list[str]:
        """The catalogue image of each training class, in label order (``ConfigError`` if one lacks it)."""
        train = self.splits.train
        missing = [train.class_names[c] for c in range(self.splits.n_train_classes) if c not in train.representatives]
        if missing:
            raise ConfigError(f"training classes without a catalogue image: {missing[:5]}; train.init_from_catalogue "
                              "and train.catalogue_copies need one per class")
        return [str(p) for p in train.representative_arrays(np.arange(self.splits.n_train_classes))[0]]

    def with_catalogue(self, x: np.ndarray, y: np.ndarray, catalogue: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``x``/``y`` plus ``train.catalogue_copies`` copies of each training class's catalogue input."""
        copies = self.config.train.catalogue_copies
        if not copies:
            return x, y
        labels = np.arange(len(catalogue))
        return (np.concatenate([x] + [catalogue.astype(x.dtype)] * copies),
                np.concatenate([y] + [labels.astype(y.dtype)] * copies))

    def selection(self, number: int, cached: bool) -> Any:
        """The :class:`~itemrec.training.selection.OpenSetSelection` of a phase (``None`` without val classes)."""
        from itemrec.training.features import decode_images
        from itemrec.training.selection import OpenSetSelection, class_gallery

        vc = self.splits.val_classes
        if vc is None or not self.monitor.startswith("valcls_"):
            return None
        gal = class_gallery(vc)
        if cached:
            q, g = self.features(gal.query_paths), self.features(gal.gallery_paths)
            (xq, q_keep), (xg, g_keep) = (q.features, q.keep), (g.features, g.keep)
        else:
            m = self.config.model
            xq, q_keep, _ = decode_images(gal.query_paths, m.input_size, m.resize_mode)
            xg, g_keep, _ = decode_images(gal.gallery_paths, m.input_size, m.resize_mode)
        if len(g_keep) != len(gal.gallery_paths):
            raise ValueError("a gallery image of the validation classes cannot be read")
        return OpenSetSelection(xq, gal.query_labels[q_keep], xg, gal.gallery_labels, self.run_dir / f"phase{number}" /
                                "selection.json", self.config.eval.metric)

    def embedding_model(self) -> Any:
        from itemrec.models import attach_head

        with self.strategy.scope():
            return attach_head(self.backbone, self.head, preprocess=self.config.model.backbone, bn_inference=self.bn_inference)

    def fit_phase(self, number: int, model: Any, x: np.ndarray, y: np.ndarray, xv: np.ndarray, yv: np.ndarray,
                  initial_epoch: int, epochs: int, lr: float, augment: bool, selection: Any = None) -> None:
        from itemrec.training.callbacks import phase_callbacks, restored_epoch
        from itemrec.training.data import batch_indices

        c, t = self.config, self.config.train
        phase_dir = self.run_dir / f"phase{number}"
        with self.strategy.scope():
            model.compile(optimizer=build_optimizer(t.optimizer, lr))
            model(x[:1].astype(np.float32))  # build (BackupAndRestore needs a built model)
            # and its optimizer, so a checkpoint saved before the first step (epoch -1) holds the same variables
            model.optimizer.build(model.trainable_variables)
        idx = batch_indices(y, epochs - initial_epoch, t.global_batch, c.seed + number, t.p, t.k, t.steps_per_epoch)
        restored = restored_epoch(phase_dir / "backup")
        start = max(0, restored - initial_epoch)
        if restored:
            log.info("phase %d resumes at epoch %d (BackupAndRestore in %s)", number, restored, phase_dir / "backup")
            self.info["phases"][f"phase{number}"]["resumed_at_epoch"] = restored
        aug_fn = None
        if augment:
            from itemrec.data.pipeline import AugmentConfig, make_augmenter

            size = c.model.input_size
            aug_fn = make_augmenter(AugmentConfig(), (size, size))
        train_ds = make_train_dataset(x, y, idx[start:], aug_fn, seed=c.seed + 1000 * number + start)
        val_ds = make_eval_dataset(xv, yv, t.global_batch, c.seed)
        monitor = self.feature_monitor(xv, yv) if t.feature_monitor else None
        callbacks = phase_callbacks(  # the backup stays until the phase is marked done
            phase_dir, self.monitor, t.early_stopping_patience,
            self.run_dir / "logs" / f"phase{number}" if t.tensorboard else None, monitor, delete_backup=False,
            selection=selection,
        )
        t0 = time.perf_counter()
        model.fit(train_ds, validation_data=val_ds, epochs=epochs, initial_epoch=initial_epoch,
                  steps_per_epoch=idx.shape[1], callbacks=callbacks, shuffle=False, verbose=2 if self.progress else 0)
        best = phase_dir / "best.weights.h5"
        if best.is_file():
            model.load_weights(best)
        info = self.info["phases"][f"phase{number}"]
        info.update(seconds=time.perf_counter() - t0, steps_per_epoch=int(idx.shape[1]), monitor=self.monitor)
        meta = phase_dir / "best.weights.h5.json"
        if self.monitor == "last":
            info.update(best_epoch=epochs - 1, kept_starting_weights=False)
        elif meta.is_file():  # epoch -1: the weights before this phase scored best and were kept
            best_meta = json.loads(meta.read_text())
            info.update(best_epoch=best_meta["epoch"], best_score=best_meta["best"],
                        kept_starting_weights=best_meta["epoch"] == -1)
        if (phase_dir / "selection.json").is_file():
            info["before_training"] = json.loads((phase_dir / "selection.json").read_text())["before_training"]

    def feature_monitor(self, xv: np.ndarray, yv: np.ndarray) -> dict[str, Any]:
        """Arguments of the deep-feature monitor: ``train.monitor_classes`` fixed classes, one projection."""
        c = self.config
        classes = np.unique(yv)
        chosen = np.sort(np.random.default_rng(c.seed).permutation(classes)[: c.train.monitor_classes])
        pick = np.flatnonzero(np.isin(yv, chosen))[:600]
        title = c.loss.name
        if hasattr(self.loss, "lam"):
            title += f", λ={self.loss.lam:g}"
        names = self.splits.train.class_names
        return {"data": xv[pick].astype(np.float32), "labels": yv[pick], "embed_fn": None, "title": title,
                "projection": self.run_dir / "feature_projection.npz",
                "class_names": names if len(names) > int(classes.max()) else None}

    def phase1(self) -> None:
        t = self.config.train
        phase_dir = self.run_dir / "phase1"
        groups = {"head": self.head.weights, "loss": self.loss.weights}
        info = self.info["phases"].setdefault("phase1", {"epochs": t.frozen_epochs})
        if (phase_dir / "done.json").is_file():
            load_variables(phase_dir / "weights.npz", groups)
            info.update(json.loads((phase_dir / "done.json").read_text()))
            return
        cached = t.use_feature_cache and not t.augment
        if cached:
            hits, misses = self.cache.hits, self.cache.misses  # count this phase's own look-ups
            feats = {part: self.features(list(getattr(self.splits, part).paths)) for part in ("train", "val")}
            hits, misses = self.cache.hits - hits, self.cache.misses - misses
            x, y = feats["train"].features, self.splits.train.labels[feats["train"].keep]
            xv, yv = feats["val"].features, self.splits.val.labels[feats["val"].keep]
            if t.catalogue_copies:
                x, y = self.with_catalogue(x, y, self.features(self.catalogue_paths()).features)
            model_in = self.head
            info.update(feature_cache=True, cache_hits=hits, cache_misses=misses,
                        cache_keys=[feats["train"].key, feats["val"].key])
            log.info("frozen phase on cached backbone features (%d hits, %d misses)", hits, misses)
        else:
            reason = "augmentation is on" if t.augment else "train.use_feature_cache is off"
            log.warning("frozen phase trains on image batches, not cached features: %s", reason)
            info.update(feature_cache=False, reason=reason)
            (x, keep, _), (xv, keepv, _) = self.decoded("train"), self.decoded("val")
            y, yv = self.splits.train.labels[keep], self.splits.val.labels[keepv]
            x, y = self.with_catalogue(x, y, self.decoded_catalogue())
            model_in = self.embedding_model()
        model = self._wrap(model_in)
        self.fit_phase(1, model, x, y, xv, yv, 0, t.frozen_epochs, t.frozen_lr, t.augment and not cached,
                       self.selection(1, cached))
        save_variables(phase_dir / "weights.npz", groups)
        (phase_dir / "done.json").write_text(json.dumps(info, indent=1))
        shutil.rmtree(phase_dir / "backup", ignore_errors=True)

    def phase2(self) -> None:
        from itemrec.models import set_trainable

        c, t = self.config, self.config.train
        phase_dir = self.run_dir / "phase2"
        info = self.info["phases"].setdefault("phase2", {"epochs": t.finetune_epochs, "trainable": t.finetune_layers})
        with self.strategy.scope():
            set_trainable(self.backbone, t.finetune_layers if t.finetune_layers != "all" else "all")
        if c.train.finetune_lam is not None and hasattr(self.loss, "lam"):
            self.loss.lam = float(c.train.finetune_lam)  # the centre term's weight in this phase
            info["lam"] = self.loss.lam
        info["trainable_backbone_params"] = int(sum(np.prod(w.shape) for w in self.backbone.trainable_weights))
        groups = {"backbone": self.backbone.weights, "head": self.head.weights, "loss": self.loss.weights}
        if (phase_dir / "done.json").is_file():
            load_variables(phase_dir / "weights.npz", groups)
            return
        (x, keep, _), (xv, keepv, _) = self.decoded("train"), self.decoded("val")
        y, yv = self.splits.train.labels[keep], self.splits.val.labels[keepv]
        x, y = self.with_catalogue(x, y, self.decoded_catalogue())
        model = self._wrap(self.embedding_model())
        e0 = t.frozen_epochs
        self.fit_phase(2, model, x, y, xv, yv, e0, e0 + t.finetune_epochs, t.finetune_lr, t.phase2_augment,
                       self.selection(2, False))
        save_variables(phase_dir / "weights.npz", groups)
        (phase_dir / "done.json").write_text(json.dumps(info, indent=1))
        shutil.rmtree(phase_dir / "backup", ignore_errors=True)

    def decoded_catalogue(self) -> np.ndarray:
        """Decoded catalogue images of the training classes (empty without ``train.catalogue_copies``)."""
        from itemrec.training.features import decode_images

        if not self.config.train.catalogue_copies:
            return np.zeros((0,), np.uint8)
        m = self.config.model
        images, keep, skipped = decode_images(self.catalogue_paths(), m.input_size, m.resize_mode)
        if skipped:
            raise ValueError(f"catalogue images cannot be read: {skipped[:3]}")
        return images

    def _wrap(self, model_in: Any) -> Any:
        with self.strategy.scope():
            return wrap_for_training(model_in, self.loss)

    def save(self) -> dict[str, Path]:
        from itemrec.embedder import ImageEmbedder
        from itemrec.models import MetricLearningModel

        m = self.config.model
        emb = self.embedding_model()
        files = {"embedding": ImageEmbedder(emb, m.input_size, m.resize_mode).save(self.run_dir / "embedding.keras")}
        full = MetricLearningModel(emb, self.loss)
        full(np.zeros((1, m.input_size, m.input_size, 3), np.float32))
        full.save(self.run_dir / "model.keras")
        files["model"] = self.run_dir / "model.keras"
        return files


def init_class_vectors(loss: Any, head: Any, catalogue_features: np.ndarray) -> None:
    """Start a loss's class vectors at the training classes' catalogue images, embedded by ``head``.

    The anchors of a cosine-softmax head (:meth:`itemrec.losses.CosineSoftmax.set_anchors`) or the
    proxies of :class:`itemrec.losses.ProxyAnchorLoss` (``set_proxies``); row ``c`` is class ``c``.

    Args:
        loss: the :class:`itemrec.losses.MetricLoss` whose class vectors are set.
        head: the embedding head (a Keras model from backbone features to embeddings); its
            outputs are L2-normalised before they are assigned.
        catalogue_features: (n_classes, F) backbone features of each training class's
            catalogue image, in label order.

    Raises:
        ConfigError: the loss has no class vectors.
        ValueError: the embedded features are not (n_classes, D) (from the loss).
    """
    import keras

    from itemrec.distances import l2_normalize

    if not loss.has_class_vectors:
        raise ConfigError(f"{type(loss).__name__} has no class vectors to start from the catalogue")
    emb = head.predict(np.asarray(catalogue_features, np.float32), verbose=0)
    loss.set_class_vectors(keras.ops.convert_to_numpy(l2_normalize(emb)))


def combined_history(run_dir: Path) -> Any:
    """The phases' CSV logs as one frame (``epoch`` 0-based across phases, ``phase`` column).

    A phase resumed after a kill may have logged an epoch twice; the last row wins.

    Args:
        run_dir: the run folder (reads ``phase1/history.csv`` and ``phase2/history.csv``
            where they exist and are not empty).

    Returns:
        A ``pandas.DataFrame`` sorted by ``epoch`` with a ``phase`` column (1 or 2) and the
        logged metrics; empty (columns ``epoch``, ``phase``) when no phase has logged.
    """
    import pandas as pd

    frames = []
    for number in (1, 2):
        path = run_dir / f"phase{number}" / "history.csv"
        if path.is_file() and path.stat().st_size:
            f = pd.read_csv(path)
            f.insert(1, "phase", number)
            frames.append(f)
    if not frames:
        return pd.DataFrame(columns=["epoch", "phase"])
    hist = pd.concat(frames, ignore_index=True)
    return hist.drop_duplicates("epoch", keep="last").sort_values("epoch").reset_index(drop=True)


def run_experiment(
    config: ExperimentConfig, overwrite: bool = False, progress: bool = False, evaluate: bool = True
) -> RunResult:
    """Train as ``config`` says and write the run folder (see the module docstring).

    Re-running an unfinished run with the same config resumes it; a finished
    one raises unless ``overwrite``. ``evaluate`` runs
    :func:`itemrec.training.report.evaluate_run` at the end.

    Args:
        config: the experiment (validated again here).
        overwrite: delete an existing run folder of the same name first (only one that holds
            a ``config.json``, i.e. an itemrec run).
        progress: log Keras progress per epoch and show progress bars while embedding.
        evaluate: evaluate the trained run (``metrics.json`` and plots).

    Returns:
        The :class:`RunResult`.

    Raises:
        TypeError: ``config`` is not an :class:`~itemrec.training.config.ExperimentConfig`.
        ConfigError: an invalid config; the run folder holds a different config, or this
            finished run, without ``overwrite``; ``overwrite`` on a folder that is not an
            itemrec run; what the data make impossible (``train.p`` above the training
            classes, a ``valcls_`` monitor without validation classes, training classes
            without a catalogue image where one is needed, no local weights file for the
            backbone). A run folder created by this call is removed again when the error
            comes before training.
        ValueError: the split cannot be made (see :func:`itemrec.training.make_splits`), or
            images the training needs cannot be read.
        itemrec.settings.DataNotFoundError: the dataset or the local weights file is missing.
    """

    if not isinstance(config, ExperimentConfig):
        raise TypeError(f"config must be an ExperimentConfig; got {type(config).__name__}")
    config.validate()
    fresh = not config.run_dir.exists()
    run_dir = _prepare_run_dir(config, overwrite)
    t0 = time.perf_counter()
    try:
        trainer = _Trainer(config, run_dir, progress)
    except ConfigError:
        if fresh:  # nothing was trained: do not leave a run folder that blocks the corrected config
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    trainer.build()
    if config.train.frozen_epochs:
        trainer.phase1()
    if config.train.finetune_epochs:
        trainer.phase2()
    files = trainer.save()
    history = combined_history(run_dir)
    history.to_csv(run_dir / "history.csv", index=False)
    (run_dir / "history.json").write_text(history.to_json(orient="records", indent=1))
    files.update(history=run_dir / "history.csv", config=run_dir / "config.json")
    trainer.info["seconds"] = time.perf_counter() - t0
    (run_dir / "training.json").write_text(json.dumps(trainer.info, indent=1, default=str))
    metrics: dict[str, Any] = {}
    if evaluate:
        from itemrec.training.report import evaluate_run

        metrics = evaluate_run(run_dir, progress=progress)
        files["metrics"] = run_dir / "metrics.json"
    (run_dir / "done.json").write_text(json.dumps({"seconds": time.perf_counter() - t0}))
    return RunResult(run_dir, config, history, metrics, trainer.info, files)
