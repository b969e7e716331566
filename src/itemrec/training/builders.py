"""Objects a run is made of, built from its config: weights path, loss, optimizer, training wrapper."""

from __future__ import annotations

from typing import Any

from itemrec.training.config import ConfigError
from itemrec.training.loss_config import LossConfig


def resolve_weights(weights: str | None, backbone: str = "mobilenet_v2") -> str | None:
    """``"local"`` -> the backbone's file (:data:`itemrec.models.backbones.LOCAL_WEIGHTS`) found by
    :func:`itemrec.settings.local_weights`; else unchanged.

    Args:
        weights: the config's ``model.weights``: ``"local"``, ``"imagenet"``, a file path, or
            ``None`` (random initialisation).
        backbone: the backbone name, which picks the local file.

    Returns:
        The local file's path as a string for ``"local"``; ``weights`` unchanged otherwise.

    Raises:
        ConfigError: ``"local"`` for a backbone with no local weights file.
        itemrec.settings.DataNotFoundError: the local file is not in the weights folder
            (raised by :func:`itemrec.settings.local_weights`).
    """
    if weights == "local":
        from itemrec import settings
        from itemrec.models.backbones import LOCAL_WEIGHTS

        if backbone not in LOCAL_WEIGHTS:
            raise ConfigError(f"no local weights file for backbone {backbone!r}; local files exist for {sorted(LOCAL_WEIGHTS)}")
        return str(settings.local_weights(LOCAL_WEIGHTS[backbone]))
    return weights


def build_loss(cfg: LossConfig, n_classes: int) -> Any:
    """The loss object ``cfg`` describes, for ``n_classes`` training classes.

    Args:
        cfg: the experiment config's ``loss`` (a serialised loss object).
        n_classes: the number of training classes (given to a loss that takes ``n_classes``).

    Returns:
        The :class:`itemrec.losses.MetricLoss`, built by ``keras.saving.deserialize_keras_object``.

    Raises:
        ConfigError: an unknown class or arguments its constructor rejects.
    """
    return cfg.build(n_classes)


def build_optimizer(name: str, learning_rate: float) -> Any:
    """A fresh Keras optimizer by name, with Keras's defaults apart from the learning rate.

    Args:
        name: ``"adam"``, ``"adamw"``, ``"sgd"`` (with momentum 0.9) or ``"rmsprop"``
            (:data:`itemrec.training.config.OPTIMIZERS`, checked by the config).
        learning_rate: the (constant) learning rate.

    Returns:
        A new ``keras.optimizers.Optimizer``.

    Raises:
        KeyError: any other name (the config's validation rejects it first).
    """
    import keras

    return {
        "adam": keras.optimizers.Adam,
        "adamw": keras.optimizers.AdamW,
        "sgd": lambda learning_rate: keras.optimizers.SGD(learning_rate, momentum=0.9),
        "rmsprop": keras.optimizers.RMSprop,
    }[name](learning_rate=learning_rate)


def wrap_for_training(embedding_model: Any, metric_loss: Any) -> Any:
    """:class:`itemrec.models.MetricLearningModel`; it scales its loss per replica itself, so the same
    model serves every strategy (build it inside the strategy's scope).

    Args:
        embedding_model: the Keras model mapping images (or cached features) to (B, D) embeddings.
        metric_loss: the :class:`itemrec.losses.MetricLoss` trained with it (its own weights,
            such as a classifier head or proxies, train too).

    Returns:
        A new :class:`itemrec.models.MetricLearningModel` wrapping both, ready to ``compile`` and ``fit``.
    """

    from itemrec.models import MetricLearningModel

    return MetricLearningModel(embedding_model, metric_loss)
