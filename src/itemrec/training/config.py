"""Experiment configuration: one JSON file describes a whole training run.

:class:`ExperimentConfig` nests small dataclasses (:class:`DataConfig`,
:class:`SplitConfig`, :class:`ModelConfig`, :class:`~itemrec.training.loss_config.LossConfig`
(a serialised loss object),
:class:`TrainConfig`, :class:`EvalConfig`). It round-trips through JSON
(:meth:`ExperimentConfig.to_json` / :meth:`ExperimentConfig.from_json`), can be
overridden with dotted ``key=value`` strings (``train.batch_size=16``, what
``itemrec train --set`` passes) and is validated on construction: every bad
value raises :class:`ConfigError` naming the field, the value and the choices.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from itemrec.training._checks import ConfigError, _choice, _fraction, _int, _positive
from itemrec.training.loss_config import OLD_KEYS, LossConfig, convert_old_loss, is_old_format

DATASETS = ("synthetic", "grocery", "folder", "fashion", "packed-scenes")
SPLITS = ("open", "closed", "given")
WEIGHTS_KEYWORDS = ("imagenet", "local")
OPTIMIZERS = ("adam", "sgd", "rmsprop", "adamw")
RESIZE_MODES = ("pad", "crop")
STRATEGIES = ("default", "mirrored", "multiworker")
ACTIVATIONS = ("linear", "prelu", "sigmoid")
HEADS = ("mlp", "linear", "residual", "none", "bn_dropout")
HEAD_INITS = ("identity", "pca", "random")


@dataclass
class DataConfig:
    """Which images: ``name`` is one of :data:`DATASETS` or the path of a manifest CSV.

    ``root`` overrides the dataset folder (default ``$ITEMREC_DATA/<dataset>``; for
    ``folder`` it is required: ``root/<class>/<image>``; for ``synthetic`` it is where
    the catalogue is written, default ``<output_dir>/.synthetic/<size key>``).

    Attributes:
        name: ``"synthetic"`` (default), ``"grocery"``, ``"folder"``, ``"fashion"``,
            ``"packed-scenes"``, or the path of a manifest ``.csv``.
        root: the dataset folder, or ``None`` for the default (required for ``folder``).
        synthetic_products: synthetic catalogue: number of products (classes), >= 2.
        synthetic_photos: synthetic catalogue: photos per product, >= 2.
        synthetic_image_size: synthetic catalogue: image side in pixels, >= 16.
        synthetic_seed: synthetic catalogue: its seed, >= 0.
        label_column: fashion only: the ``styles.csv`` column that gives the class.
        min_count: fashion only: classes with fewer images are dropped (>= 1).
        max_images_per_class: keep at most this many images per class (a seeded draw),
            or ``None`` for all.
    """

    name: str = "synthetic"
    root: str | None = None
    synthetic_products: int = 12
    synthetic_photos: int = 8
    synthetic_image_size: int = 64
    synthetic_seed: int = 0
    label_column: str = "articleType"  # fashion only
    min_count: int = 10  # fashion only
    max_images_per_class: int | None = None

    def validate(self) -> None:
        """Check every field.

        Raises:
            ConfigError: an unknown dataset name, ``folder`` without ``root``, or a count below
                its minimum (the message names the field and the value).
        """
        if self.name not in DATASETS and not str(self.name).endswith(".csv"):
            raise ConfigError(f"data.name must be one of {list(DATASETS)} or a manifest .csv path; got {self.name!r}")
        if self.name == "folder" and not self.root:
            raise ConfigError("data.root is required for data.name='folder' (a folder of class sub-folders)")
        _int("data.synthetic_products", self.synthetic_products, 2)
        _int("data.synthetic_photos", self.synthetic_photos, 2)
        _int("data.synthetic_image_size", self.synthetic_image_size, 16)
        _int("data.synthetic_seed", self.synthetic_seed, 0)
        _int("data.min_count", self.min_count, 1)
        _int("data.max_images_per_class", self.max_images_per_class, 1, allow_none=True)


@dataclass
class SplitConfig:
    """How images are split.

    ``open``: class-disjoint. The *seen* classes give ``train`` and ``val``
    (held-out images of the training classes, for the loss curve); the *unseen*
    classes give ``calib`` (thresholds are fitted there) and ``test`` (queries).
    ``val_classes_fraction`` of the seen classes (seeded by ``seed``, at least
    two classes) are held out of training as **validation classes**
    (``val_classes`` split: all their images): model selection, checkpointing
    and early stopping use open-set metrics on them (Musgrave et al. 2020,
    "A Metric Learning Reality Check"); 0 switches them off. ``val_fold``
    picks which of :func:`n_validation_folds` class-disjoint folds of the seen
    classes is held out (fold 0 is the seeded draw above, the others partition
    the rest), so a choice can be cross-validated over every fold. For grocery the
    unseen classes are the fixed :data:`itemrec.data.splits.GROCERY_UNSEEN` and
    the official train/val/test files decide the images (seen: train/val;
    unseen: calib = official val, test = official test; validation classes:
    their official train + val photos). ``closed``: every class in every split
    (grocery: the official split files; otherwise stratified by
    ``val_fraction``/``test_fraction``). ``given``: closed set, the dataset's own
    ``split`` column decides (``train``, ``val``, ``test``; a manifest CSV written by
    the caller, e.g. a duplicate-safe split).

    Attributes:
        kind: ``"open"`` (default), ``"closed"`` or ``"given"``.
        unseen_fraction: open, not grocery: fraction of the classes held out as unseen, in (0, 1).
        val_fraction: open: fraction of each seen class's images in ``val``; closed: fraction
            of all images in ``val`` (stratified); in (0, 1).
        test_fraction: closed: fraction of all images in ``test``, in (0, 1);
            ``val_fraction + test_fraction`` must be < 1.
        calib_fraction: open, not grocery: fraction of each unseen class's images in
            ``calib`` (the rest are ``test``), in (0, 1).
        enrolled_fraction: fraction of the test classes enrolled in the open-set (DIR/FAR)
            evaluation's gallery (:func:`itemrec.training.evaluate_run`; at least one class
            enrolled and one left unknown), in (0, 1).
        val_classes_fraction: fraction of the seen classes held out as validation classes,
            in [0, 1); 0 switches them off.
        val_fold: which class fold is held out, in ``[0, n_validation_folds(val_classes_fraction))``.
        seed: the seed of every draw of the split, >= 0.
    """

    kind: str = "open"
    unseen_fraction: float = 0.5
    val_fraction: float = 0.2
    test_fraction: float = 0.2
    calib_fraction: float = 0.3
    enrolled_fraction: float = 0.5
    val_classes_fraction: float = 0.25
    val_fold: int = 0
    seed: int = 0

    def validate(self) -> None:
        """Check every field and their combinations.

        Raises:
            ConfigError: an unknown ``kind``; a fraction outside (0, 1) (``val_classes_fraction``:
                [0, 1)); ``val_fold`` not one of the folds (or > 0 without validation classes);
                ``val_fraction + test_fraction >= 1``; a negative seed.
        """
        _choice("split.kind", self.kind, SPLITS)
        for name in ("unseen_fraction", "val_fraction", "test_fraction", "calib_fraction", "enrolled_fraction"):
            _fraction(f"split.{name}", getattr(self, name))
        if isinstance(self.val_classes_fraction, bool) or not isinstance(self.val_classes_fraction, (int, float)) \
                or not 0 <= self.val_classes_fraction < 1:
            raise ConfigError(f"split.val_classes_fraction must lie in [0, 1); got {self.val_classes_fraction!r}")
        _int("split.val_fold", self.val_fold, 0)
        folds = n_validation_folds(self.val_classes_fraction)
        if self.val_fold >= max(folds, 1):
            raise ConfigError(f"split.val_fold={self.val_fold} but split.val_classes_fraction="
                              f"{self.val_classes_fraction} makes {folds} folds (0..{folds - 1})" if folds else
                              f"split.val_fold={self.val_fold} needs validation classes (split.val_classes_fraction > 0)")
        if self.val_fraction + self.test_fraction >= 1.0:
            raise ConfigError(
                f"split.val_fraction + split.test_fraction must be < 1; got {self.val_fraction + self.test_fraction}"
            )
        _int("split.seed", self.seed, 0)


def n_validation_classes(n_seen: int, fraction: float) -> int:
    """Validation classes held out of ``n_seen`` seen classes: ``max(2, round(fraction · n_seen))``, 0 if off.

    Args:
        n_seen: the number of seen (non-test) classes.
        fraction: ``split.val_classes_fraction``; 0 switches validation classes off.

    Returns:
        The number of validation classes (0 when ``fraction`` is 0; otherwise at least 2, even
        when that leaves too few training classes, which the split then reports).
    """
    return max(2, int(round(fraction * n_seen))) if fraction else 0


def n_validation_folds(fraction: float) -> int:
    """Class folds for cross-validation at ``fraction`` validation classes: ``max(2, round(1 / fraction))``, 0 if off.

    Args:
        fraction: ``split.val_classes_fraction``, in [0, 1).

    Returns:
        The number of class folds (0 when ``fraction`` is 0).
    """
    return max(2, int(round(1.0 / fraction))) if fraction else 0


@dataclass
class ModelConfig:
    """Backbone and embedding head (see :func:`itemrec.models.build_embedding_model`).

    ``weights``: ``"imagenet"`` (Keras download), ``"local"`` (the backbone's file in
    ``ITEMREC_WEIGHTS``: MobileNetV2, or InceptionV3 to ``mixed8`` for
    ``inception_v3_mixed8``), ``null`` (random init) or a file path.
    ``head``: ``"mlp"`` (dropout → Dense ``hidden`` ReLU → Dense ``embedding_dim``;
    ``embedding_dim`` ``null``: the hidden ReLU layer is the embedding, the "fc" classifier
    trunk of notebook 03), ``"bn_dropout"`` (BatchNorm → dropout → Dense ``hidden`` ReLU →
    BatchNorm → dropout [→ Dense ``embedding_dim``]),
    ``"linear"`` (one linear map to ``embedding_dim``, ``null`` = the feature size,
    starting at ``head_init``: identity, pca or random), ``"residual"`` (features +
    a ``hidden``-wide bottleneck whose output starts at zero), or ``"none"``: the
    L2-normalised pooled backbone features are the embedding (the untrained
    baseline; needs ``train.frozen_epochs = 0``). ``decay_to_init``: L2-SP weight
    decay of the linear/residual head towards its starting weights
    (:mod:`itemrec.models.adapters`). ``cnn_filters``: the blocks of ``small_cnn``
    (``null``: 32, 64, 128, 256).

    Attributes:
        backbone: a name of :data:`itemrec.models.backbones.BACKBONES` (default ``"mobilenet_v2"``).
        weights: ``"imagenet"``, ``"local"`` (default), ``None`` or a weights file path.
        input_size: the square input side in pixels, at least the backbone's minimum.
        resize_mode: ``"pad"`` (letterbox, default) or ``"crop"`` (centre crop) to ``input_size``.
        embedding_dim: the embedding size D (>= 1), or ``None`` where the head allows it (see above).
        hidden: the hidden width of the ``mlp``/``bn_dropout``/``residual`` heads, or 0/``None``.
        dropout: dropout rate in [0, 1).
        activation: ``"linear"``, ``"prelu"`` or ``"sigmoid"`` on the embedding layer's output
            (``mlp`` head).
        l2_normalize: end with an L2 normalisation (unit-norm embeddings).
        head: ``"mlp"`` (default), ``"bn_dropout"``, ``"linear"``, ``"residual"`` or ``"none"``.
        head_init: the linear head's start: ``"identity"``, ``"pca"`` or ``"random"``.
        decay_to_init: L2-SP weight (>= 0) pulling a linear/residual head towards its start.
        cnn_filters: ``small_cnn``'s filters per block, or ``None`` for the default.
    """

    backbone: str = "mobilenet_v2"
    weights: str | None = "local"
    input_size: int = 96
    resize_mode: str = "pad"
    embedding_dim: int = 128
    hidden: int | None = 256
    dropout: float = 0.2
    activation: str = "linear"
    l2_normalize: bool = True
    head: str = "mlp"
    head_init: str = "identity"
    decay_to_init: float = 0.0
    cnn_filters: list[int] | None = None

    def validate(self) -> None:
        """Check every field against the backbone and head; normalises ``cnn_filters`` to a list of ints.

        Raises:
            ConfigError: an unknown head, head_init, backbone, resize mode or activation; the
                identity ``linear`` head with an ``embedding_dim``; ``weights`` empty, a keyword
                the backbone has no weights for (``small_cnn``; ``"local"`` for a backbone
                without a local file); ``input_size`` below the backbone's minimum; a missing
                ``embedding_dim``; ``dropout`` outside [0, 1); ``cnn_filters`` for another
                backbone, empty or not positive integers.
        """
        from itemrec.models.backbones import BACKBONES

        _choice("model.head", self.head, HEADS)
        _choice("model.head_init", self.head_init, HEAD_INITS)
        _positive("model.decay_to_init", self.decay_to_init, allow_zero=True)
        if self.head == "linear" and self.head_init == "identity" and self.embedding_dim is not None:
            raise ConfigError(
                "model.head='linear' with head_init='identity' keeps the feature size: set model.embedding_dim "
                "to null (or use head_init='pca' for a smaller embedding)"
            )

        _choice("model.backbone", self.backbone, tuple(BACKBONES))
        if self.weights is not None and self.weights not in WEIGHTS_KEYWORDS and not str(self.weights).strip():
            raise ConfigError("model.weights must be 'imagenet', 'local', null or a weights file path")
        if self.weights in WEIGHTS_KEYWORDS and self.backbone == "small_cnn":
            raise ConfigError(f"model.weights={self.weights!r} is not available for small_cnn; use null or a file")
        from itemrec.models.backbones import LOCAL_WEIGHTS

        if self.weights == "local" and self.backbone not in LOCAL_WEIGHTS:
            raise ConfigError(
                f"model.weights='local' exists for the backbones {sorted(LOCAL_WEIGHTS)}; got {self.backbone!r}"
            )
        min_size = BACKBONES[self.backbone].min_size
        _int("model.input_size", self.input_size, min_size)
        _choice("model.resize_mode", self.resize_mode, RESIZE_MODES)
        no_embedding_layer = self.head in ("linear", "residual", "none", "bn_dropout") or bool(self.hidden)
        _int("model.embedding_dim", self.embedding_dim, 1, allow_none=no_embedding_layer)
        _int("model.hidden", self.hidden, 0, allow_none=True)
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise ConfigError(f"model.dropout must lie in [0, 1); got {self.dropout!r}")
        _choice("model.activation", self.activation, ACTIVATIONS)
        if self.cnn_filters is not None:
            if self.backbone != "small_cnn":
                raise ConfigError(f"model.cnn_filters sets the small CNN's blocks; model.backbone is {self.backbone!r}")
            if not isinstance(self.cnn_filters, (list, tuple)) or not self.cnn_filters:
                raise ConfigError(f"model.cnn_filters must be a non-empty list of filter counts; got {self.cnn_filters!r}")
            for f in self.cnn_filters:
                _int("model.cnn_filters[]", f, 1)
            self.cnn_filters = [int(f) for f in self.cnn_filters]


@dataclass
class TrainConfig:
    """Optimisation in two phases.

    Phase 1 (``frozen_epochs``, learning rate ``frozen_lr``): backbone frozen; the
    head trains on cached backbone features (:class:`itemrec.training.FeatureCache`)
    unless ``augment`` is on or ``use_feature_cache`` is off. Phase 2
    (``finetune_epochs``, ``finetune_lr``): the top ``finetune_layers`` weighted
    backbone layers train too (``"all"`` for every one). Batches are either
    ``batch_size`` random images or, with ``p`` and ``k``, P classes × K images.
    ``finetune_augment`` (default: same as ``augment``) switches augmentation for
    phase 2 alone, so phase 1 can stay on cached features while fine-tuning
    sees augmented images.

    ``init_from_catalogue``: the loss's class vectors (the anchors of a cosine
    head, the proxies of ``ProxyAnchorLoss``) start at the training classes'
    catalogue images, embedded by the untrained model (the classifier weights as
    class anchors). ``finetune_lam``: the centre loss's λ in the fine-tuning phase
    (``null``: the loss's ``lam`` throughout), as in Wen et al.'s grocery
    reproduction (0.001 frozen, then 0.01 or 0.001).
    ``catalogue_copies``: each training class's catalogue image joins its
    training images this many times (cross-domain training: the test matches
    shelf photos against catalogue images), 0 for none.
    ``monitor``: ``"auto"`` is ``valcls_score`` (mean of CMC@1 against the
    validation classes' catalogue images and their MAP@R; see
    :class:`itemrec.training.selection.OpenSetSelection`) when the split has
    validation classes, else ``val_loss``. The weights before training are a
    candidate too, so a phase that does not help keeps its starting point.
    ``feature_monitor``: draw the deep features of the validation photos of
    ``monitor_classes`` fixed training classes (drawn once with the run's seed)
    after every epoch, on one PCA projection fitted at the first frame and kept
    for both phases, with a legend and the loss (and λ) in the title.
    ``"last"`` keeps each phase's final weights (no checkpoint choice, no early
    stopping): the refit of a cross-validated recipe on every seen class for the
    number of epochs the class folds chose
    (:func:`itemrec.experiments.open_set.retrain_on_seen_classes`).

    Attributes:
        optimizer: ``"adam"`` (default), ``"adamw"``, ``"sgd"`` (momentum 0.9) or ``"rmsprop"``.
        frozen_epochs: epochs of phase 1 (backbone frozen), >= 0.
        frozen_lr: phase 1 learning rate, > 0.
        finetune_epochs: epochs of phase 2 (fine-tuning), >= 0.
        finetune_lr: phase 2 learning rate, > 0.
        finetune_layers: how many of the backbone's top weighted layers train in phase 2
            (>= 1), or ``"all"``.
        batch_size: images per step without P×K sampling, >= 2.
        p: classes per batch (>= 2) with P×K sampling; set together with ``k``.
        k: images per class per batch (>= 1) with P×K sampling.
        steps_per_epoch: steps per epoch (>= 1), or ``None``: ``N // batch_size`` (one pass, the
            last partial batch dropped), or the P×K sampler's own count.
        augment: augment the training images (then phase 1 does not use cached features).
        finetune_augment: phase 2's augmentation, or ``None`` for ``augment``.
        use_feature_cache: train phase 1 on cached backbone features when possible.
        early_stopping_patience: epochs without improvement of ``monitor`` before a phase
            stops, or ``None`` for no early stopping.
        monitor: the metric that picks each phase's checkpoint: ``"auto"``, ``"val_loss"``,
            ``"valcls_score"``, another logged metric, or ``"last"``.
        catalogue_copies: copies (>= 0) of each training class's catalogue image added to its
            training images.
        init_from_catalogue: start the loss's class vectors at the catalogue embeddings.
        finetune_lam: the centre loss's λ in phase 2 (>= 0), or ``None``.
        tensorboard: write TensorBoard logs.
        feature_monitor: draw the validation features after every epoch (see above).
        monitor_classes: how many training classes the feature monitor draws, >= 1.
    """

    optimizer: str = "adam"
    frozen_epochs: int = 5
    frozen_lr: float = 1e-3
    finetune_epochs: int = 0
    finetune_lr: float = 1e-5
    finetune_layers: int | str = 20
    batch_size: int = 32
    p: int | None = None
    k: int | None = None
    steps_per_epoch: int | None = None
    augment: bool = False
    finetune_augment: bool | None = None
    use_feature_cache: bool = True
    early_stopping_patience: int | None = None
    monitor: str = "auto"
    catalogue_copies: int = 0
    init_from_catalogue: bool = False
    finetune_lam: float | None = None
    tensorboard: bool = True
    feature_monitor: bool = False
    monitor_classes: int = 10

    def validate(self) -> None:
        """Check every field and their combinations.

        Raises:
            ConfigError: an unknown optimizer; an epoch count, learning rate, batch size,
                P, K or count out of range; ``p`` without ``k`` (or the reverse);
                ``finetune_augment`` or ``init_from_catalogue`` not a boolean; an empty
                ``monitor``; ``monitor="last"`` with early stopping.
        """
        _choice("train.optimizer", self.optimizer, OPTIMIZERS)
        _int("train.frozen_epochs", self.frozen_epochs, 0)
        _int("train.finetune_epochs", self.finetune_epochs, 0)
        _positive("train.frozen_lr", self.frozen_lr)
        _positive("train.finetune_lr", self.finetune_lr)
        if self.finetune_layers != "all":
            _int("train.finetune_layers", self.finetune_layers, 1)
        _int("train.batch_size", self.batch_size, 2)
        if (self.p is None) != (self.k is None):
            raise ConfigError("train.p and train.k go together (P classes x K images); give both or neither")
        _int("train.p", self.p, 2, allow_none=True)
        _int("train.k", self.k, 1, allow_none=True)
        _int("train.steps_per_epoch", self.steps_per_epoch, 1, allow_none=True)
        if self.finetune_augment is not None and not isinstance(self.finetune_augment, bool):
            raise ConfigError(f"train.finetune_augment must be true, false or null; got {self.finetune_augment!r}")
        _int("train.early_stopping_patience", self.early_stopping_patience, 1, allow_none=True)
        _int("train.catalogue_copies", self.catalogue_copies, 0)
        if not isinstance(self.init_from_catalogue, bool):
            raise ConfigError(f"train.init_from_catalogue must be true or false; got {self.init_from_catalogue!r}")
        _positive("train.finetune_lam", self.finetune_lam, allow_zero=True, allow_none=True)
        _int("train.monitor_classes", self.monitor_classes, 1)
        if not isinstance(self.monitor, str) or not self.monitor:
            raise ConfigError(f"train.monitor must be a metric name such as 'val_loss'; got {self.monitor!r}")
        if self.monitor == "last" and self.early_stopping_patience:
            raise ConfigError("train.monitor 'last' trains a fixed number of epochs; set train.early_stopping_patience "
                              "to null")

    @property
    def phase2_augment(self) -> bool:
        """Whether the fine-tuning phase augments its images."""
        return self.augment if self.finetune_augment is None else self.finetune_augment

    @property
    def global_batch(self) -> int:
        """Images per step: ``p * k`` with P×K sampling, else ``batch_size``."""
        return int(self.p * self.k) if self.p else int(self.batch_size)


@dataclass
class EvalConfig:
    """Evaluation settings used by :func:`itemrec.training.evaluate_run`.

    ``hubness_k``/``hubness_beta``: open-set CMC is also reported with the hubness
    correction of :func:`itemrec.evaluation.hubness_offsets` (background: the
    training images, seen classes only); ``hubness_k = 0`` switches it off.

    Attributes:
        metric: the distance of every evaluation: ``"cosine"`` (default) or ``"l2"``, a name or a
            serialised distance (``{"class_name": "L2Distance", "config": {}}``), kept as its name.
        cmc_draws: random query draws averaged for the CMC curve (against one representative
            image per class), >= 1.
        max_rank: the last rank of the CMC curve, >= 1.
        far_targets: the false-accept rates (each in (0, 1)) at which verification
            thresholds are fitted on the calibration split and VAL is reported.
        dir_far: the FAR (in (0, 1)) of the open-set rejection threshold (DIR at FAR).
        hubness_k: neighbours of the hubness correction, >= 0 (0: off).
        hubness_beta: the correction's weight, >= 0.
    """

    metric: str = "cosine"
    cmc_draws: int = 100
    max_rank: int = 10
    far_targets: tuple[float, ...] = (1e-2, 1e-3)
    dir_far: float = 0.05
    hubness_k: int = 10
    hubness_beta: float = 0.5

    def validate(self) -> None:
        """Check every field; normalises ``metric`` to its name and ``far_targets`` to a tuple of floats.

        Raises:
            ConfigError: an unknown metric, a count out of range, a FAR outside (0, 1) or a
                negative ``hubness_beta``.
            ValueError: a ``far_targets`` entry that is not a number (from ``float``).
        """
        from itemrec.evaluation._chunked import check_metric  # exactly what evaluation computes, before training

        try:  # a name or a serialised distance, kept as its name
            self.metric = check_metric(self.metric)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"eval.metric: {exc}") from exc
        _int("eval.cmc_draws", self.cmc_draws, 1)
        _int("eval.max_rank", self.max_rank, 1)
        self.far_targets = tuple(float(f) for f in self.far_targets)
        for f in self.far_targets:
            _fraction("eval.far_targets[]", f)
        _fraction("eval.dir_far", self.dir_far)
        _int("eval.hubness_k", self.hubness_k, 0)
        _positive("eval.hubness_beta", self.hubness_beta, allow_zero=True)


# top-level keys that do not change the trained weights (see ExperimentConfig.training_dict)
TRAINING_IRRELEVANT = ("name", "output_dir", "eval", "feature_cache_dir")

SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "split": SplitConfig,
    "model": ModelConfig,
    "loss": LossConfig,
    "train": TrainConfig,
    "eval": EvalConfig,
}


@dataclass
class ExperimentConfig:
    """A whole experiment; see the module docstring. The run folder is ``output_dir/name``.

    Validated on construction (:meth:`validate`).

    Attributes:
        name: the run's name (no slashes), its folder under ``output_dir``.
        output_dir: the folder of the runs (default ``"models"``).
        seed: the run's seed (model initialisation, sampling), >= 0.
        strategy: ``"default"``, ``"mirrored"`` or ``"multiworker"``
            (:func:`itemrec.training.get_strategy`).
        feature_cache_dir: the feature-cache folder, or ``None`` for ``output_dir/.feature_cache``.
        imports: modules imported before the loss is built (where user-defined losses,
            miners or heads register themselves).
        data: the :class:`DataConfig`.
        split: the :class:`SplitConfig`.
        model: the :class:`ModelConfig`.
        loss: the :class:`~itemrec.training.loss_config.LossConfig`.
        train: the :class:`TrainConfig`.
        eval: the :class:`EvalConfig`.

    Raises:
        ConfigError: any invalid field (see :meth:`validate`).
    """

    name: str = "run"
    output_dir: str = "models"
    seed: int = 0
    strategy: str = "default"
    feature_cache_dir: str | None = None
    imports: list[str] = field(default_factory=list)
    data: DataConfig = field(default_factory=DataConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ConfigError` on the first invalid field.

        Checks the top-level fields, imports :attr:`imports`, validates every section (the
        loss by building it for two classes) and then their combinations.

        Raises:
            ConfigError: a bad name, output_dir, seed, strategy or imports list; a module of
                ``imports`` that cannot be imported; a section of the wrong type or with an
                invalid field; ``init_from_catalogue`` with a loss without class vectors;
                ``finetune_lam`` with a loss without ``lam``; ``head="none"`` with frozen
                epochs, or no epochs at all with a head; a synthetic open split with fewer
                training classes than ``train.p``.
        """
        if not isinstance(self.name, str) or not self.name or any(c in self.name for c in "/\\") or self.name in (".", ".."):
            raise ConfigError(f"name must be a non-empty run name without slashes; got {self.name!r}")
        if not isinstance(self.output_dir, str) or not self.output_dir:
            raise ConfigError(f"output_dir must be a folder path; got {self.output_dir!r}")
        _int("seed", self.seed, 0)
        _choice("strategy", self.strategy, STRATEGIES)
        if not isinstance(self.imports, list) or not all(isinstance(m, str) and m for m in self.imports):
            raise ConfigError(f"imports must be a list of module names; got {self.imports!r}")
        from itemrec.serialization import import_modules

        try:
            import_modules(self.imports)
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
        for key, cls in SECTIONS.items():
            section = getattr(self, key)
            if not isinstance(section, cls):
                raise ConfigError(f"{key} must be a {cls.__name__}; got {type(section).__name__}")
            section.validate()
        # the loss's own checks ran in its section; build it once more only for what train asks of it
        probe = self.loss.build(2) if self.train.init_from_catalogue or self.train.finetune_lam is not None else None
        if self.train.init_from_catalogue and not probe.has_class_vectors:
            raise ConfigError(f"train.init_from_catalogue needs a loss with class vectors (a cosine head, "
                              f"ProxyAnchorLoss); {self.loss.class_name} ({self.loss.name}) has none")
        if self.train.finetune_lam is not None and not hasattr(probe, "lam"):
            raise ConfigError(f"train.finetune_lam is the centre loss's λ in fine-tuning; the loss is "
                              f"{self.loss.class_name}")
        if self.model.head == "none" and self.train.frozen_epochs:
            raise ConfigError(
                "model.head='none' has nothing to train in the frozen phase; set train.frozen_epochs=0"
            )
        if self.model.head != "none" and self.train.frozen_epochs + self.train.finetune_epochs == 0:
            raise ConfigError(
                "train.frozen_epochs + train.finetune_epochs must be >= 1 (or model.head='none' for "
                "the untrained baseline)"
            )
        if self.train.p is not None and self.split.kind == "open" and self.data.name == "synthetic":
            n_seen = self.data.synthetic_products - round(self.split.unseen_fraction * self.data.synthetic_products)
            n_train = n_seen - n_validation_classes(n_seen, self.split.val_classes_fraction)
            if self.train.p > n_train:
                raise ConfigError(
                    f"train.p={self.train.p} exceeds the {n_train} synthetic training classes ({n_seen} seen, "
                    f"less the validation classes); lower train.p or split.val_classes_fraction"
                )

    # -- paths ----------------------------------------------------------------
    @property
    def run_dir(self) -> Path:
        """``output_dir/name``."""
        return Path(self.output_dir).expanduser() / self.name

    @property
    def cache_dir(self) -> Path:
        """Feature-cache folder (default ``output_dir/.feature_cache``, shared by runs)."""
        if self.feature_cache_dir:
            return Path(self.feature_cache_dir).expanduser()
        return Path(self.output_dir).expanduser() / ".feature_cache"

    # -- identity of what is trained -----------------------------------------
    def training_dict(self) -> dict[str, Any]:
        """The config without what does not change the trained weights.

        Left out: ``name`` and ``output_dir`` (where the run lives), ``eval``
        (evaluation settings re-evaluate a saved run), ``feature_cache_dir`` and
        ``train.tensorboard`` (logging only).

        Returns:
            :meth:`to_dict` without those keys.
        """
        out = self.to_dict()
        for key in TRAINING_IRRELEVANT:
            out.pop(key)
        out["train"].pop("tensorboard")
        return out

    def training_key(self, length: int = 8) -> str:
        """A short hash (hex, ``length`` characters) of :meth:`training_dict`: equal for configs that train the same model.

        Args:
            length: how many hex characters of the SHA-256 to keep (at most 64).

        Returns:
            The hex prefix of the SHA-256 of the canonical (sorted-key) JSON of :meth:`training_dict`.
        """
        import hashlib

        text = json.dumps(self.training_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[: int(length)]

    # -- (de)serialisation ----------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The config as plain JSON values (sections as dicts, the loss as ``{"class_name", "config"}``).

        Returns:
            A dict that :meth:`from_dict` reads back.
        """
        out = dataclasses.asdict(self)
        out["eval"]["far_targets"] = list(out["eval"]["far_targets"])
        return out

    def to_json(self, path: str | os.PathLike | None = None) -> str:
        """The JSON text; written to ``path`` when given.

        Args:
            path: the file to write (its folder is created), or ``None`` to only return the text.

        Returns:
            The indented JSON of :meth:`to_dict`, ending with a newline.
        """
        text = json.dumps(self.to_dict(), indent=2) + "\n"
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(text)
        return text

    @classmethod
    def from_dict(cls, raw: dict[str, Any], where: str = "config") -> "ExperimentConfig":
        """Build from a plain dict; unknown keys raise :class:`ConfigError` naming them.

        An older flat ``loss`` section is converted to ``{"class_name", "config"}`` (with a
        ``FutureWarning``); missing keys take their defaults.

        Args:
            raw: the config as :meth:`to_dict` writes it (or a subset of it).
            where: how the messages name the source (a file path, ``"config"``).

        Returns:
            The validated :class:`ExperimentConfig`.

        Raises:
            ConfigError: ``raw`` not a dict; unknown keys at the top level or in a section; a
                section that is not an object; ``eval.far_targets`` not a list; any invalid value.
        """
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: expected a JSON object at the top level; got {type(raw).__name__}")
        top = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - top)
        if unknown:
            raise ConfigError(f"{where}: unknown keys {unknown}; known keys are {sorted(top)}")
        raw = _upgrade(raw, where)
        kwargs: dict[str, Any] = {}
        for key, value in raw.items():
            if key in SECTIONS:
                section_cls = SECTIONS[key]
                if not isinstance(value, dict):
                    raise ConfigError(f"{where}: {key!r} must be an object; got {value!r}")
                names = {f.name for f in dataclasses.fields(section_cls)}
                bad = sorted(set(value) - names)
                if bad:
                    raise ConfigError(f"{where}: unknown keys {bad} in {key!r}; known keys are {sorted(names)}")
                section_values = dict(value)
                if key == "eval" and "far_targets" in section_values:
                    ft = section_values["far_targets"]
                    if not isinstance(ft, (list, tuple)):
                        raise ConfigError(f"{where}: eval.far_targets must be a list of numbers; got {ft!r}")
                    section_values["far_targets"] = tuple(ft)
                kwargs[key] = section_cls(**section_values)
            else:
                kwargs[key] = value
        return cls(**kwargs)

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> "ExperimentConfig":
        """Load a JSON config file (errors name the file).

        Args:
            path: the ``.json`` file.

        Returns:
            The validated :class:`ExperimentConfig`.

        Raises:
            FileNotFoundError: ``path`` is not a file.
            ConfigError: invalid JSON, or what :meth:`from_dict` rejects.
        """

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} does not exist")
        try:
            raw = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}: not valid JSON ({exc})") from exc
        return cls.from_dict(raw, where=str(path))

    def with_overrides(self, overrides: list[str] | dict[str, Any]) -> "ExperimentConfig":
        """A copy with dotted ``key=value`` overrides (values parsed as JSON, else kept as strings).

        ``["train.batch_size=16", "loss.class_name=TripletLoss", "loss.config.margin=0.3",
        "model.weights=null"]``. Setting ``loss.class_name`` to another class starts its
        ``loss.config`` empty (the class's defaults) unless ``loss.config`` is set too.

        Args:
            overrides: ``key=value`` strings, or a dict of dotted keys to values.

        Returns:
            A new, validated :class:`ExperimentConfig`.

        Raises:
            ConfigError: an unknown key (an older ``loss.<name>`` key names its new place),
                or an invalid result.
        """
        raw = self.to_dict()
        items = list(overrides.items() if isinstance(overrides, dict) else [_split_override(o) for o in overrides])
        keys = {k for k, _ in items}
        for key, value in items:
            _check_loss_key(key)
            if key == "loss.class_name" and value != raw["loss"]["class_name"] and not any(
                    k == "loss.config" or k.startswith("loss.config.") for k in keys):
                raw["loss"]["config"] = {}
        for key, value in items:
            parts = key.split(".")
            target = raw
            for i, part in enumerate(parts[:-1]):
                if part not in target or not isinstance(target[part], dict):
                    raise ConfigError(f"override {key!r}: {'.'.join(parts[: i + 1])!r} is not a config section")
                target = target[part]
            free = parts[:2] == ["loss", "config"] and len(parts) > 2  # constructor arguments: any name
            if parts[-1] not in target and not free:
                raise ConfigError(f"override {key!r}: unknown key; known keys here are {sorted(target)}")
            target[parts[-1]] = value
        return type(self).from_dict(raw, where="config with overrides")


def _upgrade(raw: dict[str, Any], where: str) -> dict[str, Any]:
    """``raw`` with an older flat ``loss`` section converted (a ``FutureWarning`` says so)."""
    loss = raw.get("loss")
    if not is_old_format(loss):
        return raw
    seed = raw.get("seed", 0)
    new, moved = convert_old_loss(loss, seed if isinstance(seed, int) else 0, where=where)
    raw = dict(raw)
    raw["loss"] = new
    train = dict(raw.get("train") or {})
    for key, value in moved.items():
        train.setdefault(key, value)
    raw["train"] = train
    return raw


def _check_loss_key(key: str) -> None:
    parts = key.split(".")
    if len(parts) == 2 and parts[0] == "loss" and parts[1] in OLD_KEYS:
        where = {"name": "loss.class_name (e.g. TripletLoss, with loss.config.<argument>)",
                 "init_from_catalogue": "train.init_from_catalogue", "finetune_lam": "train.finetune_lam"}
        raise ConfigError(f"override {key!r}: the loss is now {{'class_name', 'config'}}; use "
                          f"{where.get(parts[1], f'loss.config.<argument> (the constructor argument of the loss)')}")


def _split_override(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key=value (e.g. train.batch_size=16)")
    key, value = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override {text!r} has an empty key")
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        parsed = value
    return key, parsed
