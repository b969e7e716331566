"""Metric-learning losses as Keras layers (``keras.ops`` only, any backend).

Every loss is a :class:`MetricLoss` layer: ``loss.compute(embeddings, labels,
training) -> (scalar loss, {name: scalar diagnostic})``. Losses with weights
(classifier heads, centres) own them, so wrapping an embedding model and a loss
in :class:`itemrec.models.MetricLearningModel` trains both with ``model.fit``.

* :class:`TripletLoss` with a miner from :mod:`itemrec.mining` (batch-all,
  batch-hard, semi-hard, random) or on stacked (B, 3, D) triples;
* :class:`SoftmaxLoss`: cross-entropy on a classifier head: ``Dense`` (the
  baseline) or a cosine head :class:`CosineSoftmax`, :class:`ArcFace`,
  :class:`CosFace`;
* :class:`CenterLoss`: softmax cross-entropy + λ·centre loss (Wen et al. 2016);
* :class:`MultiSimilarityLoss` (Wang et al. 2019) with its
  :class:`MultiSimilarityMiner`, and :class:`ContrastiveLoss` (Hadsell et al.
  2006): pair losses on the L2-normalised embeddings;
* :class:`ProxyAnchorLoss` (Kim et al. 2020): one trainable proxy per class,
  which :meth:`~ProxyAnchorLoss.set_proxies` can initialise (as
  :meth:`CosineSoftmax.set_anchors` does for the cosine heads).
"""

from itemrec.losses.base import MetricLoss
from itemrec.losses.classification import CenterLoss, SoftmaxLoss
from itemrec.losses.cosine import ArcFace, CosFace, CosineSoftmax
from itemrec.losses.pairs import ContrastiveLoss, MultiSimilarityLoss, MultiSimilarityMiner
from itemrec.losses.proxies import ProxyAnchorLoss
from itemrec.losses.triplet import TripletLoss

__all__ = [
    "MetricLoss",
    "TripletLoss",
    "SoftmaxLoss",
    "CenterLoss",
    "CosineSoftmax",
    "ArcFace",
    "CosFace",
    "MultiSimilarityLoss",
    "MultiSimilarityMiner",
    "ContrastiveLoss",
    "ProxyAnchorLoss",
]
