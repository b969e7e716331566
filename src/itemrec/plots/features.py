"""2-D views of deep features: PCA or t-SNE projection, class colours and class centres.

PCA (scikit-learn) is linear and fast; t-SNE (van der Maaten & Hinton, JMLR 2008)
keeps neighbourhoods but not global distances. Features that are already 2-D
(the center-loss paper's toy setting, Wen et al., ECCV 2016) are drawn as they are.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from ._common import class_colours, maybe_save, new_figure


def project_2d(features: np.ndarray, method: str = "pca", seed: int = 0) -> np.ndarray:
    """(n, 2) coordinates of ``features`` (n, d): as they are for d = 2, else PCA or t-SNE.

    t-SNE uses perplexity ``min(30, max(2, (n − 1) / 3))``, a PCA initialisation and one
    thread (OpenMP threads busy-wait on a loaded machine).

    Args:
        features: (n ≥ 2, d ≥ 2) array.
        method: ``"pca"`` (default) or ``"tsne"``; ignored when d = 2.
        seed: the random state of PCA / t-SNE.

    Returns:
        (n, 2) float64 coordinates (units are those of the projection, not of the features
        for t-SNE).

    Raises:
        ValueError: ``features`` is not 2-D, has fewer than 2 rows or fewer than 2 columns,
            or ``method`` is unknown.
    """
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"features must be (n ≥ 2, dim); got shape {x.shape}")
    if x.shape[1] == 2:
        return x
    if x.shape[1] < 2:
        raise ValueError(f"features need at least 2 dimensions; got {x.shape[1]}")
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=2, random_state=seed).fit_transform(x)
    if method == "tsne":
        from sklearn.manifold import TSNE
        from threadpoolctl import threadpool_limits

        perplexity = float(min(30.0, max(2.0, (len(x) - 1) / 3)))
        # OpenMP threads busy-wait on a loaded machine: one thread was ~9x faster here (500 points)
        with threadpool_limits(1):
            return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)
    raise ValueError(f"method must be 'pca' or 'tsne'; got {method!r}")


def draw_features(ax, xy: np.ndarray, labels: np.ndarray, class_names: Sequence[str] | None = None, centres: bool = True):
    """Scatter ``xy`` on ``ax`` coloured by class, with class means as black-edged stars.

    A legend is drawn for at most 20 classes.

    Args:
        ax: a matplotlib ``Axes``.
        xy: (n, 2) coordinates.
        labels: (n,) class labels; with ``class_names`` they must be ints indexing it.
        class_names: the legend name of each class id (default: the label itself).
        centres: mark each class's mean with a star.
    """
    labels = np.asarray(labels)
    classes = np.unique(labels)
    colours = class_colours(len(classes))
    for colour, c in zip(colours, classes):
        pts = xy[labels == c]
        name = class_names[int(c)] if class_names is not None else str(c)
        ax.scatter(pts[:, 0], pts[:, 1], s=6, color=colour, alpha=0.6, label=name)
        if centres:
            m = pts.mean(axis=0)
            ax.scatter([m[0]], [m[1]], s=140, marker="*", color=colour, edgecolors="k", linewidths=1.0)
    if len(classes) <= 20:
        ax.legend(fontsize=7, markerscale=2, loc="best")


def plot_features_2d(
    features: np.ndarray,
    labels: np.ndarray,
    method: str = "pca",
    class_names: Sequence[str] | None = None,
    centres: bool = True,
    title: str | None = None,
    seed: int = 0,
    path: str | os.PathLike | None = None,
):
    """Deep features in 2-D (PCA or t-SNE), coloured by class, class centres starred.

    Args:
        features: (n ≥ 2, d ≥ 2) features; 2-D features are drawn as they are.
        labels: (n,) class labels.
        method: ``"pca"`` or ``"tsne"`` (see :func:`project_2d`).
        class_names: the legend name of each class id.
        centres: mark each class's mean with a star.
        title: the axis title (default names the projection).
        seed: the projection's random state.
        path: where to save the figure too; parents are created.

    Returns:
        The ``matplotlib.figure.Figure``.

    Raises:
        ValueError: ``labels`` and ``features`` differ in length, or from
            :func:`project_2d` (bad shape, unknown method).
    """
    labels = np.asarray(labels)
    if len(labels) != len(features):
        raise ValueError(f"{len(features)} features but {len(labels)} labels")
    xy = project_2d(features, method, seed)
    fig = new_figure(6.0, 5.4)
    ax = fig.add_subplot(1, 1, 1)
    draw_features(ax, xy, labels, class_names, centres)
    ax.set_title(title or f"deep features ({method if np.shape(features)[1] != 2 else '2-D'})")
    return maybe_save(fig, path)
