"""Triplet miners: which (anchor, positive, negative) triplets of a batch to train on.

A miner looks at the labels and the (B, B) distance matrix of one batch and
returns the :class:`Triplets` it keeps (``labels[a] == labels[p]``, ``a != p``,
``labels[a] != labels[n]``): a dense float32 mask ``M[a, p, n]`` (batch-all,
which keeps many negatives per pair), or, for miners that keep at most one
negative per positive pair, a (B, B) pair mask with a (B, B) negative index,
so the loss costs O(B²) memory instead of O(B³). ``Triplets.dense()`` gives the
(B, B, B) mask in both cases.
:class:`itemrec.losses.TripletLoss` turns the mask into a loss, so any miner
works with any distance, margin and soft margin (the design of
pytorch-metric-learning, Musgrave et al. 2020).

Each miner also names its default *reduction*: ``"active"`` (mean over the
triplets whose loss is > 0, as batch-all in Hermans et al. 2017) or ``"mined"``
(mean over every mined triplet).

Miners never see gradients: the mask is built from ``stop_gradient`` distances,
and the loss multiplies the full (B, B, B) triplet-loss tensor by it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

_BIG = 1e9


class Triplets:
    """Mined triplets: ``mask`` (B, B, B), or ``pair_mask`` (B, B) with ``negatives`` (B, B) int."""

    def __init__(self, mask: Any = None, pair_mask: Any = None, negatives: Any = None) -> None:
        if (mask is None) == (pair_mask is None) or (pair_mask is None) != (negatives is None):
            raise ValueError("Triplets takes either mask, or pair_mask with negatives")
        self.mask = mask
        self.pair_mask = pair_mask
        self.negatives = negatives

    def dense(self) -> Any:
        """The (B, B, B) float32 mask ``M[a, p, n]``."""
        from keras import ops

        if self.mask is not None:
            return self.mask
        n = ops.shape(self.pair_mask)[0]
        return ops.expand_dims(self.pair_mask, 2) * ops.one_hot(self.negatives, n, dtype="float32")


def _pair_masks(labels: Any) -> tuple[Any, Any]:
    """(positive-pair mask without the diagonal, negative-pair mask), both (B, B) float32."""
    from keras import ops

    labels = ops.reshape(labels, (-1,))
    same = ops.cast(ops.equal(ops.expand_dims(labels, 1), ops.expand_dims(labels, 0)), "float32")
    n = ops.shape(labels)[0]
    pos = same * (1.0 - ops.eye(n, dtype="float32"))
    neg = 1.0 - same
    return pos, neg


def _has_any(mask: Any) -> Any:
    from keras import ops

    return ops.cast(ops.greater(ops.sum(mask, axis=1), 0.0), "float32")


def _one_per_anchor(pos: Any, neg: Any, pos_index: Any, neg_index: Any) -> Triplets:
    """Triplets (a, pos_index[a], neg_index[a]) for anchors with a positive and a negative."""
    from keras import ops

    n = ops.shape(pos)[0]
    valid = _has_any(pos) * _has_any(neg)
    pair_mask = ops.expand_dims(valid, 1) * ops.one_hot(pos_index, n, dtype="float32")
    negatives = ops.broadcast_to(ops.expand_dims(ops.cast(neg_index, "int32"), 1), ops.shape(pair_mask))
    return Triplets(pair_mask=pair_mask, negatives=negatives)


class TripletMiner(ABC):
    """Base class: ``miner(labels, dist, margin, seed=None) -> Triplets``."""

    reduction = "mined"
    needs_seed = False

    def __call__(self, labels: Any, dist: Any, margin: float = 0.0, seed: Any = None) -> Triplets:
        from keras import ops

        return self.mine(labels, ops.stop_gradient(ops.cast(dist, "float32")), margin, seed)

    @abstractmethod
    def mine(self, labels: Any, dist: Any, margin: float, seed: Any) -> Triplets:
        """The :class:`Triplets` for integer ``labels`` (B,) and distances ``dist`` (B, B)."""

    def get_config(self) -> dict:
        return {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class BatchAllMiner(TripletMiner):
    """Every valid triplet of the batch (Hermans, Beyer & Leibe 2017, "batch all").

    The loss is averaged over the *active* triplets (loss > 0) only, so the many
    easy triplets do not wash the gradient out.
    """

    reduction = "active"

    def mine(self, labels, dist, margin, seed):
        from keras import ops

        pos, neg = _pair_masks(labels)
        return Triplets(mask=ops.expand_dims(pos, 2) * ops.expand_dims(neg, 1))


class BatchHardMiner(TripletMiner):
    """Per anchor, its farthest positive and its nearest negative (Hermans et al. 2017).

    Anchors with no positive or no negative in the batch contribute nothing.
    """

    def mine(self, labels, dist, margin, seed):
        from keras import ops

        pos, neg = _pair_masks(labels)
        hardest_pos = ops.argmax(dist * pos - (1.0 - pos) * _BIG, axis=1)
        hardest_neg = ops.argmin(dist + (1.0 - neg) * _BIG, axis=1)
        return _one_per_anchor(pos, neg, hardest_pos, hardest_neg)


class SemiHardMiner(TripletMiner):
    """Semi-hard negatives (FaceNet, Schroff, Kalenichenko & Philbin 2015).

    For each positive pair (a, p) the negative is the nearest ``n`` with
    ``d_an > d_ap`` (semi-hard when also ``d_an < d_ap + margin``; if the nearest
    such negative lies beyond the margin the triplet simply has loss 0). When no
    negative is farther than the positive, we fall back, exactly as TF-Addons'
    ``triplet_semihard_loss`` does, to the *farthest* negative of the anchor
    (all its negatives are then closer than the positive; this is the mildest
    of those hard negatives, not the hardest). The loss is the mean over every
    positive pair whose anchor has a negative (TF-Addons divides by all
    positive pairs; the two agree unless a batch holds a single class, where
    ours gives 0).
    """

    def mine(self, labels, dist, margin, seed):
        from keras import ops

        pos, neg = _pair_masks(labels)
        d_ap = ops.expand_dims(dist, 2)  # [a, p, 1]
        d_an = ops.expand_dims(dist, 1)  # [a, 1, n]
        neg3 = ops.expand_dims(neg, 1)
        outside = neg3 * ops.cast(ops.greater(d_an, d_ap), "float32")  # [a, p, n]
        has_outside = ops.cast(ops.greater(ops.sum(outside, axis=2), 0.0), "float32")  # [a, p]
        nearest_outside = ops.argmin(d_an + (1.0 - outside) * _BIG, axis=2)  # [a, p]
        farthest_neg = ops.argmax(dist * neg - (1.0 - neg) * _BIG, axis=1)  # [a]
        farthest_neg = ops.broadcast_to(ops.expand_dims(farthest_neg, 1), ops.shape(nearest_outside))
        chosen = ops.where(ops.greater(has_outside, 0.0), nearest_outside, farthest_neg)
        valid = pos * ops.expand_dims(_has_any(neg), 1)
        return Triplets(pair_mask=valid, negatives=ops.cast(chosen, "int32"))


class RandomTripletMiner(TripletMiner):
    """One random positive and one random negative per anchor (the original
    experiment's random triplet generator, done inside the batch).

    For batches that already come as explicit (anchor, positive, negative)
    triples, call :class:`itemrec.losses.TripletLoss` on the stacked (B, 3, D)
    embeddings instead: no mining is needed then.
    """

    needs_seed = True

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed

    def mine(self, labels, dist, margin, seed):
        from keras import ops, random

        if seed is None:
            raise ValueError("RandomTripletMiner needs a seed (a keras.random.SeedGenerator or an int)")
        pos, neg = _pair_masks(labels)
        scores = random.uniform(ops.shape(dist), minval=0.0, maxval=1.0, dtype="float32", seed=seed)
        pick_pos = ops.argmax(scores * pos - (1.0 - pos), axis=1)
        pick_neg = ops.argmax(scores * neg - (1.0 - neg), axis=1)  # same draw, disjoint sets
        return _one_per_anchor(pos, neg, pick_pos, pick_neg)

    def get_config(self) -> dict:
        return {"seed": self.seed}

    def __repr__(self) -> str:
        return f"RandomTripletMiner(seed={self.seed})"


MINERS: dict[str, type[TripletMiner]] = {
    "batch_all": BatchAllMiner,
    "batch_hard": BatchHardMiner,
    "semi_hard": SemiHardMiner,
    "random": RandomTripletMiner,
}


def get_miner(miner: str | TripletMiner) -> TripletMiner:
    """A miner from its name (``batch_all``, ``batch_hard``, ``semi_hard``, ``random``) or itself."""
    if isinstance(miner, TripletMiner):
        return miner
    if miner not in MINERS:
        raise ValueError(f"unknown miner {miner!r}; choose one of {sorted(MINERS)}")
    return MINERS[miner]()


def miner_name(miner: TripletMiner) -> str:
    """The registry name of a miner instance."""
    for name, cls in MINERS.items():
        if type(miner) is cls:
            return name
    raise ValueError(f"miner {miner!r} is not a registered miner class")
