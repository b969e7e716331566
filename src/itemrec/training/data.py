"""From a :class:`~itemrec.training.config.ExperimentConfig` to split manifests and batches.

:func:`load_experiment_data` loads the configured dataset with the loaders of
:mod:`itemrec.data` and :func:`make_splits` applies the open- or closed-set
protocol of :class:`~itemrec.training.config.SplitConfig`. The result,
:class:`SplitData`, is saved next to the run as CSV manifests
(:meth:`SplitData.save` / :meth:`SplitData.load`) so evaluation reads exactly
the images the run was split into.

:func:`batch_indices` gives the index batches of every epoch (shuffled
batches, or P×K batches from :class:`itemrec.data.sampling.PKSampler`) as
one array, so a resumed run can start at any epoch with the same batches.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from itemrec.data.records import ImageDataset
from itemrec.training.config import (
    ConfigError,
    DataConfig,
    ExperimentConfig,
    SplitConfig,
    n_validation_classes,
    n_validation_folds,
)

SPLIT_NAMES = ("train", "val", "calib", "test", "val_classes")


@dataclass
class SplitData:
    """The splits of one run.

    ``train``/``val`` carry dense training labels ``0..n_train_classes-1``;
    ``train_classes[i]`` is the original label of training class ``i``.
    ``test`` (and, open-set, ``calib``) keep the dataset's original labels;
    closed-set they are mapped to the training labels like ``val``.

    Attributes:
        kind: ``"open"`` (test classes unseen in training) or ``"closed"``.
        train: the training images, dense training labels.
        val: more images of the training classes (validation loss, checkpointing), dense labels.
        test: the test images (open set: of unseen classes, original labels).
        calib: open set: images of the unseen classes for calibrating thresholds (original
            labels); ``None`` closed-set.
        train_classes: the original label of each dense training label.
        val_classes: open set: every image of the validation classes, seen classes held out of
            training for model selection, original labels; ``None`` without them.
    """

    kind: str
    train: ImageDataset
    val: ImageDataset
    test: ImageDataset
    calib: ImageDataset | None
    train_classes: list[int]
    val_classes: ImageDataset | None = None

    @property
    def n_train_classes(self) -> int:
        """The number of training classes."""
        return len(self.train_classes)

    def save(self, folder: str | os.PathLike) -> Path:
        """Write ``<split>.csv`` manifests and ``splits.json`` into ``folder``.

        Args:
            folder: the folder to write (created).

        Returns:
            ``folder`` as a ``Path``.
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for name in SPLIT_NAMES:
            part = getattr(self, name)
            if part is not None:
                part.to_csv(folder / f"{name}.csv")
        meta = {"kind": self.kind, "train_classes": self.train_classes, "has_calib": self.calib is not None,
                "validation_classes": self.validation_classes}
        (folder / "splits.json").write_text(json.dumps(meta, indent=1))
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike) -> "SplitData":
        """Read back what :meth:`save` wrote.

        Args:
            folder: the folder holding ``splits.json`` and the manifests.

        Returns:
            The :class:`SplitData`.

        Raises:
            FileNotFoundError: ``splits.json`` is missing (not a finished run's split folder).
        """
        folder = Path(folder)
        meta_path = folder / "splits.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"{meta_path} not found: is {folder.parent} a finished itemrec run folder?")
        meta = json.loads(meta_path.read_text())
        parts = {n: ImageDataset.read_csv(folder / f"{n}.csv") for n in SPLIT_NAMES if (folder / f"{n}.csv").is_file()}
        return cls(meta["kind"], parts["train"], parts["val"], parts["test"], parts.get("calib"),
                   list(meta["train_classes"]), parts.get("val_classes"))

    @property
    def validation_classes(self) -> list[int]:
        """Original labels of the validation classes (empty without them)."""
        if self.val_classes is None:
            return []
        return sorted(int(c) for c in np.unique(self.val_classes.labels))


def _synthetic(cfg: DataConfig, output_dir: str | os.PathLike) -> ImageDataset:
    from itemrec.data.synthetic import write_catalogue

    key = f"n{cfg.synthetic_products}_p{cfg.synthetic_photos}_s{cfg.synthetic_image_size}_seed{cfg.synthetic_seed}"
    root = Path(cfg.root).expanduser() if cfg.root else Path(output_dir).expanduser() / ".synthetic" / key
    manifest = root / "manifest.csv"
    if manifest.is_file():
        ds = ImageDataset.read_csv(manifest)
        if all(os.path.isfile(p) for p in ds.paths):
            return ds
    ds = write_catalogue(root, cfg.synthetic_products, cfg.synthetic_photos, cfg.synthetic_image_size, cfg.synthetic_seed)
    ds.to_csv(manifest)
    return ds


def load_experiment_data(cfg: DataConfig, output_dir: str | os.PathLike = "models", seed: int = 0) -> ImageDataset:
    """The configured dataset as an :class:`ImageDataset` (``max_images_per_class`` applied, seeded).

    ``cfg.name`` picks the loader: ``"synthetic"`` (written once under
    ``<output_dir>/.synthetic/<key>`` unless ``cfg.root`` is given, and reused), ``"grocery"``,
    ``"folder"``, ``"fashion"``, ``"packed-scenes"``, or else the path of a CSV manifest.

    Args:
        cfg: the data config.
        output_dir: where a synthetic catalogue is cached.
        seed: the seed of the per-class subsampling.

    Returns:
        The dataset, with at most ``cfg.max_images_per_class`` images per class when set.

    Raises:
        FileNotFoundError: a manifest path that does not exist; from the loaders, a missing
            dataset folder or file (:class:`itemrec.settings.DataNotFoundError`).
        ValueError: the dataset has no images, or a loader found malformed files.
    """
    from itemrec.data import loaders

    name = cfg.name
    if name == "synthetic":
        ds = _synthetic(cfg, output_dir)
    elif name == "grocery":
        ds = loaders.load_grocery(cfg.root)
    elif name == "folder":
        ds = loaders.load_folder(cfg.root)
    elif name == "fashion":
        ds = loaders.load_fashion(cfg.root, cfg.label_column, cfg.min_count)
    elif name == "packed-scenes":
        ds = loaders.load_packed_scenes(cfg.root)
    else:
        path = Path(name).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"manifest {path} does not exist (data.name is a CSV path)")
        ds = ImageDataset.read_csv(path)
    if len(ds) == 0:
        raise ValueError(f"dataset {name!r} has no images")
    if cfg.max_images_per_class:
        rng = np.random.default_rng(seed)
        keep = np.zeros(len(ds), bool)
        for c in np.unique(ds.labels):
            idx = np.flatnonzero(ds.labels == c)
            keep[np.sort(rng.permutation(idx)[: cfg.max_images_per_class])] = True
        ds = ds.subset(keep)
    return ds


def _two_way(ds: ImageDataset, second: float, names: tuple[str, str], seed: int) -> tuple[ImageDataset, ImageDataset]:
    """Per-class split of ``ds`` into ``names`` with ``second`` of each class in the second part (≥ 1 each)."""
    rng = np.random.default_rng(seed)
    first = np.zeros(len(ds), bool)
    for c in np.unique(ds.labels):
        idx = rng.permutation(np.flatnonzero(ds.labels == c))
        if len(idx) < 2:
            raise ValueError(f"{ds.name}: class {ds.class_names[c]!r} has {len(idx)} image; each split needs one")
        n2 = min(max(1, int(round(second * len(idx)))), len(idx) - 1)
        first[idx[n2:]] = True
    return ds.subset(first, f"{ds.name}/{names[0]}"), ds.subset(~first, f"{ds.name}/{names[1]}")


def _relabel(ds: ImageDataset, classes: list[int]) -> ImageDataset:
    return ds.with_classes(classes, relabel=True)


def validation_fold(seen: np.ndarray, n_val: int, n_folds: int, fold: int, seed: int) -> np.ndarray:
    """The seen classes held out as validation classes in class fold ``fold`` (sorted labels).

    Fold 0 is ``n_val`` classes drawn with ``numpy.random.default_rng(seed + 7919)`` (a generator of
    its own, so the choice does not move when other seeded draws change); the same generator then
    permutes the remaining classes and :func:`numpy.array_split` cuts them into folds ``1 .. n_folds-1``.
    The folds are disjoint and together cover every seen class.

    Args:
        seen: the seen (training) class labels, 1-D.
        n_val: the number of classes in fold 0 (≤ ``len(seen)``).
        n_folds: the number of class folds (≥ 1).
        fold: which fold, in ``[0, n_folds)``.
        seed: the split seed.

    Returns:
        The fold's class labels, sorted.

    Raises:
        ConfigError: ``fold`` is not in ``[0, n_folds)``.
    """
    if not 0 <= fold < n_folds:
        raise ConfigError(f"split.val_fold={fold} is not one of the {n_folds} class folds (0..{n_folds - 1})")
    rng = np.random.default_rng(seed + 7919)
    first = rng.choice(seen, size=n_val, replace=False)
    if fold == 0:
        return np.sort(first)
    rest = rng.permutation(np.setdiff1d(seen, first))
    return np.sort(np.array_split(rest, n_folds - 1)[fold - 1])


def _hold_out_classes(
    train: ImageDataset, val: ImageDataset, cfg: SplitConfig
) -> tuple[ImageDataset, ImageDataset, ImageDataset | None]:
    """Move ``cfg.val_classes_fraction`` of the seen classes (seeded) out of ``train``/``val``.

    Returns ``(train, val, val_classes)``; ``val_classes`` holds every image of the
    held-out classes (``None`` when the fraction is 0). At least two validation
    classes (:func:`~itemrec.training.config.n_validation_classes`) and two training
    classes must remain, else :class:`~itemrec.training.config.ConfigError`.
    """
    if not cfg.val_classes_fraction:
        return train, val, None
    seen = np.unique(train.labels)
    n_val = n_validation_classes(len(seen), cfg.val_classes_fraction)
    if len(seen) - n_val < 2:
        raise ConfigError(
            f"{train.name}: {len(seen)} seen classes leave fewer than 2 for training after holding out {n_val} "
            "validation classes; lower split.val_classes_fraction (0 switches them off)"
        )
    held = validation_fold(seen, n_val, n_validation_folds(cfg.val_classes_fraction), cfg.val_fold, cfg.seed)
    if len(held) < 2 or len(seen) - len(held) < 2:
        raise ConfigError(f"{train.name}: class fold {cfg.val_fold} holds {len(held)} of the {len(seen)} seen classes; "
                          "each fold needs 2 validation classes and 2 training classes: change split.val_classes_fraction")
    import pandas as pd

    in_train, in_val = np.isin(train.labels, held), np.isin(val.labels, held)
    frame = pd.concat([train.frame[in_train], val.frame[in_val]], ignore_index=True)
    both = ImageDataset(frame, list(train.class_names), dict(train.representatives), train.coarse_names,
                        f"{train.name.rsplit('/', 1)[0]}/val_classes")
    return train.subset(~in_train), val.subset(~in_val), both


def make_splits(ds: ImageDataset, cfg: SplitConfig, dataset: str = "") -> SplitData:
    """Apply the open- or closed-set protocol (see :class:`~itemrec.training.config.SplitConfig`).

    Open set: a class-disjoint split into seen and unseen classes (for the 81-class grocery
    dataset with its own train/val/test files: its fixed open-set protocol), then per-class
    train/val of the seen and calib/test of the unseen classes, then validation classes held
    out of training. Closed set (``kind="closed"``): a stratified train/val/test split (the
    grocery dataset's own splits when it has them); ``kind="given"``: the dataset's ``split``
    column.

    Args:
        ds: the dataset.
        cfg: the split config (fractions, seed, validation classes).
        dataset: the configured dataset name (``"grocery"`` selects its fixed protocol).

    Returns:
        The :class:`SplitData`.

    Raises:
        ValueError: a class with a single image where a per-class split needs two; val/test
            classes without training images; ``kind="given"`` without a ``split`` column
            holding train, val and test rows.
        ConfigError: holding out validation classes would leave fewer than 2 training or 2
            validation classes, or ``cfg.val_fold`` is not a class fold.
    """
    from itemrec.data.splits import class_disjoint_split, grocery_open_set, stratified_split

    grocery = dataset == "grocery" and ds.n_classes == 81 and set(ds.frame["split"]) >= {"train", "val", "test"}
    if cfg.kind == "open":
        if grocery:
            seen, unseen = grocery_open_set(ds)
            train, val = seen.split("train"), seen.split("val")
            calib, test = unseen.split("val"), unseen.split("test")
        else:
            seen, unseen = class_disjoint_split(ds, cfg.unseen_fraction, seed=cfg.seed)
            train, val = _two_way(seen, cfg.val_fraction, ("train", "val"), cfg.seed)
            calib, test = _two_way(unseen, 1.0 - cfg.calib_fraction, ("calib", "test"), cfg.seed + 1)
        train, val, val_classes = _hold_out_classes(train, val, cfg)
        classes = sorted(int(c) for c in np.unique(train.labels))
        missing = sorted(set(np.unique(val.labels).tolist()) - set(classes))
        if missing:
            raise ValueError(f"{ds.name}: classes {missing[:10]} of the val split have no training images")
        return SplitData("open", _relabel(train, classes), _relabel(val, classes), test, calib, classes, val_classes)
    if cfg.kind == "given":
        have = set(ds.frame["split"]) if "split" in ds.frame else set()
        if not {"train", "val", "test"} <= have:
            raise ValueError(f"{ds.name}: split.kind 'given' needs a 'split' column with train, val and test rows; "
                             f"it has {sorted(map(str, have))}")
        parts = {n: ds.split(n) for n in ("train", "val", "test")}
    elif grocery:
        parts = {n: ds.split(n) for n in ("train", "val", "test")}
    else:
        fractions = (1.0 - cfg.val_fraction - cfg.test_fraction, cfg.val_fraction, cfg.test_fraction)
        split = stratified_split(ds, fractions, seed=cfg.seed)
        parts = {n: split.split(n) for n in ("train", "val", "test")}
    classes = sorted(int(c) for c in np.unique(parts["train"].labels))
    for n in ("val", "test"):
        extra = sorted(set(np.unique(parts[n].labels).tolist()) - set(classes))
        if extra:
            raise ValueError(f"{ds.name}: {n} classes {extra[:10]} have no training images (closed set)")
    return SplitData("closed", *(_relabel(parts[n], classes) for n in ("train", "val", "test")), None, classes)


def experiment_splits(config: ExperimentConfig) -> SplitData:
    """Load the dataset of ``config`` and split it.

    Args:
        config: the experiment config (``data``, ``split``, ``output_dir``, ``seed``).

    Returns:
        The :class:`SplitData`.

    Raises:
        FileNotFoundError: from :func:`load_experiment_data`.
        ValueError: from :func:`load_experiment_data` and :func:`make_splits`.
        ConfigError: from :func:`make_splits`.
    """
    ds = load_experiment_data(config.data, config.output_dir, config.seed)
    return make_splits(ds, config.split, config.data.name)


def batch_indices(
    labels: np.ndarray,
    epochs: int,
    batch_size: int,
    seed: int,
    p: int | None = None,
    k: int | None = None,
    steps_per_epoch: int | None = None,
) -> np.ndarray:
    """Index batches of every epoch, ``(epochs, steps, batch)`` int64.

    Without P×K: each epoch is a fresh permutation cut into ``len // batch_size``
    full batches (the tail is dropped so every step has the same shape; with
    ``steps_per_epoch`` larger than that, permutations are chained). With
    ``p``/``k``: :class:`itemrec.data.sampling.PKSampler` batches (``batch = p * k``), so
    the whole schedule is fixed by ``seed`` and a resumed run repeats it.

    Args:
        labels: (N,) training labels.
        epochs: the number of epochs.
        batch_size: B without P×K (ignored with it).
        seed: the seed of the permutations / the sampler.
        p: classes per batch (``None``: plain shuffled batches).
        k: images per class with ``p``.
        steps_per_epoch: batches per epoch (default: ``N // batch_size``, or the sampler's own
            count).

    Returns:
        (epochs, steps, batch) int64 indices into ``labels``.

    Raises:
        ValueError: fewer images than one batch; from :class:`PKSampler`, bad P/K or too
            few classes with two images.
    """
    from itemrec.data.sampling import PKSampler

    labels = np.asarray(labels)
    n = len(labels)
    if p is not None:
        sampler = PKSampler(labels, p, k, seed=seed, n_batches=steps_per_epoch)
        return np.stack([np.stack(list(sampler)) for _ in range(epochs)]).astype(np.int64)
    if n < batch_size:
        raise ValueError(f"{n} training images are fewer than one batch of {batch_size}; lower train.batch_size")
    steps = steps_per_epoch or n // batch_size
    rng = np.random.default_rng(seed)
    out = np.empty((epochs, steps, batch_size), np.int64)
    for e in range(epochs):
        stream = np.concatenate([rng.permutation(n) for _ in range(-(-steps * batch_size // n))])
        out[e] = stream[: steps * batch_size].reshape(steps, batch_size)
    return out


def make_train_dataset(x: np.ndarray, y: np.ndarray, idx: np.ndarray, augment: Any = None, seed: int = 0) -> Any:
    """``tf.data`` of ``(x[i], y[i])`` for each index batch ``i`` of ``idx`` (steps, B) in order.

    Images (uint8) are cast to float32 0..255 (the models preprocess
    themselves); with ``augment`` they are passed to it as they are, one by one, each
    with its own seed drawn from ``tf.data.Dataset.random(seed)``, and re-batched.
    Deterministic order; prefetched.

    Args:
        x: (N, ...) images or features.
        y: (N,) labels, cast to int32.
        idx: (..., B) index batches, e.g. a slice of :func:`batch_indices`.
        augment: a per-image function ``(image, seed) -> image`` (seed a (2,) int64
            tensor for ``tf.image.stateless_*``), or ``None``.
        seed: the seed of the augmentation seeds.

    Returns:
        The ``tf.data.Dataset`` of (B, ...) float32 batches and (B,) int32 labels.
    """
    import tensorflow as tf

    batch = idx.shape[-1]
    xs, ys = tf.constant(x), tf.constant(np.asarray(y, np.int32))
    auto = tf.data.AUTOTUNE
    ds = tf.data.Dataset.from_tensor_slices(idx.reshape(-1, batch))
    ds = ds.map(lambda i: (tf.gather(xs, i), tf.gather(ys, i)), num_parallel_calls=auto, deterministic=True)
    if augment is not None:
        seeds = tf.data.Dataset.random(seed=seed).batch(2)
        ds = tf.data.Dataset.zip((ds.unbatch(), seeds))
        ds = ds.map(lambda xy, s: (augment(xy[0], s), xy[1]), num_parallel_calls=auto, deterministic=True)
        ds = ds.batch(batch, drop_remainder=True)
    elif x.dtype != np.float32:
        ds = ds.map(lambda a, b: (tf.cast(a, tf.float32), b), num_parallel_calls=auto, deterministic=True)
    return ds.prefetch(auto)


def make_eval_dataset(x: np.ndarray, y: np.ndarray, batch: int, seed: int = 0) -> Any:
    """Validation batches in one fixed shuffled order (so in-batch mining sees mixed classes).

    Args:
        x: (N, ...) images or features (cast to float32 when they are not).
        y: (N,) labels, cast to int32.
        batch: the batch size (the last batch may be smaller).
        seed: the seed of the order.

    Returns:
        The prefetched ``tf.data.Dataset`` of ``(x, y)`` batches.
    """
    import tensorflow as tf

    order = np.random.default_rng(seed).permutation(len(x))
    ds = tf.data.Dataset.from_tensor_slices((x[order], np.asarray(y, np.int32)[order])).batch(batch)
    if x.dtype != np.float32:
        ds = ds.map(lambda a, b: (tf.cast(a, tf.float32), b))
    return ds.prefetch(tf.data.AUTOTUNE)
