"""Custom layers of the embedding models (``keras.ops`` only, serialisable)."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from itemrec.distances import l2_normalize
from itemrec.models.backbones import backbone_spec, preprocess_input_for


@keras.saving.register_keras_serializable(package="itemrec")
class L2Normalize(keras.layers.Layer):
    """``x / max(‖x‖₂, √ε)`` along the last axis, computed in float32.

    Input (..., D) of any float dtype; output (..., D) float32 with unit L2 norm per row (an
    all-zero row stays zero). The layer's dtype defaults to float32 so mixed-precision models
    still normalise (and compare embeddings) in full precision.

    Args:
        epsilon: ε, the floor under the squared norm (default 1e-12), which keeps an all-zero
            row finite.
        **kwargs: ``keras.layers.Layer`` arguments (``name``, ``dtype``, ...).
    """

    def __init__(self, epsilon: float = 1e-12, **kwargs: Any) -> None:
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)

    def call(self, x: Any) -> Any:
        return l2_normalize(ops.cast(x, "float32"), axis=-1, epsilon=self.epsilon)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return input_shape

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(epsilon=self.epsilon)
        return config


@keras.saving.register_keras_serializable(package="itemrec")
class BackbonePreprocess(keras.layers.Layer):
    """The backbone's own ``preprocess_input`` as a layer: raw pixels (0..255) in, backbone input out.

    Putting it inside the model means a saved model takes raw pixels. Input and output
    (B, S, S, 3); the output range is the backbone's (e.g. [-1, 1] for MobileNetV2 and
    InceptionV3, caffe-style mean-subtracted BGR for VGG16/ResNet50, x / 255 for the small CNN).

    Args:
        backbone: a key of :data:`itemrec.models.backbones.BACKBONES`.
        **kwargs: ``keras.layers.Layer`` arguments (``name``, ``dtype``, ...).

    Raises:
        ValueError: ``backbone`` is not a known backbone (from
            :func:`itemrec.models.backbones.backbone_spec`).
    """

    def __init__(self, backbone: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        backbone_spec(backbone)
        self.backbone = backbone
        self._fn = preprocess_input_for(backbone)

    def call(self, x: Any) -> Any:
        return self._fn(ops.cast(x, self.compute_dtype))

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return input_shape

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(backbone=self.backbone)
        return config
