"""Training curves, CMC curves, VAL/FAR and ROC curves."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np

from ._common import maybe_save, new_figure


def _history_frame(history):
    import pandas as pd

    if hasattr(history, "history") and isinstance(history.history, Mapping):
        history = history.history
    if isinstance(history, pd.DataFrame):
        frame = history
    elif isinstance(history, Mapping):
        lengths = {k: len(v) for k, v in history.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"history series have different lengths: {lengths}")
        frame = pd.DataFrame({k: list(v) for k, v in history.items()})
    else:
        raise TypeError("history must be a Keras History, a dict of per-epoch lists, or a DataFrame")
    if frame.empty:
        raise ValueError("history is empty (no epochs)")
    return frame


def plot_history(
    history,
    panels: Sequence[Sequence[str]] | None = None,
    title: str | None = None,
    path: str | os.PathLike | None = None,
):
    """Per-epoch curves, one panel per group of series, side by side.

    Args:
        history: a Keras ``History``, a dict of per-epoch lists (all the same length), or a
            DataFrame with one row per epoch; epochs are drawn 1-based.
        panels: the series of each panel, e.g. ``[["softmax_loss"], ["center_loss"]]``
            to put softmax and center loss side by side. By default each series gets a
            panel shared with its ``val_`` twin.
        title: a title over all panels.
        path: where to save the figure too (format by extension); parents are created.

    Returns:
        The ``matplotlib.figure.Figure`` (4.2 inches wide per panel).

    Raises:
        ValueError: the series have different lengths, there are no epochs, or ``panels``
            names a series the history lacks.
        TypeError: ``history`` is none of the accepted types.
    """
    frame = _history_frame(history)
    if panels is None:
        bases = list(dict.fromkeys(str(c)[4:] if str(c).startswith("val_") else str(c) for c in frame.columns))
        panels = [[c for c in (b, f"val_{b}") if c in frame.columns] for b in bases]
    missing = [c for p in panels for c in p if c not in frame.columns]
    if missing:
        raise ValueError(f"history has no series {missing}; it has {list(frame.columns)}")
    fig = new_figure(4.2 * len(panels), 3.4)
    epochs = np.arange(1, len(frame) + 1)
    for i, cols in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        for c in cols:
            ax.plot(epochs, frame[c].to_numpy(dtype=float), marker="o", ms=3, label=c)
        ax.set_xlabel("epoch")
        ax.set_title(", ".join(cols))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return maybe_save(fig, path)


def plot_cmc(
    results: Mapping[str, object],
    title: str = "CMC",
    path: str | os.PathLike | None = None,
):
    """CMC curves of several models on one axis, with their 95% interval bands.

    Args:
        results: model name to a :class:`itemrec.evaluation.CMCResult` (its ``ranks``,
            ``mean`` identification rate in [0, 1] and ``ci_low``/``ci_high``); the first
            result's ranks label the x axis.
        title: the axis title.
        path: where to save the figure too; parents are created.

    Returns:
        The ``matplotlib.figure.Figure``; each legend entry gives the model's rank-1 rate.

    Raises:
        ValueError: ``results`` is empty.
    """
    if not results:
        raise ValueError("results is empty: pass {model name: CMCResult}")
    fig = new_figure(6.4, 4.4)
    ax = fig.add_subplot(1, 1, 1)
    for name, res in results.items():
        line = ax.plot(res.ranks, res.mean, marker="o", ms=3, label=f"{name} (rank-1 {res.mean[0]:.3f})")[0]
        ax.fill_between(res.ranks, res.ci_low, res.ci_high, color=line.get_color(), alpha=0.2)
    ax.set_xlabel("rank")
    ax.set_ylabel("identification rate")
    ax.set_ylim(0, 1.02)
    ax.set_xticks(np.asarray(next(iter(results.values())).ranks))
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return maybe_save(fig, path)


def plot_val_far(curve, threshold=None, title: str = "VAL and FAR", path: str | os.PathLike | None = None):
    """VAL(d) and FAR(d) against the distance threshold d, with the chosen threshold marked.

    VAL is the fraction of same-identity pairs accepted (distance ≤ d), FAR the fraction of
    different-identity pairs accepted (Schroff et al., FaceNet, CVPR 2015).

    Args:
        curve: a :class:`itemrec.evaluation.ValFarCurve` (``thresholds``, ``val``, ``far``).
        threshold: a :class:`~itemrec.evaluation.Threshold` (its ``value``) or a float
            distance; ``None`` marks nothing.
        title: the axis title.
        path: where to save the figure too; parents are created.

    Returns:
        The ``matplotlib.figure.Figure``.
    """
    fig = new_figure(6.4, 4.2)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(curve.thresholds, curve.val, label="VAL (same pairs accepted)")
    ax.plot(curve.thresholds, curve.far, label="FAR (different pairs accepted)")
    if threshold is not None:
        value = float(getattr(threshold, "value", threshold))
        ax.axvline(value, color="k", ls="--", lw=1, label=f"threshold {value:.3f}")
    ax.set_xlabel("distance threshold d")
    ax.set_ylabel("rate")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return maybe_save(fig, path)


def plot_roc(curves, threshold=None, title: str = "ROC", log_far: bool = False, path: str | os.PathLike | None = None):
    """ROC (FAR, VAL) of one curve or of ``{name: ValFarCurve}``; the threshold's (FAR, VAL) marked.

    Args:
        curves: a :class:`~itemrec.evaluation.ValFarCurve` or a mapping of names to them;
            each legend entry gives the curve's AUC.
        threshold: a :class:`~itemrec.evaluation.VerificationReport` (its test ``far``/``val``
            are marked) or a :class:`~itemrec.evaluation.Threshold` (its validation
            ``far_val``/``val_val``); ``None`` marks nothing.
        title: the axis title.
        log_far: a logarithmic FAR axis (for the low-FAR end); otherwise the chance
            diagonal is drawn.
        path: where to save the figure too; parents are created.

    Returns:
        The ``matplotlib.figure.Figure``.

    Raises:
        TypeError: ``threshold`` has neither ``far``/``val`` nor ``far_val``/``val_val``.
    """
    if not isinstance(curves, Mapping):
        curves = {"model": curves}
    fig = new_figure(5.2, 5.0)
    ax = fig.add_subplot(1, 1, 1)
    for name, c in curves.items():
        ax.plot(c.far, c.val, label=f"{name} (AUC {c.auc:.3f})")
    if threshold is not None:
        far = getattr(threshold, "far", getattr(threshold, "far_val", None))
        val = getattr(threshold, "val", getattr(threshold, "val_val", None))
        if far is None or val is None:
            raise TypeError("threshold must be a Threshold or a VerificationReport")
        ax.plot([far], [val], "k*", ms=12, label=f"threshold: FAR {far:.3g}, VAL {val:.3f}")
    if log_far:
        ax.set_xscale("log")
    else:
        ax.plot([0, 1], [0, 1], color="0.7", lw=0.8, ls=":")
    ax.set_xlabel("FAR")
    ax.set_ylabel("VAL")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return maybe_save(fig, path)
