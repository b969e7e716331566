"""Objects a run is made of, built from its config: weights path, loss, optimizer, training wrapper."""

from __future__ import annotations

from typing import Any

from itemrec.training.config import ConfigError
from itemrec.training.loss_config import LossConfig


def resolve_weights(weights: str | None, backbone: str = "mobilenet_v2") -> str | None:
    """``"local"`` -> the backbone's file (:data:`itemrec.models.backbones.LOCAL_WEIGHTS`) found by
    :func:`itemrec.settings.local_weights`; else unchanged."""
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
    import keras

    return {
        "adam": keras.optimizers.Adam,
        "adamw": keras.optimizers.AdamW,
        "sgd": lambda learning_rate: keras.optimizers.SGD(learning_rate, momentum=0.9),
        "rmsprop": keras.optimizers.RMSprop,
    }[name](learning_rate=learning_rate)


def wrap_for_training(embedding_model: Any, metric_loss: Any) -> Any:
    """:class:`itemrec.models.MetricLearningModel`; it scales its loss per replica itself, so the same
    model serves every strategy (build it inside the strategy's scope)."""
    from itemrec.models import MetricLearningModel

    return MetricLearningModel(embedding_model, metric_loss)
