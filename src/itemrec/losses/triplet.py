"""Triplet loss with pluggable miners and distances.

For a mined triplet (a, p, n) with distances ``d_ap = d(x_a, x_p)`` and
``d_an = d(x_a, x_n)``:

* hinge (Weinberger & Saul 2009; FaceNet, Schroff et al. 2015):
  ``ℓ = max(d_ap − d_an + margin, 0)``;
* soft margin (Hermans, Beyer & Leibe 2017): ``ℓ = log(1 + exp(d_ap − d_an))``.

The batch loss is the mean of ``ℓ`` over the mined triplets (``reduction=
"mined"``) or over the active ones, ``ℓ > 0`` (``"active"``); ``None`` takes the
miner's default (batch-all: active; the others: mined). A batch with no valid
triplet (for instance a single class) gives loss 0.

Diagnostics: ``d_ap`` and ``d_an`` (means over mined triplets) and
``active_fraction`` (active / mined).
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from itemrec.distances import check_metric, paired_distances, pairwise_distances
from itemrec.losses.base import MetricLoss, flat_labels, safe_mean
from itemrec.mining import MINERS, TripletMiner, get_miner, miner_name

REDUCTIONS = ("mined", "active")


@keras.saving.register_keras_serializable(package="itemrec")
class TripletLoss(MetricLoss):
    """Triplet loss; see the module docstring.

    Args:
        margin: hinge margin (ignored with ``soft_margin``).
        miner: a :class:`itemrec.mining.TripletMiner` or its name.
        distance: ``"squared_l2"``, ``"l2"``, ``"cosine"`` or ``"mse"``.
        soft_margin: use ``softplus(d_ap − d_an)`` instead of the hinge.
        reduction: ``"mined"``, ``"active"`` or ``None`` (the miner's default).

    ``compute(embeddings, labels)`` takes (B, D) embeddings with (B,) labels, or
    stacked explicit triples (B, 3, D) = (anchor, positive, negative) with no
    labels, as the original random triplet generator produces.
    """

    metric_names = ("d_ap", "d_an", "active_fraction")

    def __init__(
        self,
        margin: float = 0.2,
        miner: str | TripletMiner = "batch_all",
        distance: str = "squared_l2",
        soft_margin: bool = False,
        reduction: str | None = None,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.margin = float(margin)
        self.miner = get_miner(miner)
        self.distance = check_metric(distance)
        self.soft_margin = bool(soft_margin)
        if reduction is not None and reduction not in REDUCTIONS:
            raise ValueError(f"unknown reduction {reduction!r}; choose one of {REDUCTIONS} or None")
        self.reduction = reduction
        self.seed = seed
        if self.miner.needs_seed:
            self.seed_generator = keras.random.SeedGenerator(getattr(self.miner, "seed", None) if seed is None else seed)

    @property
    def effective_reduction(self) -> str:
        return self.reduction or self.miner.reduction

    def per_triplet(self, diff: Any) -> Any:
        """``ℓ`` as a function of ``d_ap − d_an``."""
        if self.soft_margin:
            return ops.softplus(diff)
        return ops.relu(diff + self.margin)

    def compute(self, embeddings: Any, labels: Any = None, training: bool = False) -> tuple[Any, dict]:
        emb = ops.cast(embeddings, "float32")
        if len(emb.shape) == 3:
            if emb.shape[1] != 3:
                raise ValueError(f"stacked triples must have shape (B, 3, D); got {tuple(emb.shape)}")
            d_ap = paired_distances(emb[:, 0], emb[:, 1], self.distance)
            d_an = paired_distances(emb[:, 0], emb[:, 2], self.distance)
            mask = ops.ones_like(d_ap)
        elif len(emb.shape) == 2:
            labels = flat_labels(labels)
            dist = pairwise_distances(emb, metric=self.distance)
            seed = self.seed_generator if self.miner.needs_seed else None
            mined = self.miner(labels, dist, self.margin, seed)
            if mined.mask is not None:  # dense: every (a, p, n)
                mask = mined.mask
                d_ap = ops.expand_dims(dist, 2)  # [a, p, 1]
                d_an = ops.expand_dims(dist, 1)  # [a, 1, n]
            else:  # one negative per positive pair: O(B²)
                mask = mined.pair_mask
                d_ap = dist
                d_an = ops.take_along_axis(dist, mined.negatives, axis=1)
        else:
            raise ValueError(f"TripletLoss needs embeddings (B, D) or stacked triples (B, 3, D); got {tuple(emb.shape)}")
        losses = self.per_triplet(d_ap - d_an) * mask
        mined = ops.sum(mask)
        active = ops.sum(mask * ops.cast(ops.greater(losses, 1e-16), "float32"))
        denom = active if self.effective_reduction == "active" else mined
        loss = safe_mean(ops.sum(losses), denom)
        metrics = {
            "d_ap": safe_mean(ops.sum(ops.stop_gradient(mask * d_ap)), mined),
            "d_an": safe_mean(ops.sum(ops.stop_gradient(mask * d_an)), mined),
            "active_fraction": safe_mean(active, mined),
        }
        return loss, metrics

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            margin=self.margin,
            miner=miner_name(self.miner),
            miner_config=self.miner.get_config(),
            distance=self.distance,
            soft_margin=self.soft_margin,
            reduction=self.reduction,
            seed=self.seed,
        )
        return config

    @classmethod
    def from_config(cls, config: dict) -> "TripletLoss":
        config = dict(config)
        name = config.pop("miner")
        miner_config = config.pop("miner_config", {}) or {}
        return cls(miner=MINERS[name](**miner_config), **config)
