"""Embedding models: preprocessing → backbone → GAP → head → (L2-normalised) embedding.

The head is a separate model (:func:`build_head`) so it can be trained on cached
backbone features and then joined to the backbone with :func:`attach_head`:

``image (raw 0..255) → BackbonePreprocess → backbone(training=False) → GAP →
Dropout → Dense(hidden, ReLU) → Dense(embedding_dim) → activation → L2Normalize``
"""

from __future__ import annotations

from typing import Any

import keras

from itemrec.models.backbones import build_backbone, set_trainable
from itemrec.models.layers import BackbonePreprocess, L2Normalize

ACTIVATIONS = ("linear", "prelu", "sigmoid")
HEAD_KINDS = ("mlp", "linear", "residual", "bn_dropout")


def build_head(
    feature_dim: int,
    embedding_dim: int | None = 128,
    dropout: float = 0.2,
    hidden: int | None = 512,
    activation: str = "linear",
    l2_normalize: bool = True,
    name: str = "head",
    kind: str = "mlp",
    init: str = "identity",
    decay_to_init: float = 0.0,
) -> keras.Model:
    """The embedding head on pooled features (B, feature_dim) → (B, embedding_dim).

    ``kind="mlp"``: Dropout → Dense(``hidden``, ReLU) → Dense(``embedding_dim``) →
    ``activation`` → L2 normalisation; ``hidden=None`` or 0 skips the hidden layer and
    ``embedding_dim=None`` skips the embedding layer too: the (normalised) features
    themselves are the embedding, the untrained baseline.
    ``kind="linear"``: :class:`itemrec.models.adapters.LinearAdapter` to ``embedding_dim``
    (``None``: ``feature_dim``) starting at ``init``;
    ``kind="residual"``: :class:`itemrec.models.adapters.ResidualAdapter` with a
    ``hidden``-wide bottleneck (output ``feature_dim``). Both start at the frozen
    features and take ``decay_to_init`` (L2-SP, Li et al. 2018); ``activation`` is not used.
    ``kind="bn_dropout"``: BatchNorm → Dropout → Dense(``hidden``, ReLU) → BatchNorm →
    Dropout (Ioffe & Szegedy 2015; Srivastava et al. 2014), then the embedding layer
    unless ``embedding_dim`` is None: the classifier trunk of notebook 03, whose
    logits come from the loss's classifier.

    Args:
        feature_dim: D, the width of the pooled backbone features.
        embedding_dim: E, the embedding width (default 128); ``None`` as described above.
        dropout: dropout rate in [0, 1) at the head's input (default 0.2).
        hidden: width of the hidden ReLU layer (mlp; default 512) or of the residual
            bottleneck / bn_dropout hidden layer (``None`` or 0: 256 there).
        activation: ``"linear"``, ``"prelu"`` or ``"sigmoid"`` on the embedding layer's output.
        l2_normalize: end with :class:`itemrec.models.layers.L2Normalize` (unit-norm rows).
        name: the model's name.
        kind: ``"mlp"``, ``"linear"``, ``"residual"`` or ``"bn_dropout"``.
        init: the linear adapter's start: ``"identity"``, ``"pca"`` or ``"random"``.
        decay_to_init: the adapters' L2-SP strength λ ≥ 0.

    Returns:
        The head ``keras.Model`` (features in, embeddings out).

    Raises:
        ValueError: unknown ``kind``/``activation``, ``dropout`` outside [0, 1); from the
            adapters: an unknown ``init``, a negative ``decay_to_init``, identity ``init``
            with ``embedding_dim`` ≠ ``feature_dim``.
    """
    from itemrec.models.adapters import LinearAdapter, ResidualAdapter

    if kind not in HEAD_KINDS:
        raise ValueError(f"unknown head kind {kind!r}; choose one of {HEAD_KINDS}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown embedding activation {activation!r}; choose one of {ACTIVATIONS}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must lie in [0, 1); got {dropout}")
    inputs = keras.Input((int(feature_dim),), name="features")
    x = inputs
    if kind == "bn_dropout":
        x = keras.layers.BatchNormalization(name="bn_in")(x)
        x = keras.layers.Dropout(dropout, name="dropout_in")(x)
        x = keras.layers.Dense(int(hidden or 256), activation="relu", name="hidden")(x)
        x = keras.layers.BatchNormalization(name="bn_hidden")(x)
        if dropout:
            x = keras.layers.Dropout(dropout, name="dropout_hidden")(x)
        hidden = 0  # the hidden layer is done; what follows is the common embedding layer
    elif dropout:
        x = keras.layers.Dropout(dropout, name="dropout")(x)
    if kind in ("linear", "residual"):
        if kind == "linear":
            x = LinearAdapter(embedding_dim, init, decay_to_init, name="adapter")(x)
        else:
            x = ResidualAdapter(int(hidden or 256), decay_to_init, name="adapter")(x)
        if l2_normalize:
            x = L2Normalize(name="l2_normalize")(x)
        return keras.Model(inputs, x, name=name)
    if hidden:
        x = keras.layers.Dense(int(hidden), activation="relu", name="hidden")(x)
    if embedding_dim is None:
        if l2_normalize:
            x = L2Normalize(name="l2_normalize")(x)
        return keras.Model(inputs, x, name=name)
    x = keras.layers.Dense(int(embedding_dim), name="embedding")(x)
    if activation == "prelu":
        x = keras.layers.PReLU(name="embedding_prelu")(x)
    elif activation == "sigmoid":
        x = keras.layers.Activation("sigmoid", name="embedding_sigmoid")(x)
    if l2_normalize:
        x = L2Normalize(name="l2_normalize")(x)
    return keras.Model(inputs, x, name=name)


def attach_head(
    backbone_model: keras.Model,
    head: keras.Model | None = None,
    preprocess: str | None = None,
    bn_inference: bool = True,
    name: str = "embedding_model",
) -> keras.Model:
    """Join ``[preprocess →] backbone → GAP [→ head]`` into one model taking raw pixels.

    Args:
        backbone_model: the backbone; its input shape (S, S, 3) becomes the model's.
        head: a :func:`build_head` model, or ``None`` for the feature extractor whose
            (B, D) outputs heads are trained on.
        preprocess: a backbone name whose ``preprocess_input`` is put in front
            (:class:`itemrec.models.layers.BackbonePreprocess`), so the model takes raw
            0..255 pixels; ``None`` for none.
        bn_inference: call the backbone with ``training=False`` so its
            BatchNormalization layers use their moving statistics even during ``fit``
            (the Keras transfer-learning recipe); False trains BN statistics,
            as for a small CNN trained from scratch.
        name: the model's name.

    Returns:
        The joined ``keras.Model``: (B, S, S, 3) → (B, D) features or (B, E) embeddings.
        Global average pooling is added only when the backbone's output is 4-D.

    Raises:
        ValueError: the head's input width differs from the backbone's feature width.
    """
    shape = tuple(backbone_model.input_shape[1:])
    inputs = keras.Input(shape, name="image")
    x = BackbonePreprocess(preprocess, name="preprocess")(inputs) if preprocess else inputs
    x = backbone_model(x, training=False) if bn_inference else backbone_model(x)
    if len(x.shape) == 4:
        x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    if head is not None:
        if head.input_shape[-1] != x.shape[-1]:
            raise ValueError(
                f"head expects {head.input_shape[-1]} features but backbone {backbone_model.name!r} gives {x.shape[-1]}"
            )
        x = head(x)
    return keras.Model(inputs, x, name=name)


def build_feature_extractor(
    backbone: str = "mobilenet_v2", input_size: int = 160, weights: Any = "imagenet"
) -> keras.Model:
    """Raw pixels → preprocessing → frozen backbone → GAP features (for caching).

    Args:
        backbone: a key of :data:`itemrec.models.backbones.BACKBONES`.
        input_size: side S of the square input in pixels (default 160).
        weights: ``"imagenet"``, ``None`` or a local weights file path.

    Returns:
        A frozen ``keras.Model`` (B, S, S, 3) raw 0..255 pixels → (B, D) pooled features,
        named ``"<backbone>_features"``.

    Raises:
        ValueError: unknown backbone or ``input_size`` below its minimum.
        FileNotFoundError: ``weights`` names a missing file.
    """
    base = set_trainable(build_backbone(backbone, input_size, weights), "frozen")
    return attach_head(base, None, preprocess=backbone, bn_inference=True, name=f"{backbone}_features")


def build_embedding_model(
    backbone: str = "mobilenet_v2",
    input_size: int = 160,
    weights: Any = "imagenet",
    embedding_dim: int = 128,
    dropout: float = 0.2,
    hidden: int | None = 512,
    activation: str = "linear",
    l2_normalize: bool = True,
    trainable: str | int | None = None,
    bn_inference: bool | None = None,
) -> keras.Model:
    """The full embedding model taking raw (0..255) pixels of size ``input_size``.

    Backbone (:func:`itemrec.models.backbones.build_backbone`) → GAP → an ``mlp``
    :func:`build_head`.

    Args:
        backbone: a key of :data:`itemrec.models.backbones.BACKBONES`.
        input_size: side S of the square input in pixels (default 160).
        weights: ``"imagenet"``, ``None`` (random init) or a local weights file path.
        embedding_dim: E, the embedding width (default 128).
        dropout: dropout rate in [0, 1) before the head.
        hidden: width of the head's hidden ReLU layer (``None``/0: none).
        activation: ``"linear"``, ``"prelu"`` or ``"sigmoid"`` on the embedding.
        l2_normalize: unit-normalise the embeddings.
        trainable: the backbone's :func:`itemrec.models.backbones.set_trainable` mode
            (default: ``"frozen"`` for pretrained weights, ``"all"`` with ``weights=None``).
        bn_inference: run the backbone's BatchNorm in inference mode (default: True for
            pretrained weights, False for a backbone trained from scratch).

    Returns:
        The ``keras.Model`` (B, S, S, 3) → (B, E).

    Raises:
        ValueError: unknown backbone/activation, bad ``input_size``, ``dropout`` or
            ``trainable`` (from the builders).
        FileNotFoundError: ``weights`` names a missing file.
    """
    if trainable is None:
        trainable = "frozen" if weights is not None else "all"
    base = set_trainable(build_backbone(backbone, input_size, weights), trainable)
    if bn_inference is None:
        bn_inference = weights is not None
    head = build_head(base.output_shape[-1], embedding_dim, dropout, hidden, activation, l2_normalize)
    return attach_head(base, head, preprocess=backbone, bn_inference=bn_inference)


def build_classifier(embedding_model: keras.Model, n_classes: int, head: keras.layers.Layer | None = None) -> keras.Model:
    """``embedding_model`` followed by a classifier head giving float32 logits.

    A cosine head (:class:`itemrec.losses.CosineSoftmax` and its margin variants) gives
    margin-free ``s·cos θ`` logits here: train margins with
    :class:`itemrec.models.MetricLearningModel`, which passes the labels.

    Args:
        embedding_model: raw pixels (B, S, S, 3) → embeddings (B, E).
        n_classes: C, the number of classes (used only by the default head).
        head: a layer mapping (B, E) to (B, C) logits; default ``Dense(n_classes)`` in float32.

    Returns:
        The ``keras.Model`` (B, S, S, 3) → (B, C) logits, named ``"classifier_model"``.
    """
    head = head or keras.layers.Dense(int(n_classes), dtype="float32", name="classifier")
    inputs = keras.Input(tuple(embedding_model.input_shape[1:]), name="image")
    logits = head(embedding_model(inputs))
    return keras.Model(inputs, logits, name="classifier_model")
