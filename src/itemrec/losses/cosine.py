"""Cosine-softmax heads: normalised class anchors, optionally with an angular margin.

With features ``x`` and class anchors ``W_j`` both L2-normalised,
``cos θ_j = x̂ · Ŵ_j`` and the logits are ``s · cos θ_j`` (the cosine softmax of
the packed-scenes method, scale ``s``; NormFace, Wang et al. 2017). The margin
variants change the target class's logit only, when labels are given:

* :class:`CosFace` (Wang et al. 2018, large-margin cosine loss): ``s (cos θ_y − m)``;
* :class:`ArcFace` (Deng et al. 2019, additive angular margin):
  ``s cos(θ_y + m)``, computed without ``arccos`` by the cos-addition identity
  ``cos θ cos m − sin θ sin m`` with ``sin θ = √max(1 − cos²θ, ε)``. Where
  ``θ + m`` would pass π (``cos θ ≤ cos(π − m)``) the logit becomes
  ``cos θ − m sin m`` so it stays monotone in θ (the InsightFace rule);
  ``easy_margin=True`` applies the margin only where ``cos θ > 0``.

Without labels (inference) every head returns the plain ``s · cos θ``.
"""

from __future__ import annotations

import math
from typing import Any

import keras
from keras import ops

from itemrec.distances import l2_normalize
from itemrec.losses.base import check_range, class_vectors


@keras.saving.register_keras_serializable(package="itemrec")
class CosineSoftmax(keras.layers.Layer):
    """Logits ``s · cos θ`` against ``n_classes`` learnable, normalised anchors (no margin).

    The anchors are a trainable (D, n_classes) weight (Glorot-uniform start), normalised per
    class at every call; :meth:`set_anchors` can start them at class vectors. Calling the
    layer as ``head(embeddings, labels=None)`` returns (B, n_classes) float32 logits; with
    labels, the target class's cosine goes through :meth:`target_logit` (the margin of the
    subclasses).

    Args:
        n_classes: number of classes (>= 1).
        scale: the logit scale ``s`` (> 0); 16 by default here, 30 for the margin heads.
        margin: the margin ``m`` (>= 0), stored for the subclasses; this head ignores it.
        **kwargs: ``keras.layers.Layer`` arguments; ``dtype`` defaults to ``"float32"``.

    Raises:
        ValueError: ``n_classes`` < 1, ``scale`` <= 0 or ``margin`` < 0 (or not numbers).
    """

    def __init__(self, n_classes: int, scale: float = 16.0, margin: float = 0.0, **kwargs: Any) -> None:
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if int(n_classes) < 1:
            raise ValueError(f"n_classes must be >= 1; got {n_classes}")
        self.n_classes = int(n_classes)
        self.scale = check_range("scale", scale, open_low=True)
        self.margin = check_range("margin", margin)

    def build(self, input_shape: tuple) -> None:
        dim = int(input_shape[-1])
        self.anchors = self.add_weight(
            name="anchors", shape=(dim, self.n_classes), initializer="glorot_uniform", trainable=True
        )

    def set_anchors(self, values: Any) -> None:
        """Assign the class anchors from (n_classes, D) class vectors, e.g. L2-normalised
        catalogue-image embeddings (stored transposed, as the (D, n_classes) weight).

        Builds the layer for that D first if needed.

        Args:
            values: (n_classes, D) array-like; row ``c`` becomes class ``c``'s anchor (its
                norm does not matter: anchors are normalised at every call).

        Raises:
            ValueError: ``values`` is not (n_classes, D), or D differs from the built layer's.
        """
        values = class_vectors(values, self.n_classes, "anchors")
        shape = tuple(values.shape)
        if not self.built:
            self.build((None, shape[1]))
        if (shape[1], shape[0]) != tuple(self.anchors.shape):
            raise ValueError(f"anchors must have shape {tuple(self.anchors.shape)[::-1]} (n_classes, D); got {shape}")
        self.anchors.assign(ops.cast(ops.transpose(values), self.anchors.dtype))

    def cosine(self, embeddings: Any) -> Any:
        """(B, n_classes) ``cos θ`` in [−1, 1].

        Args:
            embeddings: (B, D) embeddings; L2-normalised here, as are the anchors.

        Returns:
            (B, n_classes) float32 cosines between each embedding and each class anchor,
            clipped to [−1, 1].
        """
        x = l2_normalize(ops.cast(embeddings, "float32"), axis=-1)
        w = l2_normalize(ops.cast(self.anchors, "float32"), axis=0)
        return ops.clip(ops.matmul(x, w), -1.0, 1.0)

    def target_logit(self, cos: Any) -> Any:
        """The margin-adjusted cosine for the target class (identity here).

        Args:
            cos: (B, n_classes) cosines from :meth:`cosine`.

        Returns:
            A tensor of the same shape; the caller uses it at the target class only.
            This head returns ``cos`` unchanged.
        """
        return cos

    def call(self, embeddings: Any, labels: Any = None) -> Any:
        cos = self.cosine(embeddings)
        if labels is None:
            return self.scale * cos
        target = ops.one_hot(ops.reshape(ops.cast(labels, "int32"), (-1,)), self.n_classes, dtype="float32")
        return self.scale * (target * self.target_logit(cos) + (1.0 - target) * cos)

    def compute_output_shape(self, embeddings_shape: tuple, labels_shape: tuple | None = None) -> tuple:
        return (embeddings_shape[0], self.n_classes)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(n_classes=self.n_classes, scale=self.scale, margin=self.margin)
        return config


@keras.saving.register_keras_serializable(package="itemrec")
class CosFace(CosineSoftmax):
    """Target logit ``s (cos θ_y − m)`` (Wang et al. 2018).

    CosFace: large margin cosine loss for deep face recognition (Wang et al., CVPR 2018).

    Args:
        n_classes: number of classes (>= 1).
        scale: the logit scale ``s`` (> 0).
        margin: the additive cosine margin ``m`` (>= 0).
        **kwargs: ``keras.layers.Layer`` arguments.

    Raises:
        ValueError: ``n_classes`` < 1, ``scale`` <= 0 or ``margin`` < 0.
    """

    def __init__(self, n_classes: int, scale: float = 30.0, margin: float = 0.35, **kwargs: Any) -> None:
        super().__init__(n_classes, scale=scale, margin=margin, **kwargs)

    def target_logit(self, cos: Any) -> Any:
        """``cos θ − m``.

        Args:
            cos: (B, n_classes) cosines.

        Returns:
            ``cos − margin``, same shape (used at the target class only).
        """
        return cos - self.margin


@keras.saving.register_keras_serializable(package="itemrec")
class ArcFace(CosineSoftmax):
    """Target logit ``s cos(θ_y + m)`` (Deng et al. 2019); see the module docstring.

    ArcFace: additive angular margin loss for deep face recognition (Deng et al., CVPR 2019).

    Args:
        n_classes: number of classes (>= 1).
        scale: the logit scale ``s`` (> 0).
        margin: the angular margin ``m`` in radians (>= 0).
        easy_margin: apply the margin only where ``cos θ > 0`` (elsewhere the target
            logit is the plain ``cos θ``), instead of the InsightFace fallback
            ``cos θ − m sin m`` past ``θ + m = π``.
        **kwargs: ``keras.layers.Layer`` arguments.

    Raises:
        ValueError: ``n_classes`` < 1, ``scale`` <= 0 or ``margin`` < 0.
    """

    def __init__(
        self, n_classes: int, scale: float = 30.0, margin: float = 0.5, easy_margin: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(n_classes, scale=scale, margin=margin, **kwargs)
        self.easy_margin = bool(easy_margin)

    def target_logit(self, cos: Any) -> Any:
        """``cos(θ + m)`` by the cos-addition identity, with the fallback described above.

        Args:
            cos: (B, n_classes) cosines.

        Returns:
            Same shape: ``cos θ cos m − sin θ sin m`` where ``cos θ > cos(π − m)`` (or, with
            ``easy_margin``, where ``cos θ > 0``), else ``cos θ − m sin m`` (or ``cos θ``).
        """
        m = self.margin

        sin = ops.sqrt(ops.maximum(1.0 - ops.square(cos), 1e-12))
        phi = cos * math.cos(m) - sin * math.sin(m)
        if self.easy_margin:
            return ops.where(ops.greater(cos, 0.0), phi, cos)
        return ops.where(ops.greater(cos, math.cos(math.pi - m)), phi, cos - math.sin(math.pi - m) * m)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(easy_margin=self.easy_margin)
        return config
