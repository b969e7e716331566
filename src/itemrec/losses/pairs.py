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

from itemrec.distances import check_metric, l2_normalize, pairwise_distances
from itemrec.losses.base import MetricLoss, flat_labels, safe_mean

_BIG = 1e9


def log1p_sum_exp(x: Any, mask: Any, axis: int = -1) -> Any:
    """``log(1 + Σ_k mask_k · e^{x_k})`` along ``axis``, stable for large ``x``; 0 where the mask is empty."""
    keep = ops.greater(mask, 0.0)
    masked = ops.where(keep, x, -_BIG)
    top = ops.stop_gradient(ops.maximum(ops.max(masked, axis=axis, keepdims=True), 0.0))
    total = ops.exp(-top) + ops.sum(ops.where(keep, ops.exp(masked - top), 0.0), axis=axis, keepdims=True)
    return ops.squeeze(top + ops.log(total), axis=axis)


def pair_masks(labels: Any) -> tuple[Any, Any]:
    """(B, B) float32 masks of the positive pairs (same label, ``i ≠ j``) and the negative pairs."""
    labels = ops.reshape(labels, (-1,))
    same = ops.cast(ops.equal(ops.expand_dims(labels, 1), ops.expand_dims(labels, 0)), "float32")
    pos = same * (1.0 - ops.eye(ops.shape(labels)[0], dtype="float32"))
    return pos, 1.0 - same


def cosine_similarity(embeddings: Any) -> Any:
    """(B, B) cosine similarity of the rows of ``embeddings`` (B, D), in float32."""
    x = l2_normalize(ops.cast(embeddings, "float32"))
    return ops.matmul(x, ops.transpose(x))


@keras.saving.register_keras_serializable(package="itemrec")
class MultiSimilarityMiner:
    """Multi-similarity pair mining (Wang et al. 2019, eq. 7-8); see the module docstring.

    ``miner(embeddings (B, D), labels (B,)) -> (pos_mask, neg_mask)``, both (B, B)
    float32 with no gradient; :meth:`mine` does the same from a similarity matrix.
    Same pairs as pytorch-metric-learning's ``MultiSimilarityMiner(epsilon)``.

    Raises:
        ValueError: ``epsilon`` < 0.
    """

    def __init__(self, epsilon: float = 0.1) -> None:
        if float(epsilon) < 0:
            raise ValueError(f"epsilon must be >= 0; got {epsilon}")
        self.epsilon = float(epsilon)

    def __call__(self, embeddings: Any, labels: Any) -> tuple[Any, Any]:
        return self.mine(cosine_similarity(embeddings), flat_labels(labels))

    def mine(self, sim: Any, labels: Any) -> tuple[Any, Any]:
        """Masks for the (B, B) cosine similarities ``sim`` and labels (B,)."""
        sim = ops.stop_gradient(ops.cast(sim, "float32"))
        pos, neg = pair_masks(labels)
        hardest_pos = ops.min(ops.where(ops.greater(pos, 0.0), sim, _BIG), axis=1, keepdims=True)
        hardest_neg = ops.max(ops.where(ops.greater(neg, 0.0), sim, -_BIG), axis=1, keepdims=True)
        keep_neg = neg * ops.cast(ops.greater(sim + self.epsilon, hardest_pos), "float32")
        keep_pos = pos * ops.cast(ops.less(sim - self.epsilon, hardest_neg), "float32")
        return keep_pos, keep_neg

    def get_config(self) -> dict:
        return {"epsilon": self.epsilon}

    @classmethod
    def from_config(cls, config: dict) -> "MultiSimilarityMiner":
        return cls(**config)

    def __repr__(self) -> str:
        return f"MultiSimilarityMiner(epsilon={self.epsilon})"


def _get_pair_miner(miner: Any) -> MultiSimilarityMiner | None:
    if miner is None or isinstance(miner, MultiSimilarityMiner):
        return miner
    if isinstance(miner, dict):
        return keras.saving.deserialize_keras_object(miner)
    raise TypeError(f"miner must be a MultiSimilarityMiner, its serialised dict or None; got {type(miner).__name__}")


@keras.saving.register_keras_serializable(package="itemrec")
class MultiSimilarityLoss(MetricLoss):
    """Multi-similarity loss (Wang et al. 2019, eq. 10); see the module docstring.

    Args:
        alpha: positive-pair scale ``α`` (> 0).
        beta: negative-pair scale ``β`` (> 0).
        base: similarity offset ``λ``.
        miner: a :class:`MultiSimilarityMiner` (its serialised dict works too), or
            ``None`` for every pair of the batch.

    ``compute(embeddings (B, D), labels (B,))``. Diagnostics: ``pos_pairs`` and
    ``neg_pairs`` (mined pairs per anchor), ``mean_pos_sim`` and ``mean_neg_sim``
    (mean ``S`` over the mined pairs).

    Raises:
        ValueError: ``alpha`` or ``beta`` not > 0; labels missing.
        TypeError: ``miner`` of another type.
    """

    metric_names = ("pos_pairs", "neg_pairs", "mean_pos_sim", "mean_neg_sim")

    def __init__(
        self,
        alpha: float = 2.0,
        beta: float = 50.0,
        base: float = 0.5,
        miner: Any = MultiSimilarityMiner(0.1),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if float(alpha) <= 0 or float(beta) <= 0:
            raise ValueError(f"alpha and beta must be > 0; got {alpha}, {beta}")
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.base = float(base)
        self.miner = _get_pair_miner(miner)

    def compute(self, embeddings: Any, labels: Any = None, training: bool = False) -> tuple[Any, dict]:
        labels = flat_labels(labels)
        sim = cosine_similarity(embeddings)
        if self.miner is None:
            pos, neg = pair_masks(labels)
        else:
            pos, neg = self.miner.mine(sim, labels)
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
        miner = None if self.miner is None else keras.saving.serialize_keras_object(self.miner)
        config.update(alpha=self.alpha, beta=self.beta, base=self.base, miner=miner)
        return config


@keras.saving.register_keras_serializable(package="itemrec")
class ContrastiveLoss(MetricLoss):
    """Contrastive loss (Hadsell, Chopra & LeCun 2006) over every pair; see the module docstring.

    Args:
        pos_margin: positive pairs cost ``[d − pos_margin]_+``.
        neg_margin: negative pairs cost ``[neg_margin − d]_+``.
        distance: a metric of :func:`itemrec.distances.pairwise_distances` applied
            to the L2-normalised embeddings: ``"l2"`` (default, in [0, 2]),
            ``"squared_l2"``, ``"mse"`` or ``"cosine"`` (``1 − cos``, in [0, 2]).

    ``compute(embeddings (B, D), labels (B,))``. Diagnostics: ``pos_loss`` and
    ``neg_loss`` (the two terms), ``d_pos`` and ``d_neg`` (mean distance over the
    positive / negative pairs).

    Raises:
        ValueError: unknown ``distance``; labels missing.
    """

    metric_names = ("pos_loss", "neg_loss", "d_pos", "d_neg")

    def __init__(self, pos_margin: float = 0.0, neg_margin: float = 1.0, distance: str = "l2", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pos_margin = float(pos_margin)
        self.neg_margin = float(neg_margin)
        self.distance = check_metric(distance)

    def compute(self, embeddings: Any, labels: Any = None, training: bool = False) -> tuple[Any, dict]:
        labels = flat_labels(labels)
        dist = pairwise_distances(l2_normalize(ops.cast(embeddings, "float32")), metric=self.distance)
        pos, neg = pair_masks(labels)
        pos_losses = ops.relu(dist - self.pos_margin) * pos
        neg_losses = ops.relu(self.neg_margin - dist) * neg
        pos_loss = safe_mean(ops.sum(pos_losses), ops.sum(ops.cast(ops.greater(pos_losses, 0.0), "float32")))
        neg_loss = safe_mean(ops.sum(neg_losses), ops.sum(ops.cast(ops.greater(neg_losses, 0.0), "float32")))
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
        config.update(pos_margin=self.pos_margin, neg_margin=self.neg_margin, distance=self.distance)
        return config
