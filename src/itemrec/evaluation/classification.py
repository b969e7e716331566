"""Closed-set classification metrics (scikit-learn underneath).

* accuracy = fraction of samples with ``ŷ = y``;
* top-k accuracy = fraction whose true class is among the k highest scores;
* per class c: precision ``TP/(TP+FP)``, recall ``TP/(TP+FN)``, F1 their harmonic
  mean; *macro* averages them over classes, *weighted* by each class's support.
"""

from __future__ import annotations

from dataclasses import dataclass

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class ClassificationReport:
    """Accuracy, top-k accuracy, averaged P/R/F1, per-class table and confusion matrix.

    Made by :func:`classification_report`. Rates lie in ``[0, 1]``; a class with no predicted
    (or no true) sample gets precision (recall) 0 rather than NaN (``zero_division=0``).

    Attributes:
        accuracy: fraction of samples with ``ŷ = y``.
        top_k_accuracy: ``{k: fraction whose true class is among the k highest scores}``;
            empty when the predictions were 1-D ids rather than scores.
        precision_macro: per-class precision averaged over the C classes (unweighted).
        recall_macro: per-class recall averaged over the classes.
        f1_macro: per-class F1 averaged over the classes.
        precision_weighted: per-class precision averaged with each class's support as weight.
        recall_weighted: support-weighted recall (equal to ``accuracy`` when every
            prediction is one of the C classes).
        f1_weighted: support-weighted F1.
        per_class: a ``pandas.DataFrame`` with one row per class and columns ``class_name``,
            ``precision``, ``recall``, ``f1`` and ``support`` (true samples of the class).
        confusion: (C, C) int counts, row = true class, column = predicted class.
        class_names: the C class names, index = class id.
    """

    accuracy: float
    top_k_accuracy: dict[int, float]
    precision_macro: float
    recall_macro: float
    f1_macro: float
    precision_weighted: float
    recall_weighted: float
    f1_weighted: float
    per_class: pd.DataFrame
    confusion: np.ndarray
    class_names: list[str]


def _labels(y, name: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"{name} must be 1-D; got shape {y.shape}")
    return y.astype(np.int64)


def top_k_accuracy(y_true: np.ndarray, scores: np.ndarray, k: int) -> float:
    """Fraction of rows whose true class is among the ``k`` largest scores (ties: lower index first).

    Class scores, not neighbour distances: no neighbour search is involved.

    Args:
        y_true: (n,) class ids in ``0..C-1``.
        scores: (n, C) class scores or probabilities.
        k: in ``1..C``.

    Returns:
        The accuracy, a float.

    Raises:
        ValueError: bad shapes, classes outside ``0..C-1``, or ``k`` outside ``1..C``.
    """
    y = _labels(y_true, "y_true")
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2 or len(s) != len(y):
        raise ValueError(f"scores must be (n_samples, n_classes) with n={len(y)}; got {s.shape}")
    if np.any((y < 0) | (y >= s.shape[1])):
        raise ValueError(f"y_true holds classes outside 0..{s.shape[1] - 1}")
    if not 1 <= k <= s.shape[1]:
        raise ValueError(f"k must lie in 1..{s.shape[1]}; got {k}")
    top = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return float((top == y[:, None]).any(axis=1).mean())


def classification_report(
    y_true: np.ndarray,
    y_pred_or_scores: np.ndarray,
    class_names: list[str] | None = None,
    ks: tuple[int, ...] = (1, 5),
) -> ClassificationReport:
    """Report for integer predictions (1-D) or class scores/probabilities (n × C, top-k too).

    Args:
        y_true: (n,) class ids.
        y_pred_or_scores: (n,) predicted ids, or (n, C) scores (argmax predicts; top-k reported).
        class_names: names of classes ``0..C-1`` (default: the ids as strings).
        ks: the k of top-k accuracy (scores only; k > C left out).

    Returns:
        :class:`ClassificationReport` (scikit-learn's precision/recall/F1, zero division → 0).

    Raises:
        ValueError: lengths differ, non-1-D labels, or too few class names.
    """
    import pandas as pd
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    y = _labels(y_true, "y_true")
    p = np.asarray(y_pred_or_scores)
    top_k: dict[int, float] = {}
    if p.ndim == 2:
        n_classes = p.shape[1]
        top_k = {k: top_k_accuracy(y, p, k) for k in ks if k <= n_classes}
        pred = np.argmax(p, axis=1)
    else:
        pred = _labels(p, "y_pred")
        n_classes = int(max(y.max(initial=0), pred.max(initial=0))) + 1
    if len(pred) != len(y):
        raise ValueError(f"y_true has {len(y)} samples, predictions {len(pred)}")
    if class_names is None:
        class_names = [str(i) for i in range(n_classes)]
    elif len(class_names) < n_classes:
        raise ValueError(f"class_names has {len(class_names)} names; labels need {n_classes}")
    n_classes = len(class_names)
    labels = np.arange(n_classes)
    prec, rec, f1, support = precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
    macro = precision_recall_fscore_support(y, pred, labels=labels, average="macro", zero_division=0)
    weighted = precision_recall_fscore_support(y, pred, labels=labels, average="weighted", zero_division=0)
    per_class = pd.DataFrame(
        {"class_name": class_names, "precision": prec, "recall": rec, "f1": f1, "support": support}
    )
    return ClassificationReport(
        float(np.mean(pred == y)),
        top_k,
        float(macro[0]),
        float(macro[1]),
        float(macro[2]),
        float(weighted[0]),
        float(weighted[1]),
        float(weighted[2]),
        per_class,
        confusion_matrix(y, pred, labels=labels),
        list(class_names),
    )
