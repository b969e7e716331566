"""Embedding heads on frozen-backbone features: cosine softmax with a scale λ, and a λ sweep.

* :func:`train_head` trains an embedding head on frozen-backbone features with
  the cosine softmax (NormFace, Wang, Xiang, Cheng & Yuille, ACM MM 2017):
  with the embedding ``x`` and one anchor ``W_j`` per class both
  L2-normalised, the logits are ``λ · cos θ_j = λ · x̂ · Ŵ_j`` and the loss is
  their softmax cross-entropy, λ the scale (:class:`itemrec.losses.CosineSoftmax`).
  With ``scale=None`` it trains the plain softmax baseline instead: a
  ``Dense`` classifier on an unnormalised embedding.
* :func:`scale_sweep` trains the baseline and one cosine head per λ and
  scores each on held-out data by Recall@1 and MAP@R (Musgrave, Belongie &
  Lim, "A Metric Learning Reality Check", ECCV 2020) with cosine distance
  (:func:`held_out_scores`); :func:`plot_sweep` draws them against λ.
* :func:`head_embed_fn` chains a frozen feature extractor and a trained head
  into the ``embed_fn`` of :func:`itemrec.scene.cluster_scene`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd


@dataclass
class HeadRun:
    """One trained head and its held-out scores."""

    name: str
    scale: float | None
    head: Any
    history: dict[str, list[float]]
    recall_at_1: float
    map_at_r: float
    seconds: float


def train_head(
    features: np.ndarray,
    labels: np.ndarray,
    scale: float | None = 16.0,
    embedding_dim: int = 128,
    hidden: int | None = 512,
    dropout: float = 0.2,
    epochs: int = 10,
    batch_size: int = 128,
    learning_rate: float = 1e-3,
    seed: int = 0,
) -> tuple[Any, dict[str, list[float]]]:
    """An embedding head trained on frozen features: ``(head model, history)``.

    ``scale=λ``: the cosine softmax ``softmax(λ cos θ)`` on the L2-normalised
    embedding; ``scale=None``: the plain softmax baseline (``Dense`` logits on
    the unnormalised embedding). Labels must be ``0..n-1``.
    """
    import keras

    from itemrec.losses import CosineSoftmax, SoftmaxLoss
    from itemrec.models import MetricLearningModel, build_head

    x = np.asarray(features, dtype=np.float32)
    y = np.asarray(labels, dtype=np.int64)
    if x.ndim != 2 or len(x) != len(y):
        raise ValueError(f"features must be (N, D) with N = len(labels); got {x.shape} and {y.shape}")
    n_classes = int(y.max()) + 1
    if set(np.unique(y).tolist()) != set(range(n_classes)):
        raise ValueError(f"labels must be 0..n-1 with every class present; got {np.unique(y).tolist()[:20]}")
    if scale is not None and scale <= 0:
        raise ValueError(f"scale must be > 0 or None; got {scale}")
    keras.utils.set_random_seed(seed)
    head = build_head(x.shape[1], embedding_dim, dropout, hidden, l2_normalize=scale is not None)
    loss = SoftmaxLoss(n_classes) if scale is None else SoftmaxLoss(head=CosineSoftmax(n_classes, scale=float(scale)))
    model = MetricLearningModel(head, loss)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate))
    hist = model.fit(x, y, epochs=int(epochs), batch_size=int(batch_size), shuffle=True, verbose=0)
    return head, {k: [float(v) for v in vals] for k, vals in hist.history.items()}


def embed_features(head: Any, features: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """The head's embeddings of frozen features, float32 (N, D)."""
    return np.asarray(head.predict(np.asarray(features, np.float32), batch_size=batch_size, verbose=0), dtype=np.float32)


def held_out_scores(embeddings: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """``(Recall@1, MAP@R)`` of the held-out set retrieving from itself (query left out), cosine."""
    from itemrec.evaluation import retrieval_report

    rep = retrieval_report(embeddings, labels, ks=(1,), metric="cosine")
    return rep.recall_at_k[1], rep.map_at_r


@dataclass
class SweepResult:
    """The runs of :func:`scale_sweep` (baseline first) and the frozen features' own scores."""

    runs: list[HeadRun]
    frozen_recall_at_1: float
    frozen_map_at_r: float

    def table(self) -> pd.DataFrame:
        rows = [dict(head="frozen features (no head)", scale=np.nan, recall_at_1=self.frozen_recall_at_1,
                     map_at_r=self.frozen_map_at_r, final_train_accuracy=np.nan, seconds=0.0)]
        for r in self.runs:
            rows.append(dict(head=r.name, scale=np.nan if r.scale is None else r.scale, recall_at_1=r.recall_at_1,
                             map_at_r=r.map_at_r, final_train_accuracy=r.history.get("accuracy", [np.nan])[-1],
                             seconds=r.seconds))
        return pd.DataFrame(rows)

    def best(self, metric: str = "map_at_r", cosine_only: bool = True) -> HeadRun:
        """The run with the highest ``metric`` (among the cosine heads when ``cosine_only``)."""
        runs = [r for r in self.runs if r.scale is not None] if cosine_only else self.runs
        if not runs:
            raise ValueError("no run to choose from")
        return max(runs, key=lambda r: getattr(r, metric))


def scale_sweep(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    scales: Sequence[float] = (4.0, 8.0, 16.0, 32.0, 64.0),
    baseline: bool = True,
    progress: bool = False,
    **train_kwargs: Any,
) -> SweepResult:
    """Plain softmax (``baseline``) and a cosine softmax per λ in ``scales``, scored on the test part.

    Every head is trained by :func:`train_head` with the same seed and
    ``train_kwargs``; scores are :func:`held_out_scores` of its test embeddings.
    """
    settings: list[float | None] = ([None] if baseline else []) + [float(s) for s in scales]
    if not settings:
        raise ValueError("nothing to sweep: give scales or baseline=True")
    it = settings
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(settings, desc="heads", unit="head")
    runs = []
    for s in it:
        t0 = time.perf_counter()
        head, hist = train_head(train_x, train_y, scale=s, **train_kwargs)
        r1, mapr = held_out_scores(embed_features(head, test_x), test_y)
        name = "softmax (baseline)" if s is None else f"cosine softmax λ={s:g}"
        runs.append(HeadRun(name, s, head, hist, r1, mapr, time.perf_counter() - t0))
    fr1, fmap = held_out_scores(test_x, test_y)
    return SweepResult(runs, fr1, fmap)


def plot_sweep(result: SweepResult, path: str | os.PathLike | None = None):
    """Recall@1 and MAP@R against λ (log axis), the baseline and frozen features as horizontal lines."""
    from itemrec.plots._common import maybe_save, new_figure

    cos = sorted((r for r in result.runs if r.scale is not None), key=lambda r: r.scale)
    base = [r for r in result.runs if r.scale is None]
    fig = new_figure(9.0, 3.6)
    for i, (metric, label) in enumerate((("recall_at_1", "Recall@1"), ("map_at_r", "MAP@R"))):
        ax = fig.add_subplot(1, 2, i + 1)
        ax.plot([r.scale for r in cos], [getattr(r, metric) for r in cos], "o-", label="cosine softmax")
        if base:
            ax.axhline(getattr(base[0], metric), color="C1", ls="--", label="softmax baseline")
        ax.axhline(getattr(result, f"frozen_{metric}"), color="0.5", ls=":", label="frozen features")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("scale λ")
        ax.set_ylabel(label)
        ax.set_title(f"held-out {label}")
        ax.grid(alpha=0.3)
        if i == 0:
            ax.legend(fontsize=8)
    return maybe_save(fig, path)


def head_embed_fn(extractor: Any, head: Any, batch_size: int = 64) -> Callable[[np.ndarray], np.ndarray]:
    """``uint8 (N, S, S, 3) -> (N, D)``: frozen backbone features, then the trained head (an ``embed_fn``)."""
    from itemrec.training.features import features_of

    def embed(images: np.ndarray) -> np.ndarray:
        return embed_features(head, features_of(extractor, np.asarray(images), batch_size))

    return embed
