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
import warnings
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from itemrec.distances import l2_normalize
from itemrec.embedded import EmbeddedSet


class CachedHeadEmbedder:
    """``embed`` like :class:`itemrec.embedder.ImageEmbedder`, through cached backbone features.

    Args:
        embedding_model: the run's saved embedding model (raw pixels → embedding), whose
            layers ``gap`` and ``head`` exist (:func:`itemrec.models.attach_head`).
        config: the run's :class:`~itemrec.training.ExperimentConfig`.
        features_only: embed to the pooled backbone features (L2-normalised) instead.

    Raises:
        ValueError: the run's backbone weights have no file (ImageNet or random weights),
            or the model has no ``gap``/``head`` layer.
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
        self.dim = int((gap if features_only else embedding_model.outputs[0]).shape[-1])
        self.cache = FeatureCache(config.cache_dir)

    def embed(self, paths: Sequence[str | os.PathLike], labels: Any = None, strict: bool = False,
              progress: bool = False) -> EmbeddedSet:
        """Embed image files through the feature cache; as :meth:`itemrec.embedder.ImageEmbedder.embed`.

        Args:
            paths: (M,) image files.
            labels: (M,) one label per file (array, list, or pandas rows), or None.
            strict: raise on the first unreadable file instead of skipping it.
            progress: show a tqdm bar while features are computed.

        Returns:
            An :class:`~itemrec.embedded.EmbeddedSet`: ``vectors`` (N, D) float32 of the N readable
            files (the head's output, or the L2-normalised pooled features), their labels and paths.

        Raises:
            BadImageError: (``strict`` only) a file cannot be read as an image.
            ValueError: ``labels`` does not hold one entry per path.
        """
        paths = [str(p) for p in paths]
        if labels is not None and len(labels) != len(paths):
            raise ValueError(f"{len(labels)} labels for {len(paths)} paths; give one label per path")
        emb, keep, skipped = self._embed(paths, progress)
        if strict and skipped:
            from itemrec.data.images import BadImageError

            raise BadImageError(*skipped[0])
        return EmbeddedSet.from_kept(emb, keep, paths, labels, skipped)

    def embed_paths(self, paths: Sequence[str | os.PathLike], progress: bool = False
                    ) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]]]:
        """Deprecated: use :meth:`embed`, whose result keeps labels and paths aligned.

        Args:
            paths: (M,) image files.
            progress: show a tqdm bar.

        Returns:
            ``(embeddings (N, D) float32, kept positions (N,) int64, skipped [(path, reason)])``.
        """
        warnings.warn("embed_paths is deprecated; use embed(paths, labels), which returns an EmbeddedSet",
                      DeprecationWarning, stacklevel=2)
        return self._embed([str(p) for p in paths], progress)

    def _embed(self, paths: list[str], progress: bool) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]]]:
        m = self.config.model
        got = self.cache.get_or_compute(self.extractor, paths, m.backbone, self.weights,
                                        m.input_size, m.resize_mode, progress=progress)
        x = got.features
        if not len(x):  # a Keras head's predict fails on an empty batch
            return np.zeros((0, self.dim), np.float32), np.asarray(got.keep, np.int64), list(got.skipped)
        if self.head is None:  # as the model's L2Normalize layer
            x = keras.ops.convert_to_numpy(l2_normalize(x))
        else:
            x = np.asarray(self.head.predict(x, batch_size=512, verbose=0), np.float32)
        return x.astype(np.float32), np.asarray(got.keep, np.int64), list(got.skipped)


def run_embedders(run_dir: Any, config: Any) -> tuple[Any, Any]:
    """``(embedder of the run's embedding, embedder of its backbone's pooled features)``.

    Frozen-backbone runs with a weights file use :class:`CachedHeadEmbedder`;
    others the saved model through :class:`itemrec.embedder.ImageEmbedder`
    (the pooled features cut at its ``gap`` layer).

    Args:
        run_dir: the run folder (a :class:`~pathlib.Path` holding ``embedding.keras``).
        config: the run's :class:`~itemrec.training.ExperimentConfig`.

    Returns:
        ``(embedder, features_embedder)``, both with ``embed(paths, labels)``; the second is None
        when the model has no ``gap`` layer.

    Raises:
        ModelLoadError: ``embedding.keras`` cannot be loaded.
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
