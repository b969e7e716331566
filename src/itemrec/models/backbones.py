"""Convolutional backbones from ``keras.applications`` and the original small CNN.

:data:`BACKBONES` maps a name to its Keras constructor, its own
``preprocess_input`` module, its default input size and the minimum input
size Keras accepts. ``weights`` is ``"imagenet"`` (downloaded by Keras, needs
internet), ``None`` (random init) or the path of a local no-top weights file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class BackboneSpec:
    """What itemrec knows about a backbone.

    Attributes:
        name: the key in :data:`BACKBONES`.
        constructor: the ``keras.applications`` attribute that builds it (``"InceptionV3"``);
            ``""`` for ``small_cnn``.
        module: the ``keras.applications`` submodule holding its ``preprocess_input``
            (``"resnet"``); ``""`` for ``small_cnn``.
        default_size: the input side S (pixels) used when none is given.
        min_size: the smallest input side Keras accepts for it (pixels).
    """

    name: str
    constructor: str  # attribute of keras.applications ("" for small_cnn)
    module: str  # keras.applications submodule holding preprocess_input
    default_size: int
    min_size: int


BACKBONES: dict[str, BackboneSpec] = {
    "inception_v3": BackboneSpec("inception_v3", "InceptionV3", "inception_v3", 299, 75),
    # InceptionV3 truncated after block mixed8 (1280 channels, stride 32): the local ImageNet file
    # ``inception_v3_2015_imagenet_to_mixed8_fp16.h5`` holds only these layers (LOCAL_WEIGHTS)
    "inception_v3_mixed8": BackboneSpec("inception_v3_mixed8", "InceptionV3", "inception_v3", 299, 75),
    "mobilenet_v2": BackboneSpec("mobilenet_v2", "MobileNetV2", "mobilenet_v2", 224, 32),
    "vgg16": BackboneSpec("vgg16", "VGG16", "vgg16", 224, 32),
    "resnet50": BackboneSpec("resnet50", "ResNet50", "resnet", 224, 32),
    "efficientnet_b0": BackboneSpec("efficientnet_b0", "EfficientNetB0", "efficientnet", 224, 32),
    "small_cnn": BackboneSpec("small_cnn", "", "", 64, 16),
}


def backbone_spec(name: str) -> BackboneSpec:
    """The :class:`BackboneSpec` of a backbone name.

    Args:
        name: a key of :data:`BACKBONES`.

    Returns:
        Its :class:`BackboneSpec`.

    Raises:
        ValueError: unknown ``name``; the message lists the choices.
    """
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {sorted(BACKBONES)}")
    return BACKBONES[name]


def preprocess_input_for(name: str) -> Callable[[Any], Any]:
    """The backbone's own ``keras.applications.<module>.preprocess_input`` (small_cnn: x / 255).

    NumPy inputs are copied first (Keras would modify them in place).

    Args:
        name: a key of :data:`BACKBONES`.

    Returns:
        A function of raw pixels (..., S, S, 3) in 0..255 (NumPy array or tensor) giving the
        backbone's input, same shape, float.

    Raises:
        ValueError: unknown ``name`` (from :func:`backbone_spec`).
    """
    spec = backbone_spec(name)
    if name == "small_cnn":
        return lambda x: x / 255.0
    import importlib

    import numpy as np

    fn = importlib.import_module(f"keras.applications.{spec.module}").preprocess_input

    def preprocess(x: Any) -> Any:
        return fn(np.array(x, dtype=np.float32) if isinstance(x, np.ndarray) else x)

    preprocess.__doc__ = fn.__doc__
    return preprocess


# the weights file each backbone loads for ``weights="local"`` (under :func:`itemrec.settings.weights_dir`)
LOCAL_WEIGHTS: dict[str, str] = {
    "mobilenet_v2": "mobilenet_v2_1.0_224_imagenet_no_top.h5",
    "inception_v3_mixed8": "inception_v3_2015_imagenet_to_mixed8_fp16.h5",
}


def _check_weights(weights: str | os.PathLike | None) -> str | None:
    if weights is None or weights == "imagenet":
        return weights
    path = os.fspath(weights)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"backbone weights file not found: {path} (use weights=None or 'imagenet')")
    return path


def small_cnn(input_size: int = 64, filters: tuple[int, ...] = (32, 64, 128, 256), name: str = "small_cnn") -> Any:
    """The original experiment's CNN: blocks of conv 3×3 → BatchNorm → ReLU → max-pool 2×2.

    Each block halves the side, so the output is (B, S / 2^k, S / 2^k, filters[-1]) for k
    blocks (4 × 4 × 256 for the defaults); inputs are (B, S, S, 3) pixels scaled to [0, 1].

    Args:
        input_size: side S of the square input in pixels (default 64).
        filters: the output channels of each block, in order (default (32, 64, 128, 256)).
        name: the model's name.

    Returns:
        A headless ``keras.Model`` with random weights.
    """
    import keras

    inputs = keras.Input((input_size, input_size, 3), name="image")
    x = inputs
    for i, f in enumerate(filters):
        x = keras.layers.Conv2D(f, 3, padding="same", use_bias=False, name=f"block{i + 1}_conv")(x)
        x = keras.layers.BatchNormalization(name=f"block{i + 1}_bn")(x)
        x = keras.layers.ReLU(name=f"block{i + 1}_relu")(x)
        x = keras.layers.MaxPooling2D(2, name=f"block{i + 1}_pool")(x)
    return keras.Model(inputs, x, name=name)


def build_backbone(name: str = "mobilenet_v2", input_size: int | None = None, weights: Any = "imagenet",
                   filters: tuple[int, ...] | None = None) -> Any:
    """A headless backbone ``keras.Model`` taking preprocessed (S, S, 3) images.

    The output is the last convolutional feature map (B, s, s, C), e.g. C = 1280 for
    MobileNetV2 and for InceptionV3 cut after ``mixed8``; pool it (:func:`attach_head`) for
    features.

    Args:
        name: a key of :data:`BACKBONES` (default ``"mobilenet_v2"``).
        input_size: side S in pixels (default: the backbone's default size);
            must be at least the backbone's minimum.
        weights: ``"imagenet"``, ``None`` or a local weights file path
            (small_cnn: ``None`` or a path to a ``.weights.h5`` file).
        filters: small_cnn only: the filters of its blocks (``None``: (32, 64, 128, 256)).

    Returns:
        The backbone model (weights loaded, all layers trainable: see :func:`set_trainable`).

    Raises:
        ValueError: unknown ``name``; ``filters`` for another backbone; an input size below
            the minimum; ``weights="imagenet"`` for small_cnn.
        FileNotFoundError: ``weights`` names a file that does not exist.
    """
    import keras

    spec = backbone_spec(name)
    size = int(input_size or spec.default_size)
    if size < spec.min_size:
        raise ValueError(f"backbone {name!r} needs input_size >= {spec.min_size}; got {size}")
    weights = _check_weights(weights)
    if filters is not None and name != "small_cnn":
        raise ValueError(f"filters are the small CNN's; backbone {name!r} has its own")
    if name == "small_cnn":
        model = small_cnn(size, tuple(int(f) for f in filters)) if filters else small_cnn(size)
        if weights == "imagenet":
            raise ValueError("small_cnn has no ImageNet weights; use weights=None or a weights file")
        if weights is not None:
            model.load_weights(weights)
        return model
    constructor = getattr(keras.applications, spec.constructor)
    if name == "inception_v3_mixed8":
        return _inception_v3_mixed8(size, weights)
    kwargs: dict[str, Any] = {"include_top": False, "weights": weights, "input_shape": (size, size, 3)}
    if name == "mobilenet_v2":
        kwargs["alpha"] = 1.0
    return constructor(**kwargs)


def _inception_v3_mixed8(size: int, weights: str | None) -> Any:
    """``keras.applications.InceptionV3`` cut after block ``mixed8`` (output (S/32, S/32, 1280)).

    ``weights``: ``None``, a weights file of exactly these layers (matched by layer order; the
    local ImageNet file has its BatchNorm folded into identity-plus-bias layers) or ``"imagenet"``
    (the full Keras download, then truncated).
    """
    import keras

    base = keras.applications.InceptionV3(
        include_top=False, weights="imagenet" if weights == "imagenet" else None, input_shape=(size, size, 3)
    )
    trunk = keras.Model(base.input, base.get_layer("mixed8").output, name="inception_v3_mixed8")
    if weights is not None and weights != "imagenet":
        trunk.load_weights(weights)
    return trunk


def _is_bn(layer: Any) -> bool:
    import keras

    return isinstance(layer, keras.layers.BatchNormalization)


def set_trainable(backbone: Any, mode: str | int = "frozen") -> Any:
    """Freeze or unfreeze a backbone in place and return it.

    BatchNormalization layers always stay non-trainable, so with the backbone called as
    ``backbone(x, training=False)`` (as :func:`build_embedding_model` does,
    following the Keras transfer-learning guide) they keep using their
    ImageNet moving statistics while the rest fine-tunes.

    Args:
        backbone: the ``keras.Model`` to change.
        mode: ``"frozen"`` (nothing trains; the default), ``"all"`` (every non-BN layer
            trains) or an int N ≥ 0 (the top N layers that hold weights train; 0 is frozen).

    Returns:
        ``backbone`` itself.

    Raises:
        ValueError: ``mode`` is none of these (a negative int or a bool included).
    """
    layers = [layer for layer in backbone.layers if layer.weights]
    if mode == "frozen":
        n_top = 0
    elif mode == "all":
        n_top = len(layers)
    elif isinstance(mode, int) and not isinstance(mode, bool) and mode >= 0:
        n_top = mode
    else:
        raise ValueError(f"trainable mode must be 'frozen', 'all' or an int >= 0; got {mode!r}")
    backbone.trainable = n_top > 0
    if n_top == 0:
        return backbone
    cut = len(layers) - min(n_top, len(layers))
    for i, layer in enumerate(layers):
        layer.trainable = i >= cut and not _is_bn(layer)
    return backbone
