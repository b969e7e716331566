"""Model selection on validation *classes*: open-set scores of classes held out of training.

Choosing epochs and settings on more photos of the training classes rewards
fitting those classes, which is not what an open-set embedding is for
(Musgrave, Belongie & Lim, "A Metric Learning Reality Check", ECCV 2020). The
open split therefore holds some seen classes out of training
(:class:`itemrec.training.config.SplitConfig` ``val_classes_fraction``), and
:class:`OpenSetSelection` scores the model on them after every epoch:

* ``valcls_cmc1``/``valcls_cmc5``: CMC@1/5 of every validation-class photo
  against a gallery of one image per validation class (its catalogue image;
  for datasets without one, the class's first image, which then is no query),
  averaged over photos;
* ``valcls_map_at_r``: MAP@R among the validation-class photos (leave-one-out);
* ``valcls_score``: the mean of ``valcls_cmc1`` and ``valcls_map_at_r``, what
  ``train.monitor = "auto"`` checkpoints and early-stops on.

Before the first epoch it scores the starting weights and offers them to the
phase's :class:`itemrec.training.callbacks.BestCheckpoint` as epoch ``-1``, so
a phase that does not help keeps its starting point (for the first phase of a
linear head starting at the identity: the frozen features) and says so.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

SCORE_NAMES = ("valcls_cmc1", "valcls_cmc5", "valcls_map_at_r", "valcls_score")


@dataclass
class ClassGallery:
    """Validation-class queries and their one-per-class gallery.

    Attributes:
        gallery_paths: one image path per class (C,).
        gallery_labels: (C,) their class labels.
        query_paths: the paths of the dataset's images that are queries (N,).
        query_labels: (N,) their class labels.
        source: ``"catalogue"`` (the gallery is each class's catalogue image, and every
            image is a query) or ``"first image"`` (each class's first image, which then is
            no query).
    """

    gallery_paths: list[str]
    gallery_labels: np.ndarray
    query_paths: list[str]
    query_labels: np.ndarray
    source: str


def class_gallery(ds: Any) -> ClassGallery:
    """The catalogue image of each class of ``ds`` if every class has one, else its first image.

    Args:
        ds: an :class:`itemrec.data.ImageDataset` of the validation classes (``labels``,
            ``paths``, ``representatives``).

    Returns:
        The :class:`ClassGallery`.

    Raises:
        ValueError: without catalogue images, a class has a single image, so nothing would
            be left to query.
    """
    classes = np.unique(ds.labels)
    if all(int(c) in ds.representatives for c in classes):
        paths, labels = ds.representative_arrays(classes)
        return ClassGallery([str(p) for p in paths], np.asarray(labels), [str(p) for p in ds.paths],
                            np.asarray(ds.labels), "catalogue")
    first = np.array([np.flatnonzero(ds.labels == c)[0] for c in classes])
    query = np.setdiff1d(np.arange(len(ds)), first)
    lonely = np.setdiff1d(classes, ds.labels[query])
    if len(lonely):
        raise ValueError(f"validation classes {lonely[:10].tolist()} have one image: nothing is left to query")
    return ClassGallery([str(ds.paths[i]) for i in first], ds.labels[first], [str(ds.paths[i]) for i in query],
                        ds.labels[query], "first image")


def open_set_scores(query_emb: np.ndarray, query_labels: np.ndarray, gallery_emb: np.ndarray,
                    gallery_labels: np.ndarray, metric: str = "cosine") -> dict[str, float]:
    """The ``valcls_*`` scores (see the module docstring) of embeddings; all in [0, 1].

    CMC over the one-per-class gallery (ranks 1 to ``min(5, C)``, so ``valcls_cmc5`` is the
    CMC at rank ``min(5, C)``) and MAP@R among the queries (Musgrave et al. 2020).

    Args:
        query_emb: (N, D) query embeddings.
        query_labels: (N,) their labels.
        gallery_emb: (C, D) one embedding per class.
        gallery_labels: (C,) their labels.
        metric: ``"cosine"``, ``"squared_l2"`` or ``"l2"``.

    Returns:
        ``{"valcls_cmc1", "valcls_cmc5", "valcls_map_at_r", "valcls_score"}``, the score being
        the mean of CMC@1 and MAP@R.

    Raises:
        ValueError: bad shapes or an unknown metric (from :mod:`itemrec.evaluation`).
    """
    from itemrec import evaluation as ev

    curve = ev.cmc(query_emb, query_labels, gallery_emb, gallery_labels, max_rank=min(5, len(gallery_labels)),
                   metric=metric)
    map_r = ev.map_at_r(query_emb, query_labels, metric=metric)
    cmc1 = curve.at(1)
    return {"valcls_cmc1": cmc1, "valcls_cmc5": float(curve.mean[-1]), "valcls_map_at_r": map_r,
            "valcls_score": 0.5 * (cmc1 + map_r)}


class OpenSetSelection(keras.callbacks.Callback):
    """Adds the ``valcls_*`` scores to each epoch's logs; offers the starting weights as epoch -1.

    The model given by Keras (an :class:`itemrec.models.MetricLearningModel`)
    returns embeddings when called. ``checkpoint`` is set by
    :func:`itemrec.training.callbacks.phase_callbacks`; the starting weights are scored (and
    written to ``log_path``) only when there is a checkpoint and it has not saved yet, so a
    resumed phase does not score its start again.

    Args:
        queries: model inputs of the validation-class queries (features or images), (N, ...).
        query_labels: (N,) class labels.
        gallery: model inputs of one image per validation class, (C, ...).
        gallery_labels: (C,) labels.
        log_path: JSON file that records the starting weights' scores.
        metric: ``"cosine"``, ``"squared_l2"`` or ``"l2"``.
        batch_size: inference batch size.

    Raises:
        ValueError: no queries, or queries/gallery and their labels differ in length.
    """

    def __init__(self, queries: np.ndarray, query_labels: np.ndarray, gallery: np.ndarray, gallery_labels: np.ndarray,
                 log_path: str | os.PathLike, metric: str = "cosine", batch_size: int = 128) -> None:
        super().__init__()
        if len(queries) != len(query_labels) or len(gallery) != len(gallery_labels) or not len(queries):
            raise ValueError("OpenSetSelection needs matching, non-empty queries/labels and gallery/labels")
        self.queries, self.query_labels = queries, np.asarray(query_labels)
        self.gallery, self.gallery_labels = gallery, np.asarray(gallery_labels)
        self.log_path = Path(log_path)
        self.metric, self.batch_size = metric, int(batch_size)
        self.checkpoint: Any = None

    def _embed(self, x: np.ndarray) -> np.ndarray:
        out = [keras.ops.convert_to_numpy(self.model(np.asarray(x[i:i + self.batch_size], np.float32), training=False))
               for i in range(0, len(x), self.batch_size)]
        return np.concatenate(out).astype(np.float32)

    def scores(self) -> dict[str, float]:
        """The ``valcls_*`` scores of the model as it is now (inference mode, in batches).

        Returns:
            The dict of :func:`open_set_scores`.
        """
        return open_set_scores(self._embed(self.queries), self.query_labels, self._embed(self.gallery),
                               self.gallery_labels, self.metric)

    def on_train_begin(self, logs: dict | None = None) -> None:
        if self.checkpoint is None or self.checkpoint.has_saved():
            return  # no checkpoint to offer to, or a resumed phase that has scored its start already
        start = self.scores()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path.write_text(json.dumps({"before_training": start}, indent=1))
        if self.checkpoint.monitor in start:
            self.checkpoint.consider(start[self.checkpoint.monitor], -1)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is not None:
            logs.update(self.scores())
