"""Figures for training and evaluation (matplotlib; every function returns a Figure).

Each plotting function takes an optional ``path``: when given, the figure is also
saved there (PNG/PDF/SVG by extension). Figures are built with
:class:`matplotlib.figure.Figure` directly, not pyplot, so they work headless
(Agg) and hold no global state. Submodules load on first use:
:mod:`.curves` (history, CMC, VAL/FAR, ROC), :mod:`.features` (2-D deep features),
:mod:`.monitor` (the Keras :class:`DeepFeatureMonitor`), :mod:`.matches` (query
grids, confusion heatmap), :mod:`.projector` (TensorBoard Embedding Projector files).
"""

from __future__ import annotations

from itemrec._lazy import lazy_attributes

_WHERE = {
    "plot_history": "curves",
    "plot_cmc": "curves",
    "plot_val_far": "curves",
    "plot_roc": "curves",
    "plot_features_2d": "features",
    "project_2d": "features",
    "DeepFeatureMonitor": "monitor",
    "plot_query_matches": "matches",
    "plot_confusion_matrix": "matches",
    "export_projector": "projector",
    "ProjectorExport": "projector",
}

__all__ = sorted(_WHERE)


__getattr__, __dir__ = lazy_attributes(__name__, _WHERE, globals())
