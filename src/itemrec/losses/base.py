"""The common interface of itemrec's losses."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops


class MetricLoss(keras.layers.Layer):
    """A loss layer: ``compute(embeddings, labels, training) -> (loss, diagnostics)``.

    ``diagnostics`` is a dict of scalar tensors whose keys are
    :attr:`metric_names`; :class:`itemrec.models.MetricLearningModel` logs them
    through ``keras.metrics.Mean`` trackers. Calling the layer returns the loss
    alone. Losses compute in float32 (their default dtype policy), so they stay
    finite when the embedding model runs under ``mixed_float16``.

    Args:
        **kwargs: ``keras.layers.Layer`` arguments (``name``, ...); ``dtype`` defaults to
            ``"float32"``.
    """


    metric_names: tuple[str, ...] = ()
    #: whether the loss holds one learnable vector per class that :meth:`set_class_vectors` can start
    has_class_vectors: bool = False

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)

    def compute(self, embeddings: Any, labels: Any = None, training: bool = False) -> tuple[Any, dict]:
        """Loss and diagnostics for a batch of ``embeddings`` (B, D) and integer ``labels`` (B,).

        Subclasses implement this; the base class has no loss of its own.

        Args:
            embeddings: (B, D) embeddings (any float dtype; losses cast to float32).
            labels: (B,) or (B, 1) integer class labels; losses that need them raise
                ``ValueError`` when ``None``.
            training: ``True`` during a training step (lets a loss update state such as
                :class:`~itemrec.losses.CenterLoss`'s centres, or apply a head's margin).

        Returns:
            ``(loss, diagnostics)``: a float32 scalar tensor and a dict of scalar tensors keyed
            by :attr:`metric_names`.

        Raises:
            TypeError: always, on the base class (a subclass that does not override it).
        """
        raise TypeError(f"{type(self).__name__} must implement compute()")

    def call(self, embeddings: Any, labels: Any = None, training: bool = False) -> Any:
        return self.compute(embeddings, labels, training=bool(training))[0]

    def set_class_vectors(self, values: Any) -> None:
        """Start the per-class vectors (anchors, proxies) at ``values`` (n_classes, D).

        Args:
            values: (n_classes, D) class vectors.

        Raises:
            TypeError: this loss has no class vectors.
        """
        raise TypeError(f"{type(self).__name__} has no class vectors")

    def build_for(self, embedding_dim: int) -> None:
        """Create the weights for embeddings of size ``embedding_dim`` (no-op when built).

        Args:
            embedding_dim: D, the size of the embeddings this loss will see; the layer is
                built for input shape ``(None, D)``.
        """
        if not self.built:
            self.build((None, int(embedding_dim)))

    def ensure_built(self, embeddings: Any) -> None:
        """Build from the embeddings' last dimension when called before :meth:`build_for`.

        Args:
            embeddings: a (B, D) batch (only its static last dimension is read); nothing is
                done when the layer is already built.
        """
        if not self.built:
            self.build_for(embeddings.shape[-1])

    def compute_output_shape(self, *args: Any, **kwargs: Any) -> tuple:
        return ()


def check_range(name: str, value: Any, low: float = 0.0, high: float | None = None, open_low: bool = False) -> float:
    """``float(value)`` if it lies in ``[low, high]`` (``(low, high]`` with ``open_low``), else ``ValueError``.

    Args:
        name: the argument's name, for the message.
        value: the number.
        low: the lower bound.
        high: the upper bound, or ``None``.
        open_low: exclude ``low`` itself.

    Returns:
        The value as a float.

    Raises:
        ValueError: not a number, or out of range (the message names the argument and the bound).
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number; got {value!r}")
    value = float(value)
    if value < low or (open_low and value == low):
        raise ValueError(f"{name} must be {'>' if open_low else '>='} {low:g}; got {value:g}")
    if high is not None and value > high:
        raise ValueError(f"{name} must be <= {high:g}; got {value:g}")
    return value


def flat_labels(labels: Any, what: str = "labels") -> Any:
    """Integer labels as a flat (B,) int32 tensor; ``ValueError`` when missing.

    Args:
        labels: (B,) or (B, 1) class labels (any numeric dtype; cast to int32), or ``None``.
        what: how to name the labels in the error message.

    Returns:
        The labels as a (B,) int32 tensor.

    Raises:
        ValueError: ``labels`` is ``None`` (the loss was called without labels).
    """
    if labels is None:
        raise ValueError(f"this loss needs integer {what} (B,); got None")
    return ops.reshape(ops.cast(labels, "int32"), (-1,))


def safe_mean(total: Any, count: Any) -> Any:
    """``total / count``, or 0 when ``count`` is 0.

    Args:
        total: a float tensor (the sum of per-item terms); 0 whenever ``count`` is 0.
        count: a float tensor of non-negative counts; divided as ``max(count, 1)``.

    Returns:
        ``total / max(count, 1)``, so an empty selection averages to ``total`` (0) instead of NaN.
    """
    return total / ops.maximum(count, 1.0)


def class_vectors(values: Any, n_classes: int, what: str = "class vectors") -> Any:
    """``values`` as a float32 (n_classes, D) tensor; ``ValueError`` naming ``what`` for any other shape.

    Args:
        values: array-like class vectors, row ``c`` for class ``c``.
        n_classes: the number of rows expected.
        what: how to name the vectors in the error message (``"anchors"``, ``"proxies"``).

    Returns:
        ``values`` as a float32 (n_classes, D) tensor.

    Raises:
        ValueError: ``values`` is not 2-D or does not have ``n_classes`` rows.
    """

    values = ops.convert_to_tensor(values, dtype="float32")
    shape = tuple(values.shape)
    if len(shape) != 2 or shape[0] != n_classes:
        raise ValueError(f"{what} must have shape (n_classes={n_classes}, D); got {shape}")
    return values
