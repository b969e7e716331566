"""Miners: which triplets or pairs of a batch a loss trains on.

A miner is a small Keras-serialisable object, called as
``miner(labels, distances, inverted=False) -> indices``: integer ``labels`` (B,)
and the (B, B) matrix the loss computed with its :class:`~itemrec.distances.Distance`
(``inverted=True`` when that matrix is a similarity, larger = closer; the miner
negates it, so every miner's rule reads "smaller is closer"). The loss takes what
the miner returns (the design of pytorch-metric-learning, Musgrave et al. 2020), so
any miner works with any distance, margin and reducer. A miner never sees
gradients: the matrix is passed through ``stop_gradient``. A miner that draws at
random owns its seed (a ``keras.random.SeedGenerator``).

* Triplet miners return :class:`Triplets` (``labels[a] == labels[p]``, ``a != p``,
  ``labels[a] != labels[n]``): a dense float32 mask ``M[a, p, n]`` (batch-all,
  which keeps many negatives per pair), or, for miners that keep at most one
  negative per positive pair, a (B, B) pair mask with a (B, B) index of the
  negatives, so the loss costs O(B²) memory instead of O(B³).
  :class:`BatchAllMiner`, :class:`BatchHardMiner` (Hermans, Beyer & Leibe 2017),
  :class:`SemiHardMiner` (Schroff et al. 2015), :class:`RandomTripletMiner`.
* Pair miners return :class:`Pairs` (masks of the kept positive and negative
  pairs): :class:`MultiSimilarityMiner` (Wang et al. 2019).

A miner names its default reducer (:attr:`Miner.default_reducer`): batch-all
averages over the active triplets (``"avg_non_zero"``), the others over every
mined one (``"mean"``).

To define your own, subclass :class:`TripletMiner` (or :class:`PairMiner`),
implement ``mine(labels, distances)``, register the class with
``keras.saving.register_keras_serializable(package=...)`` and return the
constructor arguments from ``get_config``: it trains, saves and loads like these.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from itemrec.serialization import ConfigObject, resolve

_BIG = 1e9


class Triplets:
    """Mined triplets: a dense ``mask`` (B, B, B), or ``pair_mask`` (B, B) with ``negatives`` (B, B) int.

    Args:
        mask: float32 ``M[a, p, n]`` = 1 for each kept triplet.
        pair_mask: float32 (B, B), 1 for each kept (a, p) pair.
        negatives: int32 (B, B), the negative ``n`` of each kept (a, p) pair.

    Raises:
        ValueError: neither or both forms given, or ``pair_mask`` without ``negatives``.
    """

    def __init__(self, mask: Any = None, pair_mask: Any = None, negatives: Any = None) -> None:
        if (mask is None) == (pair_mask is None) or (pair_mask is None) != (negatives is None):
            raise ValueError("Triplets takes either mask, or pair_mask with negatives")
        self.mask = mask
        self.pair_mask = pair_mask
        self.negatives = negatives

    def dense(self) -> Any:
        """The (B, B, B) float32 mask ``M[a, p, n]``.

        Returns:
            The mask (built from the pair form when needed).
        """
        if self.mask is not None:
            return self.mask
        n = ops.shape(self.pair_mask)[0]
        return ops.expand_dims(self.pair_mask, 2) * ops.one_hot(self.negatives, n, dtype="float32")


class Pairs:
    """Mined pairs: float32 (B, B) masks of the kept positive and negative pairs.

    Args:
        positive: 1 where the pair (i, j) is a kept positive pair.
        negative: 1 where the pair (i, j) is a kept negative pair.
    """

    def __init__(self, positive: Any, negative: Any) -> None:
        self.positive = positive
        self.negative = negative

    def __iter__(self):
        return iter((self.positive, self.negative))


def pair_masks(labels: Any) -> tuple[Any, Any]:
    """(positive-pair mask without the diagonal, negative-pair mask), both (B, B) float32.

    Args:
        labels: integer labels, any shape with B elements.

    Returns:
        ``(pos, neg)``: ``pos[i, j] = [y_i = y_j, i ≠ j]``, ``neg[i, j] = [y_i ≠ y_j]``.
    """
    labels = ops.reshape(labels, (-1,))
    same = ops.cast(ops.equal(ops.expand_dims(labels, 1), ops.expand_dims(labels, 0)), "float32")
    n = ops.shape(labels)[0]
    return same * (1.0 - ops.eye(n, dtype="float32")), 1.0 - same


def _has_any(mask: Any) -> Any:
    return ops.cast(ops.greater(ops.sum(mask, axis=1), 0.0), "float32")


def _one_per_anchor(pos: Any, neg: Any, pos_index: Any, neg_index: Any) -> Triplets:
    """Triplets (a, pos_index[a], neg_index[a]) for anchors with a positive and a negative."""
    n = ops.shape(pos)[0]
    valid = _has_any(pos) * _has_any(neg)
    pair_mask = ops.expand_dims(valid, 1) * ops.one_hot(pos_index, n, dtype="float32")
    negatives = ops.broadcast_to(ops.expand_dims(ops.cast(neg_index, "int32"), 1), ops.shape(pair_mask))
    return Triplets(pair_mask=pair_mask, negatives=negatives)


class Miner(ConfigObject):
    """Base class of every miner: ``miner(labels, distances, inverted=False)``.

    Subclasses implement :meth:`mine` on a "smaller is closer" matrix and return
    their constructor arguments from :meth:`get_config`.
    """

    #: the reducer a loss uses with this miner unless told otherwise (``"mean"`` or ``"avg_non_zero"``)
    default_reducer = "mean"

    def __call__(self, labels: Any, distances: Any, inverted: bool = False) -> Any:
        """Mine a batch.

        Args:
            labels: integer labels (B,).
            distances: the (B, B) matrix of the loss's distance.
            inverted: ``True`` when ``distances`` is a similarity (larger is closer).

        Returns:
            What :meth:`mine` returns (:class:`Triplets` or :class:`Pairs`).
        """
        d = ops.stop_gradient(ops.cast(distances, "float32"))
        labels = ops.reshape(ops.cast(labels, "int32"), (-1,))
        return self.mine(labels, -d if inverted else d)

    def mine(self, labels: Any, distances: Any) -> Any:
        """The mined indices for ``labels`` (B,) and a (B, B) matrix where smaller is closer.

        Args:
            labels: int32 labels (B,).
            distances: float32 (B, B), no gradient.

        Returns:
            :class:`Triplets` or :class:`Pairs`.

        Raises:
            NotImplementedError: in the base class.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement mine(labels, distances)")



class TripletMiner(Miner):
    """A miner that returns :class:`Triplets`."""


class PairMiner(Miner):
    """A miner that returns :class:`Pairs`."""


@keras.saving.register_keras_serializable(package="itemrec")
class BatchAllMiner(TripletMiner):
    """Every valid triplet of the batch (Hermans, Beyer & Leibe 2017, "batch all").

    The loss is averaged over the *active* triplets (loss > 0) only, so the many
    easy triplets do not wash the gradient out.
    """

    default_reducer = "avg_non_zero"

    def mine(self, labels, distances):
        """Every (a, p, n) with ``y_a = y_p``, ``a ≠ p``, ``y_n ≠ y_a`` (the distances are not read).

        Args:
            labels: int32 labels (B,).
            distances: float32 (B, B), smaller is closer (unused).

        Returns:
            :class:`Triplets` with the dense (B, B, B) ``mask`` (O(B³) memory).
        """
        pos, neg = pair_masks(labels)
        return Triplets(mask=ops.expand_dims(pos, 2) * ops.expand_dims(neg, 1))


@keras.saving.register_keras_serializable(package="itemrec")
class BatchHardMiner(TripletMiner):
    """Per anchor, its farthest positive and its nearest negative (Hermans et al. 2017).

    Anchors with no positive or no negative in the batch contribute nothing.
    """

    def mine(self, labels, distances):
        """One triplet per anchor: (a, farthest positive, nearest negative).

        Args:
            labels: int32 labels (B,).
            distances: float32 (B, B), smaller is closer.

        Returns:
            :class:`Triplets` in pair form: ``pair_mask`` (B, B) with one kept (a, p) per anchor
            that has both a positive and a negative, and ``negatives`` (B, B) int32.
        """
        pos, neg = pair_masks(labels)
        hardest_pos = ops.argmax(distances * pos - (1.0 - pos) * _BIG, axis=1)
        hardest_neg = ops.argmin(distances + (1.0 - neg) * _BIG, axis=1)
        return _one_per_anchor(pos, neg, hardest_pos, hardest_neg)


@keras.saving.register_keras_serializable(package="itemrec")
class SemiHardMiner(TripletMiner):
    """Semi-hard negatives (FaceNet, Schroff, Kalenichenko & Philbin 2015).

    For each positive pair (a, p) the negative is the nearest ``n`` with
    ``d_an > d_ap`` (strictly; semi-hard when also ``d_an < d_ap + margin``, and if
    the nearest such negative lies beyond the margin the triplet simply has loss 0,
    so the rule needs no margin). When no negative is farther than the positive, we
    fall back, exactly as TF-Addons' ``triplet_semihard_loss`` does, to the
    *farthest* negative of the anchor. The loss is the mean over every positive
    pair whose anchor has a negative (TF-Addons divides by all positive pairs; the
    two agree unless a batch holds a single class, where ours gives 0).
    """

    def mine(self, labels, distances):
        """Per positive pair (a, p): the nearest negative farther than ``p``, else the farthest negative.

        Args:
            labels: int32 labels (B,).
            distances: float32 (B, B), smaller is closer.

        Returns:
            :class:`Triplets` in pair form: every positive pair whose anchor has a negative,
            with its chosen negative. Builds (B, B, B) intermediates.
        """
        pos, neg = pair_masks(labels)
        d_ap = ops.expand_dims(distances, 2)  # [a, p, 1]
        d_an = ops.expand_dims(distances, 1)  # [a, 1, n]
        outside = ops.expand_dims(neg, 1) * ops.cast(ops.greater(d_an, d_ap), "float32")  # [a, p, n]
        has_outside = ops.cast(ops.greater(ops.sum(outside, axis=2), 0.0), "float32")  # [a, p]
        nearest_outside = ops.argmin(d_an + (1.0 - outside) * _BIG, axis=2)  # [a, p]
        farthest_neg = ops.argmax(distances * neg - (1.0 - neg) * _BIG, axis=1)  # [a]
        farthest_neg = ops.broadcast_to(ops.expand_dims(farthest_neg, 1), ops.shape(nearest_outside))
        chosen = ops.where(ops.greater(has_outside, 0.0), nearest_outside, farthest_neg)
        valid = pos * ops.expand_dims(_has_any(neg), 1)
        return Triplets(pair_mask=valid, negatives=ops.cast(chosen, "int32"))


@keras.saving.register_keras_serializable(package="itemrec")
class RandomTripletMiner(TripletMiner):
    """One random positive and one random negative per anchor (the original
    experiment's random triplet generator, done inside the batch).

    Args:
        seed: the seed of the miner's own ``keras.random.SeedGenerator`` (``None``: random).

    For batches that already come as explicit (anchor, positive, negative)
    triples, call :class:`itemrec.losses.TripletLoss` on the stacked (B, 3, D)
    embeddings instead: no mining is needed then.
    """

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def mine(self, labels, distances):
        """One triplet per anchor: a uniformly random positive and negative (the distances are not read).

        Args:
            labels: int32 labels (B,).
            distances: float32 (B, B) (only its shape is used).

        Returns:
            :class:`Triplets` in pair form, one kept (a, p) per anchor that has both a positive
            and a negative; the draw advances the miner's seed generator.
        """
        pos, neg = pair_masks(labels)
        scores = keras.random.uniform(ops.shape(distances), minval=0.0, maxval=1.0, dtype="float32",
                                      seed=self.seed_generator)
        pick_pos = ops.argmax(scores * pos - (1.0 - pos), axis=1)
        pick_neg = ops.argmax(scores * neg - (1.0 - neg), axis=1)  # same draw, disjoint sets
        return _one_per_anchor(pos, neg, pick_pos, pick_neg)

    def get_config(self) -> dict:
        return {"seed": self.seed}


@keras.saving.register_keras_serializable(package="itemrec")
class MultiSimilarityMiner(PairMiner):
    """Multi-similarity pair mining (Wang, Han, Huang, Dong & Scott, CVPR 2019, eq. 7-8).

    On a similarity ``S`` (larger is closer), keep a negative pair when
    ``S_ij + ε > min_{k: y_k = y_i, k ≠ i} S_ik`` and a positive pair when
    ``S_ij − ε < max_{k: y_k ≠ y_i} S_ik`` (an anchor without positives keeps no
    negative, one without negatives keeps no positive). Called with a distance
    (``inverted=False``) the same rule runs on ``S = −d``. Same pairs as
    pytorch-metric-learning's ``MultiSimilarityMiner(epsilon)`` on cosine similarity.

    Args:
        epsilon: the margin ``ε`` ≥ 0.

    Raises:
        ValueError: ``epsilon`` < 0.
    """

    def __init__(self, epsilon: float = 0.1) -> None:
        if float(epsilon) < 0:
            raise ValueError(f"epsilon must be >= 0; got {epsilon}")
        self.epsilon = float(epsilon)

    def mine(self, labels, distances):
        """The kept positive and negative pairs (eq. 7-8) on ``S = −distances``.

        Args:
            labels: int32 labels (B,).
            distances: float32 (B, B), smaller is closer (the negated similarity when the
                miner is called with ``inverted=True``).

        Returns:
            :class:`Pairs`: float32 (B, B) masks of the kept positive and negative pairs.
        """
        sim = -distances

        pos, neg = pair_masks(labels)
        hardest_pos = ops.min(ops.where(ops.greater(pos, 0.0), sim, _BIG), axis=1, keepdims=True)
        hardest_neg = ops.max(ops.where(ops.greater(neg, 0.0), sim, -_BIG), axis=1, keepdims=True)
        keep_neg = neg * ops.cast(ops.greater(sim + self.epsilon, hardest_pos), "float32")
        keep_pos = pos * ops.cast(ops.less(sim - self.epsilon, hardest_neg), "float32")
        return Pairs(keep_pos, keep_neg)

    def get_config(self) -> dict:
        return {"epsilon": self.epsilon}


#: short names of itemrec's triplet miners (the old config vocabulary)
MINERS: dict[str, type[TripletMiner]] = {
    "batch_all": BatchAllMiner,
    "batch_hard": BatchHardMiner,
    "semi_hard": SemiHardMiner,
    "random": RandomTripletMiner,
}


def get_miner(miner: Any, kind: type = Miner) -> Any:
    """A miner from a short name (:data:`MINERS`), a serialised dict, an instance, or ``None``.

    Args:
        miner: ``"batch_all"``, ``"batch_hard"``, ``"semi_hard"``, ``"random"``; a
            ``{"class_name": ..., "config": ...}`` dict (any registered miner, including
            one defined outside itemrec); a :class:`Miner`; or ``None`` (returned as is).
        kind: the base class required (:class:`TripletMiner` for triplet losses).

    Returns:
        The miner, or ``None``.

    Raises:
        ValueError: unknown name or class, or a miner of the wrong kind.
        TypeError: any other type.
    """
    if miner is None:
        return None
    miner = resolve(miner, Miner, MINERS, "miner", hint=" or pass a miner object", not_base=TypeError)
    if not isinstance(miner, kind):
        raise ValueError(f"{type(miner).__name__} is not a {kind.__name__}")
    return miner
