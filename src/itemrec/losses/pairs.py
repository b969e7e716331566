"""Pair-based losses: multi-similarity (with its miner) and contrastive.

Both see every ordered pair ``(i, j)``, ``i ≠ j``, of a batch of embeddings
(B, D) with integer labels (B,): positive when ``y_i = y_j``, negative otherwise.

* :class:`MultiSimilarityMiner` (Wang, Han, Huang, Dong & Scott, "Multi-Similarity
  Loss with General Pair Weighting for Deep Metric Learning", CVPR 2019, eq. 7-8):
  on the cosine similarity ``S`` of the L2-normalised embeddings, keep a negative
  pair when ``S_ij + ε > min_{k: y_k = y_i, k ≠ i} S_ik`` and a positive pair when
  ``S_ij − ε < max_{k: y_k ≠ y_i} S_ik`` (an anchor without positives keeps no
  negative, one without negatives keeps no positive).
* :class:`MultiSimilarityLoss` (same paper, eq. 10), per anchor ``i``::

      L_i = 1/α · log(1 + Σ_{k ∈ P_i} e^{−α (S_ik − λ)}) + 1/β · log(1 + Σ_{k ∈ N_i} e^{β (S_ik − λ)})

  with ``P_i``, ``N_i`` the mined positive / negative pairs of ``i`` (every pair
  with ``miner=None``), and ``L = mean_i L_i`` over *all* B anchors (an anchor with
  no mined pair adds 0 but still counts), as pytorch-metric-learning's
  ``MultiSimilarityLoss`` (``MeanReducer`` over per-anchor losses).
* :class:`ContrastiveLoss` (Hadsell, Chopra & LeCun, CVPR 2006), with ``d`` the
  distance of the L2-normalised embeddings: ``[d_ij − m_pos]_+`` for positive
  pairs, ``[m_neg − d_ij]_+`` for negative pairs. The margins are *not* squared
  (pytorch-metric-learning's default; the paper uses ``½ d²`` and
  ``½ [m − d]_+²``). The loss is the mean over the positive pairs with a loss
  > 0 plus the mean over the negative pairs with a loss > 0 (each 0 when there
  is none): pytorch-metric-learning's ``AvgNonZeroReducer``.

Known difference with pytorch-metric-learning: its pair losses return 0 when the
batch (after mining) holds at most one positive *and* at most one negative
ordered pair; we compute the loss of those pairs as the formula says.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from itemrec.distances import CosineSimilarity, Distance, get_distance, l2_normalize
from itemrec.losses.base import MetricLoss, check_range, flat_labels, safe_mean
from itemrec.mining import MultiSimilarityMiner, PairMiner, get_miner, pair_masks
from itemrec.reducers import Reducer, get_reducer
from itemrec.serialization import serialize

__all__ = ["MultiSimilarityLoss", "ContrastiveLoss", "MultiSimilarityMiner", "cosine_similarity", "log1p_sum_exp"]

_BIG = 1e9


def log1p_sum_exp(x: Any, mask: Any, axis: int = -1) -> Any:
    """``log(1 + Σ_k mask_k · e^{x_k})`` along ``axis``, stable for large ``x``; 0 where the mask is empty.

    The log-sum-exp trick with ``top = max(0, max_k x_k)`` over the kept entries (no gradient
    through ``top``): ``top + log(e^{−top} + Σ_k e^{x_k − top})``. The inner terms of the
    multi-similarity and proxy-anchor losses.

    Args:
        x: float32 tensor of exponents.
        mask: float tensor of ``x``'s shape; entries > 0 are summed, the others ignored.
        axis: the axis summed over (removed from the result).

    Returns:
        ``x``'s shape without ``axis``: ``softplus(logsumexp(x[mask]))``, exactly 0 where the
        mask keeps nothing.
    """
    keep = ops.greater(mask, 0.0)
    masked = ops.where(keep, x, -_BIG)
    top = ops.stop_gradient(ops.maximum(ops.max(masked, axis=axis, keepdims=True), 0.0))
    total = ops.exp(-top) + ops.sum(ops.where(keep, ops.exp(masked - top), 0.0), axis=axis, keepdims=True)
    return ops.squeeze(top + ops.log(total), axis=axis)


def cosine_similarity(embeddings: Any) -> Any:
    """(B, B) cosine similarity of the rows of ``embeddings`` (B, D), in float32.

    Args:
        embeddings: (B, D).

    Returns:
        (B, B) float32 tensor, values in [−1, 1].
    """
    return CosineSimilarity().pairwise(embeddings)


@keras.saving.register_keras_serializable(package="itemrec")
class MultiSimilarityLoss(MetricLoss):
    """Multi-similarity loss (Wang et al. 2019, eq. 10); see the module docstring.

    Args:
        alpha: positive-pair scale ``α`` (> 0).
        beta: negative-pair scale ``β`` (> 0).
        base: similarity offset ``λ``, in [−1, 1].
        miner: a :class:`itemrec.mining.PairMiner` such as
            :class:`~itemrec.mining.MultiSimilarityMiner` (its serialised dict works
            too), or ``None`` for every pair of the batch. It is called on the cosine
            similarity (``inverted=True``).

    ``compute(embeddings (B, D), labels (B,))``. Diagnostics: ``pos_pairs`` and
    ``neg_pairs`` (mined pairs per anchor), ``mean_pos_sim`` and ``mean_neg_sim``
    (mean ``S`` over the mined pairs).

    Raises:
        ValueError: ``alpha`` or ``beta`` not > 0; ``base`` outside [−1, 1]; an unknown miner
            name, or a miner that is not a pair miner; labels missing (in :meth:`compute`).
        TypeError: ``miner`` of another type.
    """

    metric_names = ("pos_pairs", "neg_pairs", "mean_pos_sim", "mean_neg_sim")

    def __init__(
        self,
        alpha: float = 2.0,
        beta: float = 50.0,
        base: float = 0.5,
        miner: Any = "default",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if float(alpha) <= 0 or float(beta) <= 0:
            raise ValueError(f"alpha and beta must be > 0; got {alpha}, {beta}")
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.base = check_range("base", base, -1.0, 1.0)
        self.miner = get_miner(MultiSimilarityMiner(0.1) if miner == "default" else miner, PairMiner)

    def compute(self, embeddings: Any, labels: Any = None, training: bool = False) -> tuple[Any, dict]:
        """``mean_i L_i`` over all B anchors (eq. 10), on the pairs the miner keeps.

        Args:
            embeddings: (B, D) embeddings (L2-normalised here for the cosine similarity).
            labels: (B,) integer labels.
            training: unused (the loss is the same in both modes).

        Returns:
            ``(loss, {"pos_pairs", "neg_pairs", "mean_pos_sim", "mean_neg_sim"})``, float32
            scalars; the loss is 0 for a batch with no mined pair.

        Raises:
            ValueError: ``labels`` is ``None``.
        """
        labels = flat_labels(labels)
        sim = cosine_similarity(embeddings)
        if self.miner is None:
            pos, neg = pair_masks(labels)
        else:
            pos, neg = self.miner(labels, sim, inverted=True)
        pos_term = log1p_sum_exp(-self.alpha * (sim - self.base), pos) / self.alpha
        neg_term = log1p_sum_exp(self.beta * (sim - self.base), neg) / self.beta
        loss = ops.mean(pos_term + neg_term)
        n_pos, n_neg = ops.sum(pos), ops.sum(neg)
        batch = ops.cast(ops.shape(sim)[0], "float32")
        frozen = ops.stop_gradient(sim)
        metrics = {
            "pos_pairs": n_pos / batch,
            "neg_pairs": n_neg / batch,
            "mean_pos_sim": safe_mean(ops.sum(frozen * pos), n_pos),
            "mean_neg_sim": safe_mean(ops.sum(frozen * neg), n_neg),
        }
        return loss, metrics

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(alpha=self.alpha, beta=self.beta, base=self.base, miner=serialize(self.miner))
        return config


@keras.saving.register_keras_serializable(package="itemrec")
class ContrastiveLoss(MetricLoss):
    """Contrastive loss (Hadsell, Chopra & LeCun 2006) over every pair; see the module docstring.

    Args:
        pos_margin: positive pairs cost ``[d − pos_margin]_+``.
        neg_margin: negative pairs cost ``[neg_margin − d]_+``.
        distance: a :class:`itemrec.distances.Distance` (or its dict or name) applied
            to the L2-normalised embeddings: ``"l2"`` (default, in [0, 2]),
            ``"squared_l2"``, ``"mse"`` or ``"cosine"`` (``1 − cos``, in [0, 2]); not a
            similarity.
        reducer: how each of the two terms is averaged over its pairs:
            ``"avg_non_zero"`` (default, pytorch-metric-learning's) or ``"mean"``.

    ``compute(embeddings (B, D), labels (B,))``. Diagnostics: ``pos_loss`` and
    ``neg_loss`` (the two terms), ``d_pos`` and ``d_neg`` (mean distance over the
    positive / negative pairs).

    Raises:
        ValueError: a margin < 0; unknown ``distance`` or ``reducer``, an inverted (similarity)
            distance; labels missing (in :meth:`compute`).
        TypeError: ``distance`` or ``reducer`` of an unsupported type.
    """

    metric_names = ("pos_loss", "neg_loss", "d_pos", "d_neg")

    def __init__(self, pos_margin: float = 0.0, neg_margin: float = 1.0, distance: str | dict | Distance = "l2",
                 reducer: str | dict | Reducer = "avg_non_zero", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pos_margin = check_range("pos_margin", pos_margin)
        self.neg_margin = check_range("neg_margin", neg_margin)
        self.distance = get_distance(distance)
        if self.distance.inverted:
            raise ValueError(f"ContrastiveLoss needs a distance (smaller is closer); {self.distance!r} is a similarity")
        self.reducer = get_reducer(reducer)

    def compute(self, embeddings: Any, labels: Any = None, training: bool = False) -> tuple[Any, dict]:
        """Positive term + negative term, each reduced over its pairs by :attr:`reducer`.

        Args:
            embeddings: (B, D) embeddings (L2-normalised before the distance).
            labels: (B,) integer labels.
            training: unused (the loss is the same in both modes).

        Returns:
            ``(loss, {"pos_loss", "neg_loss", "d_pos", "d_neg"})``, float32 scalars.

        Raises:
            ValueError: ``labels`` is ``None``.
        """
        labels = flat_labels(labels)
        dist = self.distance.pairwise(l2_normalize(ops.cast(embeddings, "float32")))

        pos, neg = pair_masks(labels)
        pos_loss = self.reducer(ops.relu(dist - self.pos_margin), pos)
        neg_loss = self.reducer(ops.relu(self.neg_margin - dist), neg)
        frozen = ops.stop_gradient(dist)
        metrics = {
            "pos_loss": pos_loss,
            "neg_loss": neg_loss,
            "d_pos": safe_mean(ops.sum(frozen * pos), ops.sum(pos)),
            "d_neg": safe_mean(ops.sum(frozen * neg), ops.sum(neg)),
        }
        return pos_loss + neg_loss, metrics

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(pos_margin=self.pos_margin, neg_margin=self.neg_margin, distance=serialize(self.distance),
                      reducer=serialize(self.reducer))
        return config
