"""Triplet loss with pluggable miners and distances.

For a mined triplet (a, p, n) with distances ``d_ap = d(x_a, x_p)`` and
``d_an = d(x_a, x_n)``:

* hinge (Weinberger & Saul 2009; FaceNet, Schroff et al. 2015):
  ``ℓ = max(d_ap − d_an + margin, 0)``;
* soft margin (Hermans, Beyer & Leibe 2017): ``ℓ = log(1 + exp(d_ap − d_an))``.

The batch loss is the mean of ``ℓ`` over the mined triplets
(:class:`~itemrec.reducers.MeanReducer`) or over the active ones, ``ℓ > 0``
(:class:`~itemrec.reducers.AvgNonZeroReducer`); ``reducer=None`` takes the miner's
default (batch-all: active; the others: every mined triplet). A batch with no valid
triplet (for instance a single class) gives loss 0.

Diagnostics: ``d_ap`` and ``d_an`` (means over mined triplets) and
``active_fraction`` (active / mined).
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from itemrec.distances import Distance, get_distance
from itemrec.losses.base import MetricLoss, check_range, flat_labels, safe_mean
from itemrec.mining import TripletMiner, get_miner
from itemrec.reducers import Reducer, get_reducer
from itemrec.serialization import serialize


@keras.saving.register_keras_serializable(package="itemrec")
class TripletLoss(MetricLoss):
    """Triplet loss; see the module docstring.

    Args:
        margin: hinge margin (ignored with ``soft_margin``), in the distance's units.
        miner: a :class:`itemrec.mining.TripletMiner`, its serialised dict or a short
            name (``"batch_all"``, ``"batch_hard"``, ``"semi_hard"``, ``"random"``).
        distance: a :class:`itemrec.distances.Distance`, its serialised dict or a name
            (``"squared_l2"``, ``"l2"``, ``"cosine"``, ``"mse"``; a similarity such as
            ``"cosine_similarity"`` works too: ``d_ap − d_an`` is then ``s_an − s_ap``).
        soft_margin: use ``softplus(d_ap − d_an)`` instead of the hinge.
        reducer: a :class:`itemrec.reducers.Reducer`, its dict or name (``"mean"``,
            ``"avg_non_zero"``), or ``None`` for the miner's default.

    ``compute(embeddings, labels)`` takes (B, D) embeddings with (B,) labels, or
    stacked explicit triples (B, 3, D) = (anchor, positive, negative) with no
    labels, as the original random triplet generator produces.

    Raises:
        ValueError: ``margin`` < 0; unknown miner, distance or reducer; a miner that is not a triplet miner.
    """

    metric_names = ("d_ap", "d_an", "active_fraction")

    def __init__(
        self,
        margin: float = 0.2,
        miner: str | dict | TripletMiner = "batch_all",
        distance: str | dict | Distance = "squared_l2",
        soft_margin: bool = False,
        reducer: str | dict | Reducer | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.margin = check_range("margin", margin)
        self.miner = get_miner(miner, TripletMiner)
        self.distance = get_distance(distance)
        self.soft_margin = bool(soft_margin)
        self.reducer = get_reducer(reducer)
        if getattr(self.miner, "seed_generator", None) is not None:
            self.miner_seed_generator = self.miner.seed_generator  # tracked by the layer (saved, distributed)

    @property
    def effective_reducer(self) -> Reducer:
        """The reducer in use: :attr:`reducer`, else the miner's default."""
        return self.reducer or get_reducer(self.miner.default_reducer)

    def per_triplet(self, diff: Any) -> Any:
        """``ℓ`` as a function of ``d_ap − d_an``.

        Args:
            diff: tensor of ``d_ap − d_an``.

        Returns:
            ``softplus(diff)`` with a soft margin, else ``max(diff + margin, 0)``.
        """
        if self.soft_margin:
            return ops.softplus(diff)
        return ops.relu(diff + self.margin)

    def compute(self, embeddings: Any, labels: Any = None, training: bool = False) -> tuple[Any, dict]:
        """Loss and diagnostics (``d_ap``, ``d_an``, ``active_fraction``) of a batch.

        Args:
            embeddings: (B, D) with ``labels``, or stacked triples (B, 3, D).
            labels: integer (B,), ignored for stacked triples.
            training: unused (the loss is the same in both modes).

        Returns:
            ``(loss, diagnostics)``, float32 scalars.

        Raises:
            ValueError: embeddings of another rank, or (B, k, D) with k ≠ 3; labels missing for (B, D).
        """
        emb = ops.cast(embeddings, "float32")
        sign = -1.0 if self.distance.inverted else 1.0  # "smaller is closer" for the hinge
        if len(emb.shape) == 3:
            if emb.shape[1] != 3:
                raise ValueError(f"stacked triples must have shape (B, 3, D); got {tuple(emb.shape)}")
            d_ap = sign * self.distance.paired(emb[:, 0], emb[:, 1])
            d_an = sign * self.distance.paired(emb[:, 0], emb[:, 2])
            mask = ops.ones_like(d_ap)
        elif len(emb.shape) == 2:
            labels = flat_labels(labels)
            dist = sign * self.distance.pairwise(emb)
            mined = self.miner(labels, dist)
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
        n_mined = ops.sum(mask)
        active = ops.sum(mask * ops.cast(ops.greater(losses, 1e-16), "float32"))
        loss = self.effective_reducer(losses, mask)
        metrics = {
            "d_ap": safe_mean(ops.sum(ops.stop_gradient(mask * d_ap)), n_mined) * sign,
            "d_an": safe_mean(ops.sum(ops.stop_gradient(mask * d_an)), n_mined) * sign,
            "active_fraction": safe_mean(active, n_mined),
        }
        return loss, metrics

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(margin=self.margin, miner=serialize(self.miner), distance=serialize(self.distance),
                      soft_margin=self.soft_margin, reducer=serialize(self.reducer))
        return config

    @classmethod
    def from_config(cls, config: dict) -> "TripletLoss":
        """Rebuild from :meth:`get_config`; reads the older format too.

        Args:
            config: the layer config (older files: ``miner`` a name with ``miner_config``,
                ``distance`` a name, ``reduction``, ``seed``).

        Returns:
            A new loss.
        """
        config = dict(config)
        miner_config = config.pop("miner_config", None)
        seed = config.pop("seed", None)
        if "reduction" in config:
            config["reducer"] = config.pop("reduction")
        from itemrec.mining import MINERS

        miner = config.get("miner")
        if isinstance(miner, str) and miner in MINERS and (miner_config is not None or seed is not None):  # older
            miner_config = dict(miner_config or {})
            if config["miner"] == "random" and miner_config.get("seed") is None:
                miner_config["seed"] = seed
            config["miner"] = MINERS[config["miner"]](**miner_config)
        return cls(**config)
