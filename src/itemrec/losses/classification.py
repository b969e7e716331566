"""Classification losses on an embedding: softmax cross-entropy and centre loss.

:class:`SoftmaxLoss` is the baseline: a classifier head on the embedding
(``Dense(n_classes)``, or a cosine head from :mod:`itemrec.losses.cosine`) and
sparse categorical cross-entropy ``CE = −mean_i log softmax(z_i)_{y_i}``.

:class:`CenterLoss` (Wen, Zhang, Li & Qiao, ECCV 2016) adds a pull of each
embedding towards its class centre:

* ``L_c = ½ Σ_i ‖x_i − c_{y_i}‖²`` (``reduction="sum"``) or that sum divided by
  the batch size (``"mean"``), with the centres before this step's update;
* total ``L = CE + λ·L_c``;
* the centres (n_classes, D) are non-trainable and, in training only, move by
  ``Δc_j = Σ_{i: y_i = j} (c_j − x_i) / (1 + n_j)``, ``c_j ← c_j − α·Δc_j``
  (``n_j`` = samples of class ``j`` in the batch; classes absent from the batch
  do not move).
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from itemrec.losses.base import MetricLoss, check_range, flat_labels
from itemrec.losses.cosine import CosineSoftmax


def _make_head(n_classes: int | None, head: Any) -> keras.layers.Layer:
    if head is None:
        if n_classes is None:
            raise ValueError("give n_classes or a head layer")
        return keras.layers.Dense(int(n_classes), dtype="float32", name="classifier")
    if isinstance(head, dict):
        if "module" in head:  # keras.saving.serialize_keras_object's form (older saved models)
            return keras.saving.deserialize_keras_object(head)
        from itemrec.serialization import deserialize

        defaults = {} if n_classes is None else {"n_classes": int(n_classes)}
        return deserialize(head, "classifier head", **defaults)
    if not isinstance(head, keras.layers.Layer):
        raise TypeError(f"head must be a Keras layer; got {type(head).__name__}")
    return head


def _head_classes(head: keras.layers.Layer) -> int:
    n = getattr(head, "n_classes", None) or getattr(head, "units", None)
    if n is None:
        raise ValueError(f"cannot tell the number of classes of head {head.name!r}")
    return int(n)


@keras.saving.register_keras_serializable(package="itemrec")
class SoftmaxLoss(MetricLoss):
    """Sparse categorical cross-entropy on ``head(embeddings)`` (the baseline).

    Args:
        n_classes: number of training classes (needed unless ``head`` is a layer).
        head: ``None`` for ``Dense(n_classes)``; or a cosine head (``CosineSoftmax``,
            ``ArcFace``, ``CosFace``, whose margin uses the labels during training) as a
            layer or as its ``{"class_name", "config"}`` dict, to which ``n_classes``
            is added when the dict lacks it.

    Diagnostics: ``ce`` and ``accuracy``.

    Raises:
        ValueError: neither ``n_classes`` nor a head; a head whose class count cannot be read.
        TypeError: ``head`` is not a layer or a dict.
    """

    metric_names: tuple[str, ...] = ("ce", "accuracy")

    def __init__(self, n_classes: int | None = None, head: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.head = _make_head(n_classes, head)
        self.n_classes = _head_classes(self.head)

    def build(self, input_shape: tuple) -> None:
        if not self.head.built:
            self.head.build(input_shape)

    @property
    def has_class_vectors(self) -> bool:
        """``True`` with a cosine head, whose anchors :meth:`set_class_vectors` can set."""
        return isinstance(self.head, CosineSoftmax)

    def set_class_vectors(self, values: Any) -> None:
        """Set the cosine head's class anchors (:meth:`CosineSoftmax.set_anchors`).

        Args:
            values: (n_classes, D) class vectors; row ``c`` is class ``c``.

        Raises:
            TypeError: the head is a plain ``Dense`` classifier (no class vectors).
            ValueError: ``values`` of the wrong shape.
        """
        if not self.has_class_vectors:
            raise TypeError(f"{type(self).__name__} with a {type(self.head).__name__} head has no class vectors")
        self.head.set_anchors(values)

    def logits(self, embeddings: Any, labels: Any = None) -> Any:
        """(B, n_classes) float32 logits; cosine heads apply their margin when ``labels`` are given.

        Args:
            embeddings: (B, D) embeddings (cast to float32).
            labels: (B,) integer labels, or ``None``. Only a cosine head uses them (its
                margin on the target class); a ``Dense`` head ignores them.

        Returns:
            (B, n_classes) float32 logits: ``Dense`` outputs, or ``s · cos θ`` (with the
            target class's margin when ``labels`` are given) for a cosine head.
        """
        emb = ops.cast(embeddings, "float32")
        if isinstance(self.head, CosineSoftmax):
            return ops.cast(self.head(emb, labels), "float32")
        return ops.cast(self.head(emb), "float32")

    def _ce(self, embeddings: Any, labels: Any) -> tuple[Any, dict]:
        logits = self.logits(embeddings, labels)
        ce = ops.mean(ops.sparse_categorical_crossentropy(labels, logits, from_logits=True))
        acc = ops.mean(ops.cast(ops.equal(ops.cast(ops.argmax(logits, axis=-1), "int32"), labels), "float32"))
        return ce, {"ce": ce, "accuracy": acc}

    def compute(self, embeddings: Any, labels: Any = None, training: bool = False) -> tuple[Any, dict]:
        """Mean sparse categorical cross-entropy of the head's logits (builds the head if needed).

        Args:
            embeddings: (B, D) embeddings.
            labels: (B,) integer labels in ``[0, n_classes)``.
            training: unused (a cosine head applies its margin whenever labels are given).

        Returns:
            ``(ce, {"ce": ce, "accuracy": top-1 accuracy in [0, 1]})``.

        Raises:
            ValueError: ``labels`` is ``None``.
        """
        labels = flat_labels(labels)
        self.ensure_built(embeddings)
        return self._ce(embeddings, labels)

    def get_config(self) -> dict:
        config = super().get_config()
        plain = isinstance(self.head, keras.layers.Dense) and self.head.name == "classifier"
        if plain:
            head = None  # the default Dense(n_classes)
        else:
            from itemrec.serialization import serialize

            head = serialize(self.head)
            for key in ("n_classes", "name", "trainable", "dtype"):  # the loss's n_classes; the layer's defaults
                head["config"].pop(key, None)
        config.update(n_classes=self.n_classes, head=head)
        return config


@keras.saving.register_keras_serializable(package="itemrec")
class CenterLoss(SoftmaxLoss):
    """Softmax cross-entropy + ``λ`` × centre loss (Wen et al. 2016); see the module docstring.

    Args:
        n_classes: number of training classes.
        alpha: centre learning rate ``α`` in (0, 1].
        lam: weight ``λ`` of the centre term.
        reduction: ``"mean"`` (sum / batch size) or ``"sum"``.
        head: optional classifier head (default ``Dense(n_classes)``).

    Diagnostics: ``ce``, ``center`` (``L_c``) and ``accuracy``.

    Raises:
        ValueError: ``reduction`` is neither ``"mean"`` nor ``"sum"``; ``alpha`` outside
            [0, 1] or ``lam`` < 0 (or not numbers); and :class:`SoftmaxLoss`'s errors.
        TypeError: ``head`` is not a layer or a dict.
    """

    metric_names = ("ce", "center", "accuracy")

    def __init__(
        self,
        n_classes: int | None = None,
        alpha: float = 0.5,
        lam: float = 0.01,
        reduction: str = "mean",
        head: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(n_classes=n_classes, head=head, **kwargs)
        if reduction not in ("mean", "sum"):
            raise ValueError(f"CenterLoss reduction must be 'mean' or 'sum'; got {reduction!r}")
        self.alpha = check_range("alpha", alpha, 0.0, 1.0)
        self.lam = check_range("lam", lam)
        self.reduction = reduction

    def build(self, input_shape: tuple) -> None:
        super().build(input_shape)
        self.centers = self.add_weight(
            name="centers", shape=(self.n_classes, int(input_shape[-1])), initializer="zeros", trainable=False
        )

    def center_term(self, embeddings: Any, labels: Any) -> Any:
        """``L_c`` against the current centres.

        Args:
            embeddings: (B, D) embeddings (cast to float32).
            labels: (B,) int32 labels in ``[0, n_classes)``.

        Returns:
            A float32 scalar: ``½ Σ_i ‖x_i − c_{y_i}‖²``, divided by B when ``reduction="mean"``.
        """
        emb = ops.cast(embeddings, "float32")
        diff = emb - ops.take(self.centers, labels, axis=0)
        per_sample = 0.5 * ops.sum(ops.square(diff), axis=-1)
        return ops.sum(per_sample) if self.reduction == "sum" else ops.mean(per_sample)

    def update_centers(self, embeddings: Any, labels: Any) -> None:
        """One centre step ``c_j ← c_j − α Σ_{y_i=j}(c_j − x_i)/(1 + n_j)``.

        Assigns the non-trainable ``centers`` weight in place; no gradient flows through the
        embeddings. Classes absent from the batch keep their centre.

        Args:
            embeddings: (B, D) embeddings (cast to float32).
            labels: (B,) int32 labels in ``[0, n_classes)``.
        """
        emb = ops.stop_gradient(ops.cast(embeddings, "float32"))
        centers = ops.convert_to_tensor(self.centers)
        diff = ops.take(centers, labels, axis=0) - emb
        sums = ops.segment_sum(diff, labels, num_segments=self.n_classes)
        counts = ops.segment_sum(ops.ones_like(labels, dtype="float32"), labels, num_segments=self.n_classes)
        delta = sums / (1.0 + ops.expand_dims(counts, 1))
        self.centers.assign(centers - self.alpha * delta)

    def compute(self, embeddings: Any, labels: Any = None, training: bool = False) -> tuple[Any, dict]:
        """``CE + λ·L_c``; in training, then moves the centres one step (:meth:`update_centers`).

        ``L_c`` is measured against the centres before this step's update.

        Args:
            embeddings: (B, D) embeddings.
            labels: (B,) integer labels in ``[0, n_classes)``.
            training: update the centres after computing the loss.

        Returns:
            ``(loss, {"ce", "center", "accuracy"})``, float32 scalars.

        Raises:
            ValueError: ``labels`` is ``None``.
        """
        labels = flat_labels(labels)
        self.ensure_built(embeddings)
        ce, metrics = self._ce(embeddings, labels)

        lc = self.center_term(embeddings, labels)
        if training:
            self.update_centers(embeddings, labels)
        metrics["center"] = lc
        return ce + self.lam * lc, metrics

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(alpha=self.alpha, lam=self.lam, reduction=self.reduction)
        return config
