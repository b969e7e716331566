"""Embedding models: backbones, heads, classifiers and the metric-learning trainer.

Importing this package imports Keras (not ``itemrec`` itself).
"""

from itemrec.models.backbones import (
    BACKBONES,
    BackboneSpec,
    backbone_spec,
    build_backbone,
    preprocess_input_for,
    set_trainable,
    small_cnn,
)
from itemrec.models.embedding import (
    attach_head,
    build_classifier,
    build_embedding_model,
    build_feature_extractor,
    build_head,
)
from itemrec.models.layers import BackbonePreprocess, L2Normalize
from itemrec.models.metric_learning import MetricLearningModel

__all__ = [
    "BACKBONES",
    "BackboneSpec",
    "backbone_spec",
    "build_backbone",
    "preprocess_input_for",
    "set_trainable",
    "small_cnn",
    "attach_head",
    "build_classifier",
    "build_embedding_model",
    "build_feature_extractor",
    "build_head",
    "BackbonePreprocess",
    "L2Normalize",
    "MetricLearningModel",
]
