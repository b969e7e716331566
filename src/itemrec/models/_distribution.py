"""Loss scaling under ``tf.distribute`` (the rule Keras's own compiled losses follow).

Kept here rather than imported from Keras's private modules: under a multi-replica
TensorFlow strategy each replica's loss is divided by the replica count, since the
replicas' gradients are summed; the identity with one replica and on the JAX and
PyTorch backends.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops


def scale_loss_for_distribution(value: Any) -> Any:
    """``value / replicas`` under a TensorFlow ``tf.distribute`` strategy with several replicas, else ``value``.

    Args:
        value: a scalar loss tensor of the current backend.

    Returns:
        The scaled scalar, same dtype.
    """
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        if replicas > 1:
            return ops.multiply(value, ops.cast(1.0 / replicas, value.dtype))
    return value
