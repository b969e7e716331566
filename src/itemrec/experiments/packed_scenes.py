"""Packed-scenes crops: clean the corrupted labels, split without leaking duplicates, sweep λ.

The packed-scenes training crops (github.com/BCuan/embedding-clustering) are
corrupted on purpose: many files are byte-identical copies (within a class and
across classes), two class ids hold the same product (duplicated classes) and
one class holds crops of several others (a mixed class); see
:func:`itemrec.data.audit.audit`.

* :func:`clean_crops` merges each duplicated class into one label, drops the
  mixed classes and every content (SHA-1 of the bytes) still found under two
  labels, and relabels densely.
* :func:`duplicate_safe_split` splits by **content group**: all copies of one
  image fall on the same side (scikit-learn's ``StratifiedGroupKFold``, so the
  class proportions are kept as far as the groups allow). A plain per-file
  split would put copies of a test image in training, and an exact copy is
  its own nearest neighbour: Recall@1 would measure memory, not the embedding.
  :func:`leaked` counts the test files whose content is also in training.
* :func:`dedupe` keeps one file per content (for scoring, so that a query's
  copy is not its trivially found match).
* :func:`backbone_features`: frozen-backbone features of image files (cached).
  The heads and the λ sweep, each a run of the one trainer on a manifest of the
  split (:func:`write_manifest`), are in :mod:`.heads` (re-exported here so the
  notebook has one namespace).
* :func:`read_hand_labels` and :func:`score_against_hand_labels` score a shelf
  clustering against the hand labels.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from itemrec.data.records import ImageDataset
from itemrec.experiments.heads import (  # noqa: F401  (re-exported for the notebook)
    HeadRun,
    SweepResult,
    head_config,
    held_out_scores,
    plot_sweep,
    run_embed_fn,
    scale_sweep,
    write_manifest,
)

CONTENT = "content"  # the column :func:`clean_crops` adds: SHA-1 of the file's bytes


# ----------------------------------------------------------------------------- cleaning
def content_hashes(paths: Sequence[str | os.PathLike], workers: int = 8) -> np.ndarray:
    """SHA-1 hex digest of each file's bytes (threads for the I/O).

    Args:
        paths: the files.
        workers: reading threads.

    Returns:
        (N,) object array of 40-character hex digests, in input order.

    Raises:
        OSError: a file cannot be read; the message names it.
    """

    def sha1(p: str) -> str:
        h = hashlib.sha1()
        try:
            with open(p, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
        except OSError as exc:
            raise OSError(f"cannot read {p} to hash it: {exc}") from exc
        return h.hexdigest()

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return np.array(list(pool.map(sha1, [os.fspath(p) for p in paths])), dtype=object)


@dataclass
class CleanedCrops:
    """What :func:`clean_crops` did; ``dataset`` has the extra column ``content`` (SHA-1).

    Attributes:
        dataset: the cleaned crops, labels dense ``0..n-1`` in class-name order.
        merged: merged class -> the class it was merged into.
        dropped_classes: the mixed classes dropped.
        n_ambiguous: files dropped because their content still had two labels.
        n_files_in: files before cleaning.
        report: the :class:`itemrec.data.audit.AuditReport` the cleaning followed.
    """

    dataset: ImageDataset
    merged: dict[str, str]  # merged class -> the class it was merged into
    dropped_classes: list[str]
    n_ambiguous: int  # files dropped because their content still had two labels
    n_files_in: int
    report: Any = field(default=None, repr=False)

    def summary(self) -> str:
        """One line saying what changed.

        Returns:
            Files and distinct contents before and after, the merges, the dropped classes and the
            dropped ambiguous files.
        """
        ds = self.dataset
        n_distinct = ds.frame[CONTENT].nunique()
        merged = ", ".join(f"{a} -> {b}" for a, b in self.merged.items()) or "none"
        return (
            f"{self.n_files_in} files -> {len(ds)} files ({n_distinct} distinct contents) in {ds.n_classes} classes; "
            f"merged: {merged}; dropped classes: {', '.join(self.dropped_classes) or 'none'}; "
            f"dropped {self.n_ambiguous} files whose content had two labels"
        )


def clean_crops(ds: ImageDataset, report: Any = None, drop_mixed: bool = True, hashes: np.ndarray | None = None) -> CleanedCrops:
    """Merge duplicated classes, drop mixed classes and ambiguous contents, relabel ``0..n-1``.

    Duplicated pairs are merged into the alphabetically first class name (chains a=b=c
    merge into one). Copies are kept: use :func:`dedupe` where they must go.

    Args:
        ds: the crops.
        report: an :class:`itemrec.data.audit.AuditReport` of ``ds`` (made here when
            ``None``, without the readability check).
        drop_mixed: drop the report's mixed classes.
        hashes: the files' SHA-1 (computed when ``None``).

    Returns:
        The :class:`CleanedCrops`; the dataset is named ``<name>/clean``.

    Raises:
        ValueError: ``hashes`` has another length than ``ds``.
        OSError: a file cannot be read for hashing.
    """
    from itemrec.data.audit import audit

    if report is None:
        report = audit(ds, check=None)
    if hashes is None:
        hashes = content_hashes(ds.paths)
    hashes = np.asarray(hashes, dtype=object)
    if len(hashes) != len(ds):
        raise ValueError(f"{len(hashes)} hashes for {len(ds)} files")
    parent = {c: c for c in ds.class_names}

    def find(c: str) -> str:
        while parent[c] != c:
            c = parent[c]
        return c

    for a, b in report.duplicated_classes:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    merged = {c: find(c) for c in ds.class_names if find(c) != c}
    dropped = sorted(report.mixed_classes) if drop_mixed else []
    frame = ds.frame.copy()
    frame[CONTENT] = hashes
    frame["class_name"] = frame["class_name"].map(find)
    frame = frame[~frame["class_name"].isin(dropped)]
    n_labels = frame.groupby(CONTENT)["class_name"].nunique()
    ambiguous = frame[CONTENT].map(n_labels) > 1
    frame = frame[~ambiguous]
    names = sorted(set(frame["class_name"]))
    frame["label"] = frame["class_name"].map({c: i for i, c in enumerate(names)}).astype(np.int64)
    out = ImageDataset(frame.reset_index(drop=True), names, name=f"{ds.name}/clean")
    return CleanedCrops(out, merged, dropped, int(ambiguous.sum()), len(ds), report)


def _content(ds: ImageDataset) -> np.ndarray:
    if CONTENT not in ds.frame.columns:
        raise ValueError(f"{ds.name} has no {CONTENT!r} column; make it with clean_crops() or content_hashes()")
    return ds.frame[CONTENT].to_numpy(dtype=object)


def dedupe(ds: ImageDataset) -> ImageDataset:
    """One file per content (the first), e.g. to score without trivial exact-copy matches.

    Args:
        ds: a dataset with the ``content`` column (:func:`clean_crops`).

    Returns:
        The subset, named ``<name>/dedupe``.

    Raises:
        ValueError: ``ds`` has no ``content`` column.
    """
    keep = ~pd.Series(_content(ds)).duplicated().to_numpy()
    return ds.subset(keep, f"{ds.name}/dedupe")


def cap_per_class(ds: ImageDataset, max_per_class: int | None, seed: int = 0) -> ImageDataset:
    """At most ``max_per_class`` files of each class, drawn with ``numpy.random.default_rng(seed)``; order kept.

    Args:
        ds: the dataset.
        max_per_class: files kept per class (≥ 1), or ``None`` to keep all.
        seed: the seed of the draw.

    Returns:
        The subset (``ds`` itself for ``None``).

    Raises:
        ValueError: ``max_per_class`` < 1.
    """
    if max_per_class is None:
        return ds
    if max_per_class < 1:
        raise ValueError(f"max_per_class must be >= 1 or None; got {max_per_class}")
    rng = np.random.default_rng(seed)
    keep = np.zeros(len(ds), dtype=bool)
    for c in np.unique(ds.labels):
        idx = np.flatnonzero(ds.labels == c)
        keep[idx if len(idx) <= max_per_class else rng.choice(idx, max_per_class, replace=False)] = True
    return ds.subset(keep, ds.name)


# ----------------------------------------------------------------------------- splits
def duplicate_safe_split(
    ds: ImageDataset, test_fraction: float = 0.3, seed: int = 0, groups: np.ndarray | None = None
) -> tuple[ImageDataset, ImageDataset]:
    """``(train, test)`` with every content group (identical files) wholly on one side.

    The test part is one fold of ``StratifiedGroupKFold(n_splits=round(1 / test_fraction),
    shuffle=True, random_state=seed)``, so it holds about ``test_fraction`` of the files
    with the class proportions kept as far as whole groups allow.

    Args:
        ds: the dataset.
        test_fraction: the test part's share, in (0, 0.5].
        seed: the fold shuffle's seed.
        groups: (N,) group of each file (default: the ``content`` column).

    Returns:
        ``(train, test)``, named ``<name>/train`` and ``<name>/test``.

    Raises:
        ValueError: ``test_fraction`` outside (0, 0.5], ``groups`` of the wrong length or
            missing ``content`` column, or fewer groups than folds.
        AssertionError: a group crossed the split (cannot happen with ``StratifiedGroupKFold``;
            a guard).
    """
    from sklearn.model_selection import StratifiedGroupKFold

    if not 0.0 < test_fraction <= 0.5:
        raise ValueError(f"test_fraction must lie in (0, 0.5]; got {test_fraction}")
    groups = _content(ds) if groups is None else np.asarray(groups, dtype=object)
    if len(groups) != len(ds):
        raise ValueError(f"{len(groups)} groups for {len(ds)} files")
    n_splits = max(2, int(round(1.0 / test_fraction)))
    codes = pd.factorize(pd.Series(groups))[0]
    if len(np.unique(codes)) < n_splits:
        raise ValueError(f"{ds.name}: {len(np.unique(codes))} content groups are too few for {n_splits} folds")
    folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    _, test_idx = next(folds.split(np.zeros(len(ds)), ds.labels, codes))
    mask = np.zeros(len(ds), dtype=bool)
    mask[test_idx] = True
    train, test = ds.subset(~mask, f"{ds.name}/train"), ds.subset(mask, f"{ds.name}/test")
    if leaked(train, test, groups[~mask], groups[mask]):
        raise AssertionError("a content group crossed the split")  # StratifiedGroupKFold guarantees it
    return train, test


def per_file_split(ds: ImageDataset, test_fraction: float = 0.3, seed: int = 0) -> tuple[ImageDataset, ImageDataset]:
    """The naive split, file by file (stratified): copies of one image can land on both sides.

    Args:
        ds: the dataset.
        test_fraction: the test part's share, in (0, 1).
        seed: scikit-learn's random state.

    Returns:
        ``(train, test)``.

    Raises:
        ValueError: a class too small to stratify (from scikit-learn).
    """
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(ds))
    _, test_idx = train_test_split(idx, test_size=test_fraction, stratify=ds.labels, random_state=seed)
    mask = np.zeros(len(ds), dtype=bool)
    mask[test_idx] = True
    return ds.subset(~mask, f"{ds.name}/train"), ds.subset(mask, f"{ds.name}/test")


def leaked(train: ImageDataset, test: ImageDataset, train_groups: np.ndarray | None = None, test_groups: np.ndarray | None = None) -> int:
    """Number of ``test`` files whose content (group) also occurs in ``train``.

    Args:
        train: the training part.
        test: the test part.
        train_groups: groups of the training files (default: its ``content`` column).
        test_groups: groups of the test files (default: its ``content`` column).

    Returns:
        The count (0 for a duplicate-safe split).

    Raises:
        ValueError: a default group column is missing.
    """
    tg = set((_content(train) if train_groups is None else np.asarray(train_groups, dtype=object)).tolist())
    qg = _content(test) if test_groups is None else np.asarray(test_groups, dtype=object)
    return int(sum(g in tg for g in qg.tolist()))


# ----------------------------------------------------------------------------- features
def backbone_features(
    paths: Sequence[str],
    input_size: int = 128,
    weights: str | os.PathLike | None = None,
    backbone: str = "mobilenet_v2",
    cache_dir: str | os.PathLike | None = None,
    extractor: Any = None,
    batch_size: int = 64,
    progress: bool = False,
) -> tuple[np.ndarray, Any]:
    """Frozen-backbone GAP features of image files, ``(features (N, D), extractor model)``.

    With ``cache_dir`` the features go through :class:`itemrec.training.features.FeatureCache`
    (keyed on the files, weights and settings).

    Args:
        paths: N image files.
        input_size: the side S in pixels images are letterboxed to.
        weights: the backbone's local weights (default: the MobileNetV2 file,
            :func:`itemrec.settings.local_weights`).
        backbone: a key of :data:`itemrec.models.backbones.BACKBONES`.
        cache_dir: the feature cache folder (``None``: no cache).
        extractor: a model from an earlier call to reuse (it must be that backbone with
            those weights at ``input_size``).
        batch_size: inference batch size.
        progress: progress bars.

    Returns:
        ``(features, extractor)``: (N, D) float32 and the model used.

    Raises:
        ValueError: ``extractor`` takes another input size, or some files are unreadable.
        DataNotFoundError: no ``weights`` given and the default file is absent.
        FileNotFoundError: an image or the weights file cannot be accessed.
    """
    from itemrec import settings
    from itemrec.models.embedding import build_feature_extractor
    from itemrec.training.features import FeatureCache, compute_features

    weights = str(weights if weights is not None else settings.local_weights())
    if extractor is None:
        extractor = build_feature_extractor(backbone, int(input_size), weights)
    elif tuple(extractor.input_shape[1:3]) != (int(input_size), int(input_size)):
        raise ValueError(f"extractor takes {extractor.input_shape[1:3]} images, not input_size {input_size}")
    paths = [str(p) for p in paths]
    if cache_dir is not None:
        got = FeatureCache(cache_dir).get_or_compute(
            extractor, paths, backbone, weights, int(input_size), batch_size=batch_size, progress=progress
        )
    else:
        got = compute_features(extractor, paths, int(input_size), batch_size=batch_size, progress=progress)
    if got.skipped:
        raise ValueError(f"{len(got.skipped)} unreadable images, e.g. {got.skipped[0][0]}: {got.skipped[0][1]}")
    return got.features, extractor


# ----------------------------------------------------------------------------- shelf
def read_hand_labels(path: str | os.PathLike) -> dict[str, str]:
    """``{box id: product}`` from a hand-label file ``{"labels": {id: product}, ...}``.

    Args:
        path: the JSON file.

    Returns:
        Box id -> product name, both as strings.

    Raises:
        ValueError: the file is not JSON, or has no non-empty ``labels`` object.
        FileNotFoundError: the file does not exist.
    """
    import json
    from pathlib import Path

    path = Path(path)
    doc = json.loads(path.read_text())
    labels = doc.get("labels") if isinstance(doc, dict) else None
    if not isinstance(labels, dict) or not labels:
        raise ValueError(f"{path}: expected an object with a non-empty 'labels' mapping of box id -> product")
    return {str(k): str(v) for k, v in labels.items()}


def score_against_hand_labels(box_ids: Sequence[str], clusters: np.ndarray, hand_labels: dict[str, str]) -> Any:
    """:func:`itemrec.clustering.clustering_scores` (ARI, NMI, purity; noise as singletons) of a shelf clustering.

    Args:
        box_ids: the N boxes, in cluster-label order.
        clusters: (N,) cluster id per box, ``-1`` = noise.
        hand_labels: box id -> product (:func:`read_hand_labels`).

    Returns:
        The :class:`itemrec.clustering.ClusterQuality`.

    Raises:
        ValueError: a box has no hand label (the message names up to 5).
    """
    from itemrec.clustering import clustering_scores

    missing = [b for b in box_ids if str(b) not in hand_labels]
    if missing:
        raise ValueError(f"{len(missing)} boxes have no hand label, e.g. {missing[:5]}")
    truth = np.array([hand_labels[str(b)] for b in box_ids], dtype=object)
    return clustering_scores(truth, np.asarray(clusters, dtype=np.int64))
