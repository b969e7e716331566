"""Embedding heads on frozen-backbone features: cosine softmax with a scale λ, and a λ sweep, by the one trainer.

* :func:`head_config` is one head as an :class:`itemrec.training.ExperimentConfig`:
  the frozen MobileNetV2 (its pooled features cached by the trainer), an MLP head
  and the cosine softmax (NormFace, Wang, Xiang, Cheng & Yuille, ACM MM 2017):
  with the embedding ``x`` and one anchor ``W_j`` per class both L2-normalised,
  the logits are ``λ · cos θ_j = λ · x̂ · Ŵ_j`` and the loss is their softmax
  cross-entropy, λ the scale (:class:`itemrec.losses.CosineSoftmax`). With
  ``scale=None`` it is the plain softmax baseline: a ``Dense`` classifier on an
  unnormalised embedding; with ``head="none"`` the frozen features themselves.
  The split is the caller's (:func:`write_manifest`, ``split.kind = "given"``).
* :func:`scale_sweep` trains the frozen-features row, the baseline and one cosine
  head per λ with :func:`itemrec.training.run_experiment` (through
  :func:`itemrec.training.runs.run_or_load`: runs keyed by λ and the training
  hash, kept, read back when unchanged) and scores each on the held-out crops by
  Recall@1 and MAP@R (Musgrave, Belongie & Lim, "A Metric Learning Reality
  Check", ECCV 2020) with cosine distance; :func:`plot_sweep` draws them against λ.
* :func:`run_embed_fn` is a run's ``embed_fn`` for :func:`itemrec.scene.cluster_scene`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def write_manifest(parts: dict[str, Any], path: str | os.PathLike) -> Path:
    """One manifest CSV of several :class:`~itemrec.data.records.ImageDataset` parts, the ``split`` column set.

    Args:
        parts: ``{"train": ds, "val": ds, "test": ds}``, all with the same ``class_names``.
        path: the CSV to write (a ``.meta.json`` sidecar goes beside it).

    Returns:
        ``path``, for ``data.name`` of a config with ``split.kind = "given"``.

    Raises:
        ValueError: the parts' class names differ.
    """
    from itemrec.data.records import ImageDataset

    first = next(iter(parts.values()))
    if any(list(p.class_names) != list(first.class_names) for p in parts.values()):
        raise ValueError("the parts of a manifest must share their class names")
    frame = pd.concat([p.frame.assign(split=name) for name, p in parts.items()], ignore_index=True)
    return ImageDataset(frame, list(first.class_names), dict(first.representatives), name="manifest").to_csv(path)


def head_config(
    name: str,
    output_dir: str | os.PathLike,
    manifest: str | os.PathLike,
    *,
    scale: float | None = 16.0,
    head: str = "mlp",
    weights: str | os.PathLike | None = None,
    input_size: int = 128,
    embedding_dim: int = 128,
    hidden: int | None = 512,
    dropout: float = 0.2,
    epochs: int = 10,
    batch_size: int = 128,
    learning_rate: float = 1e-3,
    feature_cache_dir: str | os.PathLike | None = None,
    seed: int = 0,
) -> Any:
    """One head on frozen MobileNetV2 features as an :class:`itemrec.training.ExperimentConfig`.

    Args:
        name: run name (stem; see :func:`itemrec.training.runs.keyed`).
        output_dir: where runs go.
        manifest: a :func:`write_manifest` CSV (train / val / test).
        scale: λ of the cosine softmax; ``None``: the plain softmax baseline.
        head: ``"mlp"`` (Dropout → Dense ``hidden`` ReLU → Dense ``embedding_dim``) or ``"none"``
            (the L2-normalised frozen features, nothing trained).
        weights: MobileNetV2 weights file; ``None``: the local file.
        input_size, embedding_dim, hidden, dropout: the model.
        epochs, batch_size, learning_rate: the frozen phase (a fixed number of epochs: ``monitor="last"``).
        feature_cache_dir: shared frozen-feature cache.
        seed: weights and batches.

    Returns:
        The validated config.

    Raises:
        ConfigError: an invalid value (e.g. ``scale <= 0``).
    """
    from itemrec.training import ExperimentConfig

    untrained = head == "none"
    return ExperimentConfig.from_dict({
        "name": name, "output_dir": str(output_dir), "seed": int(seed),
        "feature_cache_dir": None if feature_cache_dir is None else str(feature_cache_dir),
        "data": {"name": str(manifest)},
        "split": {"kind": "given"},
        "model": {"backbone": "mobilenet_v2", "weights": "local" if weights is None else str(weights),
                  "input_size": int(input_size), "head": head, "embedding_dim": None if untrained else int(embedding_dim),
                  "hidden": hidden, "dropout": 0.0 if untrained else float(dropout),
                  "l2_normalize": untrained or scale is not None},
        "loss": head_loss(scale),
        "train": {"frozen_epochs": 0 if untrained else int(epochs), "finetune_epochs": 0,
                  "frozen_lr": float(learning_rate), "batch_size": int(batch_size), "monitor": "last",
                  "tensorboard": False},
    })


def head_loss(scale: float | None) -> dict:
    """The serialised loss of a head: plain softmax, or normalised softmax at ``scale``.

    Args:
        scale: the cosine head's scale ``s`` (the original's λ), or ``None`` for ``Dense`` + softmax.

    Returns:
        ``{"class_name": "SoftmaxLoss", "config": {...}}``.
    """
    if scale is None:
        return {"class_name": "SoftmaxLoss", "config": {}}
    return {"class_name": "SoftmaxLoss", "config": {"head": {"class_name": "CosineSoftmax",
                                                             "config": {"scale": float(scale)}}}}


def held_out_scores(embeddings: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """``(Recall@1, MAP@R)`` of the held-out set retrieving from itself (query left out), cosine.

    Args:
        embeddings: (N, D) embeddings of the held-out images.
        labels: (N,) integer class labels.

    Returns:
        ``(recall_at_1, map_at_r)``, both in [0, 1] (Musgrave et al. 2020), by
        :func:`itemrec.evaluation.retrieval_report` with cosine distance.
    """
    from itemrec.evaluation import retrieval_report

    rep = retrieval_report(embeddings, labels, ks=(1,), metric="cosine")
    return rep.recall_at_k[1], rep.map_at_r


@dataclass
class HeadRun:
    """One trained head (a run of the trainer) and its held-out scores.

    Attributes:
        name: the row's label (``"softmax (baseline)"``, ``"cosine softmax λ=16"``, ...).
        scale: the cosine softmax's λ, or ``None`` for the baseline and the frozen features.
        run: the :class:`itemrec.training.RunResult`.
        history: each logged metric (``loss``, ``accuracy``, ...) per epoch.
        recall_at_1: held-out Recall@1 (the run's ``metrics["recall_at_1"]``), in [0, 1].
        map_at_r: held-out MAP@R, in [0, 1].
        seconds: the run's training time (NaN when not recorded).
    """

    name: str
    scale: float | None
    run: Any  # itemrec.training.RunResult
    history: dict[str, list[float]]
    recall_at_1: float
    map_at_r: float
    seconds: float

    def embedder(self) -> Any:
        """The run's :class:`itemrec.embedder.ImageEmbedder` (pixels → embedding).

        Returns:
            The embedder loaded from the run's ``embedding.keras`` (a fresh load each call).
        """
        from itemrec.embedder import ImageEmbedder

        return ImageEmbedder.load(self.run.run_dir / "embedding.keras")


@dataclass
class SweepResult:
    """The runs of :func:`scale_sweep` (baseline first) and the frozen features' own scores.

    Attributes:
        runs: the trained heads, the baseline first (when trained), then one per λ in order.
        frozen_recall_at_1: held-out Recall@1 of the frozen backbone features.
        frozen_map_at_r: held-out MAP@R of the frozen backbone features.
        frozen: the frozen-features run, or ``None``.
    """

    runs: list[HeadRun]
    frozen_recall_at_1: float
    frozen_map_at_r: float
    frozen: HeadRun | None = None

    def table(self) -> pd.DataFrame:
        """One row per head, the frozen features first.

        Returns:
            A frame with columns ``head``, ``scale`` (NaN without one), ``recall_at_1``,
            ``map_at_r``, ``final_train_accuracy`` (the last epoch's training accuracy, NaN
            when not logged) and ``seconds``.
        """
        rows = [dict(head="frozen features (no head)", scale=np.nan, recall_at_1=self.frozen_recall_at_1,
                     map_at_r=self.frozen_map_at_r, final_train_accuracy=np.nan, seconds=0.0)]
        for r in self.runs:
            rows.append(dict(head=r.name, scale=np.nan if r.scale is None else r.scale, recall_at_1=r.recall_at_1,
                             map_at_r=r.map_at_r, final_train_accuracy=r.history.get("accuracy", [np.nan])[-1],
                             seconds=r.seconds))
        return pd.DataFrame(rows)

    def best(self, metric: str = "map_at_r", cosine_only: bool = True) -> HeadRun:
        """The run with the highest ``metric`` (among the cosine heads when ``cosine_only``).

        Args:
            metric: a score attribute of :class:`HeadRun`: ``"map_at_r"`` or ``"recall_at_1"``.
            cosine_only: leave out the runs without a scale (the baseline).

        Returns:
            The best :class:`HeadRun` (the first one on a tie).

        Raises:
            ValueError: no run to choose from.
            AttributeError: ``metric`` is not an attribute of :class:`HeadRun`.
        """
        runs = [r for r in self.runs if r.scale is not None] if cosine_only else self.runs
        if not runs:
            raise ValueError("no run to choose from")
        return max(runs, key=lambda r: getattr(r, metric))


def _head_run(name: str, scale: float | None, config: Any, progress: bool) -> HeadRun:
    from itemrec.training.runs import run_or_load

    res = run_or_load(config, progress=progress)
    hist = {c: res.history[c].astype(float).tolist() for c in res.history.columns if c not in ("epoch", "phase")}
    return HeadRun(name, scale, res, hist, float(res.metrics["recall_at_1"]), float(res.metrics["map_at_r"]),
                   float(res.training.get("seconds", float("nan"))))


def scale_sweep(
    base: Any,
    scales: Sequence[float] = (4.0, 8.0, 16.0, 32.0, 64.0),
    baseline: bool = True,
    progress: bool = False,
) -> SweepResult:
    """The frozen features, the plain softmax (``baseline``) and a cosine softmax per λ in ``scales``.

    Args:
        base: a :func:`head_config`; every run is it with only the loss (and for the frozen row the
            head) changed, named by :func:`itemrec.training.runs.keyed`.
        scales: the λ values.
        baseline: train the plain softmax baseline too.
        progress: progress bars.

    Returns:
        The :class:`SweepResult`; scores are the trainer's held-out Recall@1 and MAP@R (cosine).

    Raises:
        ValueError: nothing to sweep.
    """
    from itemrec.training.runs import keyed

    settings: list[float | None] = ([None] if baseline else []) + [float(s) for s in scales]
    if not settings:
        raise ValueError("nothing to sweep: give scales or baseline=True")
    it = settings
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(settings, desc="heads", unit="head")
    runs = []
    for s in it:
        config = base.with_overrides({"loss": head_loss(s), "model.l2_normalize": s is not None})
        name = "softmax (baseline)" if s is None else f"cosine softmax λ={s:g}"
        runs.append(_head_run(name, s, keyed(config, ("loss.config.head.config.scale",) if s else ()), progress))
    frozen_cfg = base.with_overrides({"model.head": "none", "model.embedding_dim": None, "model.dropout": 0.0,
                                      "model.l2_normalize": True, "train.frozen_epochs": 0,
                                      "name": f"{base.name}_frozen"})
    frozen = _head_run("frozen features (no head)", None, keyed(frozen_cfg), progress)
    return SweepResult(runs, frozen.recall_at_1, frozen.map_at_r, frozen)


def plot_sweep(result: SweepResult, path: str | os.PathLike | None = None):
    """Recall@1 and MAP@R against λ (log axis), the baseline and frozen features as horizontal lines.

    Args:
        result: a :func:`scale_sweep` result.
        path: an image file to save the figure to (folders created), or ``None``.

    Returns:
        The matplotlib figure (two panels, λ on a log₂ axis).
    """
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


def run_embed_fn(run: HeadRun) -> Callable[[np.ndarray], np.ndarray]:
    """``uint8 (N, S, S, 3) -> (N, D)``: the run's whole model (frozen backbone, then its head), an ``embed_fn``.

    Args:
        run: a trained :class:`HeadRun`.

    Returns:
        The bound :meth:`itemrec.embedder.ImageEmbedder.embed_arrays` of the run's embedder:
        uint8 RGB images (resized to the model's input when needed) to (N, D) float32.
    """

    return run.embedder().embed_arrays
