"""Objects a run is made of, built from its config: weights path, loss, optimizer, training wrapper."""

from __future__ import annotations

from typing import Any

from itemrec.training.config import ConfigError, LossConfig


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


def build_loss(cfg: LossConfig, n_classes: int, seed: int = 0) -> Any:
    """The :mod:`itemrec.losses` object described by ``cfg`` for ``n_classes`` training classes."""
    from itemrec import losses

    if cfg.name == "softmax":
        return losses.SoftmaxLoss(n_classes)
    if cfg.name == "center":
        return losses.CenterLoss(n_classes, alpha=cfg.alpha, lam=cfg.lam)
    if cfg.name == "triplet":
        return losses.TripletLoss(cfg.margin, cfg.miner, cfg.distance, cfg.soft_margin, seed=seed)
    if cfg.name == "cosine":
        return losses.SoftmaxLoss(head=losses.CosineSoftmax(n_classes, scale=cfg.scale))
    if cfg.name == "arcface":
        return losses.SoftmaxLoss(head=losses.ArcFace(n_classes, scale=cfg.scale, margin=cfg.angular_margin))
    if cfg.name == "cosface":
        return losses.SoftmaxLoss(head=losses.CosFace(n_classes, scale=cfg.scale, margin=cfg.angular_margin))
    if cfg.name == "multi_similarity":
        miner = None if cfg.ms_epsilon is None else losses.MultiSimilarityMiner(cfg.ms_epsilon)
        return losses.MultiSimilarityLoss(cfg.ms_alpha, cfg.ms_beta, cfg.ms_base, miner=miner)
    if cfg.name == "proxy_anchor":
        return losses.ProxyAnchorLoss(n_classes, margin=cfg.proxy_margin, alpha=cfg.proxy_alpha)
    if cfg.name == "contrastive":
        return losses.ContrastiveLoss(cfg.pos_margin, cfg.neg_margin)
    raise ConfigError(f"unknown loss {cfg.name!r}")


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
