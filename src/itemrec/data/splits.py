"""Seeded splits, saved as CSV manifests with :meth:`ImageDataset.to_csv`.

* :func:`class_disjoint_split`: the **open-set** protocol — some classes are
  held out entirely (never seen in training) and used only for evaluation.
* :func:`stratified_split`: the **closed-set** protocol — every class in every
  split, in the given fractions (scikit-learn ``train_test_split`` with
  ``stratify``).
* :data:`GROCERY_UNSEEN` and :func:`grocery_open_set`: the fixed 40 of 81
  Grocery Store classes held out in this project's open-set experiments,
  ``numpy.random.RandomState(0).permutation(81)[:40]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from itemrec.data.records import ImageDataset

GROCERY_UNSEEN: np.ndarray = np.random.RandomState(0).permutation(81)[:40]


def class_disjoint_split(
    ds: ImageDataset,
    unseen_fraction: float | None = 0.5,
    unseen_classes: Sequence[int] | Sequence[str] | None = None,
    seed: int = 0,
) -> tuple[ImageDataset, ImageDataset]:
    """Split by class: ``(seen, unseen)`` with no class in both (the open-set protocol).

    Either give ``unseen_classes`` or let ``round(unseen_fraction * n_present)`` of the
    classes that have images be drawn with ``numpy.random.default_rng(seed)``. Labels are
    kept (not renumbered) so both halves index the same ``class_names``; use
    :meth:`ImageDataset.with_classes` with ``relabel=True`` for a dense training label range.

    Args:
        ds: the dataset.
        unseen_fraction: the fraction of classes held out, strictly in (0, 1); used only
            without ``unseen_classes``.
        unseen_classes: the held-out classes, as labels or class names.
        seed: the seed of the class draw.

    Returns:
        ``(seen, unseen)`` datasets named ``<name>/seen`` and ``<name>/unseen``.

    Raises:
        ValueError: an unknown class name or a label out of range; ``unseen_fraction``
            outside (0, 1) or rounding to no class or to all of them; a split with one side
            empty.
    """
    present = np.unique(ds.labels)
    if unseen_classes is not None:
        chosen = []
        for c in unseen_classes:
            if isinstance(c, str):
                if c not in ds.class_names:
                    raise ValueError(f"{ds.name}: unknown class name {c!r}")
                chosen.append(ds.class_names.index(c))
            else:
                c = int(c)
                if not 0 <= c < ds.n_classes:
                    raise ValueError(f"{ds.name}: class label {c} out of range 0..{ds.n_classes - 1}")
                chosen.append(c)
        unseen = np.unique(np.asarray(chosen, dtype=np.int64))
    else:
        if unseen_fraction is None or not 0.0 < unseen_fraction < 1.0:
            raise ValueError(f"unseen_fraction must lie strictly between 0 and 1, got {unseen_fraction}")
        n_unseen = int(round(unseen_fraction * len(present)))
        if n_unseen == 0 or n_unseen == len(present):
            raise ValueError(
                f"{ds.name}: unseen_fraction={unseen_fraction} of {len(present)} classes leaves one side empty"
            )
        unseen = np.sort(np.random.default_rng(seed).choice(present, size=n_unseen, replace=False))
    mask = np.isin(ds.labels, unseen)
    if mask.all() or not mask.any():
        raise ValueError(f"{ds.name}: the unseen classes {unseen.tolist()[:10]} leave one side of the split empty")
    return ds.subset(~mask, f"{ds.name}/seen"), ds.subset(mask, f"{ds.name}/unseen")


def stratified_split(
    ds: ImageDataset,
    fractions: Sequence[float] = (0.7, 0.15, 0.15),
    seed: int = 0,
    names: Sequence[str] = ("train", "val", "test"),
) -> ImageDataset:
    """Closed-set split: a copy of ``ds`` whose ``split`` column holds ``names``.

    Each part keeps the class proportions (scikit-learn ``train_test_split``
    with ``stratify``, applied part by part, part k seeded ``seed + k``); part sizes are
    ``round(fraction * N)`` images, the last part takes the rest.

    Args:
        ds: the dataset.
        fractions: one positive fraction per part, summing to 1 (default 0.7, 0.15, 0.15).
        seed: the base seed.
        names: the part names written to the ``split`` column.

    Returns:
        A new :class:`ImageDataset` with the same classes and the ``split`` column set.

    Raises:
        ValueError: ``fractions`` and ``names`` differ in length, fractions not positive or
            not summing to 1, a class with fewer images than parts, or a part scikit-learn
            cannot stratify.
    """
    from sklearn.model_selection import train_test_split

    fractions = [float(f) for f in fractions]
    if len(fractions) != len(names):
        raise ValueError(f"{len(fractions)} fractions for {len(names)} split names")
    if any(f <= 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"fractions must be positive and sum to 1, got {fractions}")
    counts = np.bincount(ds.labels, minlength=ds.n_classes)
    small = [ds.class_names[i] for i in np.flatnonzero((counts > 0) & (counts < len(fractions)))]
    if small:
        raise ValueError(f"{ds.name}: classes with fewer images than splits ({len(fractions)}): {small[:10]}")
    split = np.empty(len(ds), dtype=object)
    remaining = np.arange(len(ds))
    for k, (frac, name) in enumerate(zip(fractions, names)):
        if k == len(fractions) - 1:
            split[remaining] = name
            break
        n_take = int(round(frac * len(ds)))  # sizes from the total, in whole images
        try:
            take, rest = train_test_split(
                remaining, train_size=n_take, stratify=ds.labels[remaining], random_state=seed + k, shuffle=True
            )
        except ValueError as exc:
            raise ValueError(f"{ds.name}: cannot make a stratified {name!r} part of {n_take} images: {exc}") from exc
        split[take] = name
        remaining = np.sort(rest)
    frame = ds.frame.copy()
    frame["split"] = split.astype(str)
    return ImageDataset(frame, list(ds.class_names), dict(ds.representatives), ds.coarse_names, ds.name)


def grocery_open_set(ds: ImageDataset) -> tuple[ImageDataset, ImageDataset]:
    """``(train_classes_ds, unseen_classes_ds)`` of the Grocery Store set using :data:`GROCERY_UNSEEN`.

    Works on the whole set or any of its splits (every row is kept on one side).

    Args:
        ds: the Grocery Store dataset (Klasson et al., WACV 2019) or one of its splits, with
            its 81 fine classes.

    Returns:
        ``(seen, unseen)`` as :func:`class_disjoint_split` gives them.

    Raises:
        ValueError: ``ds`` does not have 81 classes, or a side would be empty.
    """
    if ds.n_classes != 81:
        raise ValueError(f"grocery_open_set needs the 81 Grocery Store classes; {ds.name} has {ds.n_classes}")
    return class_disjoint_split(ds, unseen_fraction=None, unseen_classes=GROCERY_UNSEEN.tolist())
