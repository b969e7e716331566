"""Train an embedding model with any itemrec loss through ``model.fit``.

:class:`MetricLearningModel` wraps an embedding model and a
:class:`itemrec.losses.MetricLoss`. It overrides only ``compute_loss`` (the
hook Keras 3 calls from its own ``train_step``/``test_step`` on every backend,
statelessly under JAX), so the loss's weights (classifier heads) train with the
model, its non-trainable state (centre-loss centres) updates in training, and
its diagnostics (``d_ap``, ``d_an``, ``active_fraction``, ``ce``, ...) are
logged by ``keras.metrics.Mean`` trackers next to ``loss``, weighted by batch
size, so an epoch's value is a mean over samples, like ``loss``. Under a
multi-replica ``tf.distribute`` strategy the loss is scaled per replica as
Keras's compiled losses are, so in-batch mining runs per replica and the step
follows the mean of the replicas' losses.

``model.embedding_model`` is the inference model (raw pixels → embedding),
separate from the training graph.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from itemrec.losses.base import MetricLoss
from itemrec.models._distribution import scale_loss_for_distribution


@keras.saving.register_keras_serializable(package="itemrec")
class MetricLearningModel(keras.Model):
    """``model.fit(x, y)`` trains ``embedding_model`` with ``metric_loss``.

    ``x`` are images (B, S, S, 3) with labels ``y`` (B,), or for a
    :class:`itemrec.losses.TripletLoss` on explicit triples, (B, 3, S, S, 3)
    stacks of (anchor, positive, negative) with ``y=None``. Calling the model gives the
    embeddings (B, E), or (B, 3, E) for stacked triples.

    Args:
        embedding_model: the inference model (raw pixels → (B, E) embeddings); its output
            width E builds the loss's own weights (classifier heads, centres).
        metric_loss: the :class:`itemrec.losses.MetricLoss` to minimise; its
            ``metric_names`` diagnostics are logged next to ``loss``.
        **kwargs: ``keras.Model`` arguments (``name``, ...).

    Raises:
        TypeError: ``metric_loss`` is not an itemrec ``MetricLoss``.
    """

    def __init__(self, embedding_model: keras.Model, metric_loss: MetricLoss, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not isinstance(metric_loss, MetricLoss):
            raise TypeError(f"metric_loss must be an itemrec MetricLoss; got {type(metric_loss).__name__}")
        self.embedding_model = embedding_model
        self.metric_loss = metric_loss
        self.metric_loss.build_for(embedding_model.output_shape[-1])
        self.diagnostics = [keras.metrics.Mean(name=n) for n in metric_loss.metric_names]
        self.built = True  # both parts hold all their weights already

    def call(self, inputs: Any, training: bool = False) -> Any:
        shape = ops.shape(inputs)
        if len(inputs.shape) == len(self.embedding_model.input_shape) + 1:  # stacked triples
            flat = ops.reshape(inputs, (-1,) + tuple(inputs.shape[2:]))
            emb = self.embedding_model(flat, training=training)
            return ops.reshape(emb, (shape[0], shape[1], -1))
        return self.embedding_model(inputs, training=training)

    def compute_loss(
        self, x: Any = None, y: Any = None, y_pred: Any = None, sample_weight: Any = None, training: bool = True
    ) -> Any:
        """The metric loss of a batch (plus any layer losses), scaled per replica; updates the diagnostics.

        Keras's hook, called from its own ``train_step``/``test_step``. The diagnostics of
        ``metric_loss.compute`` are batch means, each fed to its ``keras.metrics.Mean`` weighted
        by the batch size, so an epoch's logged value is a mean over samples.

        Args:
            x: the inputs (unused: the loss sees the embeddings).
            y: labels (B,) or ``None`` for stacked triples.
            y_pred: the embeddings (B, E) or (B, 3, E).
            sample_weight: must be ``None``.
            training: whether the loss may update its state (centre-loss centres).

        Returns:
            The scalar float32 loss, divided by the replica count under a multi-replica
            ``tf.distribute`` strategy (the rule Keras's compiled losses follow).

        Raises:
            ValueError: ``sample_weight`` (or ``class_weight``) was given: metric losses mix the
                samples of a batch, so per-sample weights have no meaning; balance classes in the
                sampler instead.
        """
        if sample_weight is not None:
            raise ValueError(
                "MetricLearningModel does not support sample_weight/class_weight: metric losses mix "
                "samples within a batch; balance classes in the sampler instead"
            )
        loss, diagnostics = self.metric_loss.compute(y_pred, y, training=training)
        # each diagnostic is a batch mean: weight it by the batch size, as Keras weights ``loss``, so an epoch's
        # value is the mean over samples (a last, partial batch must not count as much as a full one)
        batch = ops.cast(ops.shape(y_pred)[0], "float32")
        for tracker in self.diagnostics:
            tracker.update_state(diagnostics[tracker.name], sample_weight=batch)
        for extra in self.losses:
            loss = loss + ops.cast(ops.sum(extra), "float32")
        # Keras's convention for compute_loss: under a multi-replica tf.distribute strategy each replica's
        # loss is divided by the replica count, since the replicas' gradients are summed (its train step
        # undoes this for the logged loss); identity with one replica and on the JAX and PyTorch backends
        return scale_loss_for_distribution(loss)

    def get_config(self) -> dict:
        return {
            "name": self.name,
            "embedding_model": keras.saving.serialize_keras_object(self.embedding_model),
            "metric_loss": keras.saving.serialize_keras_object(self.metric_loss),
        }

    @classmethod
    def from_config(cls, config: dict, custom_objects: Any = None) -> "MetricLearningModel":
        config = dict(config)
        embedding_model = keras.saving.deserialize_keras_object(config.pop("embedding_model"), custom_objects)
        metric_loss = keras.saving.deserialize_keras_object(config.pop("metric_loss"), custom_objects)
        return cls(embedding_model, metric_loss, **config)
