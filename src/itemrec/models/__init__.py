"""Embedding models: backbones, heads, classifiers and the metric-learning trainer.

Names load on first use (PEP 562), so ``from itemrec.models.backbones import
BACKBONES`` or reading this package's ``__all__`` does not import Keras until a
model-building name is touched.
"""

from __future__ import annotations

import importlib

from itemrec._lazy import lazy_attributes

_WHERE = {
    "BACKBONES": "backbones",
    "BackboneSpec": "backbones",
    "backbone_spec": "backbones",
    "build_backbone": "backbones",
    "preprocess_input_for": "backbones",
    "set_trainable": "backbones",
    "small_cnn": "backbones",
    "attach_head": "embedding",
    "build_classifier": "embedding",
    "build_embedding_model": "embedding",
    "build_feature_extractor": "embedding",
    "build_head": "embedding",
    "LinearAdapter": "adapters",
    "ResidualAdapter": "adapters",
    "BackbonePreprocess": "layers",
    "L2Normalize": "layers",
    "MetricLearningModel": "metric_learning",
}

__all__ = list(_WHERE) + ["register_custom_objects"]


def register_custom_objects() -> None:
    """Import every module that registers itemrec's Keras objects (layers, losses, the trainer).

    So ``keras.saving.load_model`` can rebuild a saved itemrec model: the registrations
    (``@keras.saving.register_keras_serializable(package="itemrec")``) run on import.
    """
    for module in ("itemrec.models.layers", "itemrec.models.adapters", "itemrec.models.metric_learning",
                   "itemrec.losses"):
        importlib.import_module(module)


__getattr__, __dir__ = lazy_attributes(__name__, _WHERE, globals())
