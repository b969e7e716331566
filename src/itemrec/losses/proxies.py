"""Proxy-anchor loss (Kim, Kim, Cho & Kwak, "Proxy Anchor Loss for Deep Metric Learning", CVPR 2020).

One learnable proxy ``p`` (D,) per class. With ``s(x, p)`` the cosine similarity
of an embedding and a proxy, ``P`` all proxies, ``P⁺`` the proxies of the classes
present in the batch, ``X_p⁺`` the embeddings of class ``p`` and ``X_p⁻`` the
others (eq. 4)::

    L = 1/|P⁺| Σ_{p ∈ P⁺} log(1 + Σ_{x ∈ X_p⁺} e^{−α (s(x, p) − δ)})
      + 1/|P|  Σ_{p ∈ P}  log(1 + Σ_{x ∈ X_p⁻} e^{ α (s(x, p) + δ)})

(margin ``δ``, scale ``α``). This is pytorch-metric-learning's
``ProxyAnchorLoss(num_classes, embedding_size, margin, alpha)`` with no miner.

The proxies (n_classes, D) are initialised like pytorch-metric-learning's:
``kaiming_normal_(mode="fan_out")``, an untruncated normal with standard
deviation ``√(2 / n_classes)`` (torch's fan-out of a (n_classes, D) matrix is
``n_classes``; in Keras terms it is the ``fan_in`` of that shape). Only their
direction matters to the loss. :meth:`ProxyAnchorLoss.set_proxies` replaces
them, e.g. by catalogue-image embeddings of each class.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from itemrec.distances import l2_normalize
from itemrec.losses.base import MetricLoss, check_range, class_vectors, flat_labels
from itemrec.losses.pairs import log1p_sum_exp


@keras.saving.register_keras_serializable(package="itemrec")
class ProxyAnchorLoss(MetricLoss):
    """Proxy-anchor loss (Kim et al. 2020, eq. 4) with trainable proxies; see the module docstring.

    Args:
        n_classes: number of proxies, one per class; labels must lie in
            ``[0, n_classes)`` (not checked in the graph).
        margin: ``δ`` (>= 0), in cosine units.
        alpha: ``α`` (> 0).
        **kwargs: ``keras.layers.Layer`` arguments.

    ``compute(embeddings (B, D), labels (B,))``. Diagnostics: ``pos_term`` and
    ``neg_term`` (the two sums of eq. 4) and ``proxy_accuracy`` (the fraction of
    the batch whose most similar proxy is its own class's).

    Raises:
        ValueError: ``n_classes`` < 1, ``alpha`` not > 0 or ``margin`` < 0; labels missing
            (in :meth:`compute`).
    """

    metric_names = ("pos_term", "neg_term", "proxy_accuracy")

    def __init__(self, n_classes: int, margin: float = 0.1, alpha: float = 32.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if int(n_classes) < 1:
            raise ValueError(f"n_classes must be >= 1; got {n_classes}")
        if float(alpha) <= 0:
            raise ValueError(f"alpha must be > 0; got {alpha}")
        self.n_classes = int(n_classes)
        self.margin = check_range("margin", margin)
        self.alpha = float(alpha)

    def build(self, input_shape: tuple) -> None:
        dim = int(input_shape[-1])
        self.proxies = self.add_weight(
            name="proxies",
            shape=(self.n_classes, dim),
            initializer=keras.initializers.VarianceScaling(2.0, mode="fan_in", distribution="untruncated_normal"),
            trainable=True,
        )

    has_class_vectors = True

    def set_class_vectors(self, values: Any) -> None:
        """Set the proxies (:meth:`set_proxies`).

        Args:
            values: (n_classes, D) class vectors; row ``c`` is class ``c``.
        """
        self.set_proxies(values)

    def set_proxies(self, values: Any) -> None:
        """Assign the proxies from an array (n_classes, D), building the layer for that D if needed.

        Args:
            values: (n_classes, D) array-like; row ``c`` becomes class ``c``'s proxy (only its
                direction matters).

        Raises:
            ValueError: ``values`` is not (n_classes, D), or D differs from the built layer's.
        """
        values = class_vectors(values, self.n_classes, "proxies")
        shape = tuple(values.shape)
        self.build_for(shape[1])
        if shape != tuple(self.proxies.shape):
            raise ValueError(f"proxies must have shape {tuple(self.proxies.shape)}; got {shape}")
        self.proxies.assign(values)

    def cosine(self, embeddings: Any) -> Any:
        """(B, n_classes) cosine similarity of the embeddings to the proxies.

        Args:
            embeddings: (B, D) embeddings (the layer must be built).

        Returns:
            (B, n_classes) float32 cosines ``s(x, p)`` in [−1, 1] (both sides L2-normalised).
        """
        x = l2_normalize(ops.cast(embeddings, "float32"))
        p = l2_normalize(ops.cast(self.proxies, "float32"))
        return ops.matmul(x, ops.transpose(p))

    def compute(self, embeddings: Any, labels: Any = None, training: bool = False) -> tuple[Any, dict]:
        """Eq. 4: the positive term over the proxies present in the batch + the negative term over all.

        Args:
            embeddings: (B, D) embeddings; builds the proxies for D if needed.
            labels: (B,) integer labels in ``[0, n_classes)``.
            training: unused (the loss is the same in both modes).

        Returns:
            ``(loss, {"pos_term", "neg_term", "proxy_accuracy"})``, float32 scalars.

        Raises:
            ValueError: ``labels`` is ``None``.
        """
        labels = flat_labels(labels)
        self.ensure_built(embeddings)
        cos = self.cosine(embeddings)

        pos = ops.one_hot(labels, self.n_classes, dtype="float32")  # [x, p]
        neg = 1.0 - pos
        with_pos = ops.sum(ops.cast(ops.greater(ops.sum(pos, axis=0), 0.0), "float32"))
        pos_term = ops.sum(log1p_sum_exp(-self.alpha * (cos - self.margin), pos, axis=0)) / ops.maximum(with_pos, 1.0)
        neg_term = ops.sum(log1p_sum_exp(self.alpha * (cos + self.margin), neg, axis=0)) / float(self.n_classes)
        hits = ops.equal(ops.cast(ops.argmax(cos, axis=1), "int32"), labels)
        metrics = {
            "pos_term": pos_term,
            "neg_term": neg_term,
            "proxy_accuracy": ops.mean(ops.cast(hits, "float32")),
        }
        return pos_term + neg_term, metrics

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(n_classes=self.n_classes, margin=self.margin, alpha=self.alpha)
        return config
