"""Query/match grids and confusion-matrix heatmaps."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from ._common import load_image, maybe_save, new_figure

GREEN, RED = (0.1, 0.7, 0.1), (0.85, 0.1, 0.1)


def plot_query_matches(
    query_images: Sequence,
    query_labels: np.ndarray,
    gallery_images: Sequence,
    gallery_labels: np.ndarray,
    neighbors: np.ndarray,
    distances: np.ndarray | None = None,
    class_names: Sequence[str] | None = None,
    thumb: int = 96,
    path: str | os.PathLike | None = None,
):
    """One row per query: the query, then its top-k gallery matches framed green (right) or red (wrong).

    Args:
        query_images: n images, each an array (H×W, H×W×1/3/4; uint8 or float in [0, 1])
            or a file path.
        query_labels: (n,) labels of the queries.
        gallery_images: the gallery's images, arrays or paths.
        gallery_labels: (G,) labels of the gallery images.
        neighbors: (n, k) gallery indices per query, nearest first (e.g. from
            :func:`itemrec.evaluation.knn`); ``-1`` marks a match that was dropped
            (beyond a distance threshold): its cell stays empty.
        distances: (n, k) distances printed under each match; ``None`` prints none.
        class_names: the name of each class id (labels must be ints then).
        thumb: the side in pixels each image is resized to (default 96).
        path: where to save the figure too; parents are created.

    Returns:
        The ``matplotlib.figure.Figure`` (n rows × k + 1 columns).

    Raises:
        ValueError: ``neighbors`` is not (n, k) with n the number of queries and labels,
            the gallery labels and images differ in number, or an index lies outside the
            gallery (and is not -1).
        FileNotFoundError: an image path does not exist.
    """
    nb = np.asarray(neighbors)
    ql, gl = np.asarray(query_labels), np.asarray(gallery_labels)
    if nb.ndim != 2 or len(nb) != len(query_images) or len(ql) != len(nb):
        raise ValueError(f"neighbors must be (n_queries={len(query_images)}, k); got {nb.shape}")
    if len(gl) != len(gallery_images):
        raise ValueError(f"{len(gallery_images)} gallery images but {len(gl)} gallery labels")
    if nb.size and (nb.min() < -1 or nb.max() >= len(gallery_images)):
        raise ValueError(f"neighbors index outside the gallery (0..{len(gallery_images) - 1}, or -1 for none)")
    n, k = nb.shape
    name = (lambda c: class_names[int(c)]) if class_names is not None else str
    fig = new_figure(1.6 * (k + 1), 1.8 * n)
    for i in range(n):
        ax = fig.add_subplot(n, k + 1, i * (k + 1) + 1)
        ax.imshow(load_image(query_images[i], thumb))
        ax.set_title(f"query\n{name(ql[i])}", fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
        for j in range(k):
            g = int(nb[i, j])
            ax = fig.add_subplot(n, k + 1, i * (k + 1) + j + 2)
            if g < 0:
                ax.axis("off")
                continue
            ax.imshow(load_image(gallery_images[g], thumb))
            colour = GREEN if gl[g] == ql[i] else RED
            for spine in ax.spines.values():
                spine.set_edgecolor(colour)
                spine.set_linewidth(4)
            label = name(gl[g]) + (f"\n{distances[i, j]:.3f}" if distances is not None else "")
            ax.set_title(label, fontsize=7, color=colour)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    return maybe_save(fig, path)


def plot_confusion_matrix(
    confusion: np.ndarray,
    class_names: Sequence[str] | None = None,
    normalize: bool = False,
    annotate: bool | None = None,
    title: str = "confusion matrix",
    path: str | os.PathLike | None = None,
):
    """Heatmap of a confusion matrix (rows: true class, columns: predicted).

    Args:
        confusion: (C, C) counts.
        class_names: C tick labels (drawn for C ≤ 50); default the class indices.
        normalize: divide each row by its total (recall per class on the diagonal; an
            empty row stays 0), colour scale [0, 1].
        annotate: write each cell's value (default: for C ≤ 20).
        title: the axis title.
        path: where to save the figure too; parents are created.

    Returns:
        The ``matplotlib.figure.Figure``.

    Raises:
        ValueError: ``confusion`` is not square, or ``class_names`` has the wrong length.
    """
    cm = np.asarray(confusion, dtype=np.float64)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"confusion must be a square matrix; got shape {cm.shape}")
    if class_names is not None and len(class_names) != len(cm):
        raise ValueError(f"{len(class_names)} class names for a {len(cm)}-class matrix")
    if normalize:
        totals = cm.sum(axis=1, keepdims=True)
        cm = np.divide(cm, totals, out=np.zeros_like(cm), where=totals > 0)
    n = len(cm)
    size = min(14.0, 3.0 + 0.4 * n)
    fig = new_figure(size + 1, size)
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(cm, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    fig.colorbar(im, ax=ax, fraction=0.046)
    names = list(class_names) if class_names is not None else [str(i) for i in range(n)]
    if n <= 50:
        ax.set_xticks(range(n), names, rotation=90, fontsize=7)
        ax.set_yticks(range(n), names, fontsize=7)
    if annotate if annotate is not None else n <= 20:
        top = cm.max(initial=0)
        for i in range(n):
            for j in range(n):
                text = f"{cm[i, j]:.2f}" if normalize else f"{int(cm[i, j])}"
                ax.text(j, i, text, ha="center", va="center", fontsize=7,
                        color="white" if cm[i, j] > top / 2 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    return maybe_save(fig, path)
