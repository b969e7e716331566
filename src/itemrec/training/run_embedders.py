"""How :func:`itemrec.training.evaluate_run` embeds images: the run's model, its pooled features,
and a faster path through the feature cache for runs whose backbone never trained.

A run whose backbone stayed frozen (``train.finetune_epochs == 0``) computes
``head(GAP(backbone(preprocess(image))))``, and the middle part is exactly the
function :class:`~itemrec.training.features.FeatureCache` stores (same reader,
same weights file, same input size and resize mode). :class:`CachedHeadEmbedder`
therefore embeds through the cache and the saved head, which gives the saved
model's embeddings (a test checks this against the image path) without running
the backbone again for every run that shares the backbone.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from itemrec.distances import l2_normalize


class CachedHeadEmbedder:
    """``embed_paths`` like :class:`itemrec.embedder.ImageEmbedder`, through cached backbone features.

    Args:
        embedding_model: the run's saved embedding model (raw pixels → embedding), whose
            layers ``gap`` and ``head`` exist (:func:`itemrec.models.attach_head`).
        config: the run's :class:`~itemrec.training.ExperimentConfig`.
        features_only: embed to the pooled backbone features (L2-normalised) instead.
    """

    def __init__(self, embedding_model: Any, config: Any, features_only: bool = False) -> None:
        from itemrec.training.builders import resolve_weights
        from itemrec.training.features import FeatureCache

        self.config = config
        self.weights = resolve_weights(config.model.weights, config.model.backbone)
        if self.weights is None or self.weights == "imagenet":
            raise ValueError("the cached path needs a weights file (its hash is the cache key); use the image path")
        gap = embedding_model.get_layer("gap").output
        self.extractor = keras.Model(embedding_model.inputs, gap, name="features")
        self.head = None if features_only else embedding_model.get_layer("head")
        self.cache = FeatureCache(config.cache_dir)

    def embed_paths(self, paths: Sequence[str | os.PathLike], progress: bool = False
                    ) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]]]:
        """``(embeddings (N, D) float32, kept indices, skipped [(path, reason)])``."""
        m = self.config.model
        got = self.cache.get_or_compute(self.extractor, [str(p) for p in paths], m.backbone, self.weights,
                                        m.input_size, m.resize_mode, progress=progress)
        x = got.features
        if self.head is None:  # as the model's L2Normalize layer
            x = keras.ops.convert_to_numpy(l2_normalize(x))
        else:
            x = np.asarray(self.head.predict(x, batch_size=512, verbose=0), np.float32)
        return x.astype(np.float32), got.keep, list(got.skipped)


def run_embedders(run_dir: Any, config: Any) -> tuple[Any, Any]:
    """``(embedder of the run's embedding, embedder of its backbone's pooled features)``.

    Frozen-backbone runs with a weights file use :class:`CachedHeadEmbedder`;
    others the saved model through :class:`itemrec.embedder.ImageEmbedder`
    (the pooled features cut at its ``gap`` layer).
    """
    import keras

    from itemrec.embedder import ImageEmbedder

    embedder = ImageEmbedder.load(run_dir / "embedding.keras")
    model = embedder.model
    frozen = config.train.finetune_epochs == 0 and config.model.weights not in (None, "imagenet")
    if frozen and config.model.backbone != "small_cnn":
        return CachedHeadEmbedder(model, config), CachedHeadEmbedder(model, config, features_only=True)
    try:
        gap = model.get_layer("gap").output
    except ValueError:
        return embedder, None
    features = ImageEmbedder(keras.Model(model.inputs, gap), embedder.image_size, embedder.resize_mode)
    return embedder, features
