"""``itemrec evaluate MODEL --data FOLDER``: how well a model recognises *your* products.

The data is a folder-per-class tree, a ``split/class`` tree (``Train/``, ``Validation/``) or a
CSV manifest (:mod:`itemrec.data.layout`; class names matched across splits by case and
``-``/``_``). Which photos build the gallery and which query:

* folder-per-class: every photo may be drawn into the gallery, the rest of its class queries;
* ``split/class``: gallery photos come from the *gallery split* (default: the split whose name
  starts with "train"), queries from the other splits (or ``query_splits``);
* a catalogue (``catalogue``: a folder of ``<class>.<ext>`` images or ``<class>/`` folders whose
  first image is taken) is always in the gallery; ``shots`` random photos per class are added.

The CMC of :func:`itemrec.evaluation.cmc_gallery_draws` (image-averaged and class-balanced, each
with its interval across draws), optionally with the hubness correction from a background
folder and with near copies of gallery photos dropped from the queries
(:mod:`itemrec.data.near_duplicates`); Recall@1/5 and MAP@R leave-one-out among the query photos
(:func:`itemrec.evaluation.retrieval_report`); VAL at FAR with the threshold fitted on a random
half of the classes and reported on the other half (:func:`itemrec.evaluation.fit_threshold`,
:func:`~itemrec.evaluation.evaluate_threshold`). The report and its files are written by
:mod:`itemrec.evaluate_folder_report`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from itemrec.data.layout import LabelledImages, LayoutError, class_key, image_files, read_labelled
from itemrec.embedded import EmbeddedSet


@dataclass
class FolderEvalOptions:
    """Options of :func:`evaluate_folder` (the CLI flags of ``itemrec evaluate --data``).

    Attributes:
        shots: photos per class drawn into the gallery in each draw, ``≥ 0`` (0: the
            catalogue image alone, which then needs ``catalogue``).
        draws: random galleries drawn, ``≥ 1``; the CMC intervals are the 2.5/97.5
            percentiles across them.
        seed: seed of the draws (``numpy.random.default_rng``) and of the verification's
            split of the classes into a fitting and a reporting half.
        catalogue: folder of catalogue images (``<class>.<ext>`` files or ``<class>/``
            folders), always in the gallery; ``None``: none.
        gallery_split: the split gallery photos are drawn from in a ``split/class`` tree
            (``None``: the split whose name starts with "train").
        query_splits: the splits whose photos query (``None``: every split but the gallery's).
        background: folder or CSV manifest of photos of other products for the hubness
            correction (Conneau et al. 2018 CSLS, :func:`itemrec.evaluation.hubness_offsets`);
            ``None``: no correction.
        hubness_k: background neighbours per gallery image in the correction, ``≥ 1``.
        beta: weight β ``≥ 0`` of the correction (0.5: the CSLS ranking).
        exclude_near_duplicates: drop from each draw's queries the photos that are near copies
            (perceptual hash, :mod:`itemrec.data.near_duplicates`) of a gallery photo of their
            class or of its catalogue image.
        max_distance: largest Hamming distance, in bits of the 64-bit hash (0..64), at which
            two photos count as near copies.
        far_targets: false-accept rates, each in ``[0, 1)``, at which VAL is reported.
        max_rank: last rank of the CMC curves (capped at the number of gallery classes).
        metric: ``"cosine"`` or ``"l2"``.
        notes: lines added to the report's ``notes`` (e.g. how the model was loaded).
    """

    shots: int = 1
    draws: int = 20
    seed: int = 0
    catalogue: str | None = None
    gallery_split: str | None = None
    query_splits: list[str] | None = None
    background: str | None = None
    hubness_k: int = 10
    beta: float = 0.5
    exclude_near_duplicates: bool = False
    max_distance: int = 6
    far_targets: tuple[float, ...] = (1e-2, 1e-3)
    max_rank: int = 10
    metric: str = "cosine"
    notes: list[str] = field(default_factory=list)


def read_catalogue(folder: str | os.PathLike) -> dict[str, str]:
    """Class key -> catalogue image: ``<class>.<ext>`` files, or the first image of each ``<class>/`` folder.

    A ``<class>.<ext>`` file wins over a ``<class>/`` folder of the same key. Keys are
    :func:`itemrec.data.layout.class_key` of the names (so they match the photos' classes
    across case and ``-``/``_``).

    Args:
        folder: the catalogue folder (``~`` expanded).

    Returns:
        ``{class key: image path}``.

    Raises:
        FileNotFoundError: the folder does not exist.
        LayoutError: it holds no image.
    """
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"catalogue folder {root} does not exist")
    out = {class_key(p.stem): str(p) for p in image_files(root)}
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        files = image_files(sub, recursive=True)
        if files:
            out.setdefault(class_key(sub.name), str(files[0]))
    if not out:
        raise LayoutError(f"catalogue {root}: no images; expected <class>.jpg files or <class>/ folders")
    return out


def choose_pools(data: LabelledImages, opts: FolderEvalOptions) -> tuple[np.ndarray, np.ndarray, str]:
    """Which photos may enter the gallery and which may query (the rules in the module docstring).

    Args:
        data: the labelled photos (:func:`itemrec.data.layout.read_labelled`).
        opts: the options; ``gallery_split``, ``query_splits`` and ``shots`` are read.

    Returns:
        ``(in_gallery, as_query, description)``: two (N,) bool masks over the rows of
        ``data.frame`` (without splits both are all true: a photo drawn into the gallery
        does not query in that draw) and one line for the report.

    Raises:
        LayoutError: splits asked for in a tree without splits, a split name that does not
            exist, no split named ``train*`` when gallery photos are needed and no
            ``gallery_split`` is given, or no split left for the queries.
    """
    split = data.frame["split"].to_numpy()
    if not data.splits:
        if opts.gallery_split or opts.query_splits:
            raise LayoutError(f"{data.root} has no splits; drop --gallery-split/--query-split")
        everything = np.ones(len(split), bool)
        return everything, everything, "gallery photos drawn from each class's photos, its other photos query"
    g_split = data.find_split(opts.gallery_split) if opts.gallery_split else next(
        (s for s in data.splits if class_key(s).startswith("train")), None)
    if opts.query_splits:
        q_splits = [data.find_split(s) for s in opts.query_splits]
    else:
        q_splits = [s for s in data.splits if s != g_split]
    if g_split is None and opts.shots:
        raise LayoutError(f"{data.root} has splits {', '.join(data.splits)} but none named train*: "
                          "say which one the gallery photos come from with --gallery-split")
    if not q_splits:
        raise LayoutError(f"no split left for the queries in {data.root}; name them with --query-split")
    in_gallery = split == g_split if g_split is not None else np.zeros(len(split), bool)
    as_query = np.isin(split, q_splits)
    what = (f"gallery photos from split {g_split!r}, " if opts.shots else "") + f"queries from {', '.join(q_splits)}"
    return in_gallery, as_query, what


def _classes(labels: np.ndarray, in_gallery: np.ndarray, as_query: np.ndarray, catalogue: set[str],
             keys: list[str], shots: int, notes: list[str]) -> np.ndarray:
    """The labels evaluated: classes with a query, enough gallery photos, and a catalogue image if needed."""
    out, dropped = [], {}
    for lab, key in enumerate(keys):
        mine = labels == lab
        n_q, n_g = int((mine & as_query).sum()), int((mine & in_gallery).sum())
        shared = int((mine & as_query & in_gallery).sum())
        if n_q == 0:
            continue  # gallery-only class: a distractor
        if shots == 0 and key not in catalogue:
            dropped[key] = "no catalogue image"
        elif n_g < shots:
            dropped[key] = f"{n_g} gallery photos < {shots} shots"
        elif n_q - min(shared, shots) < 1:
            dropped[key] = f"{n_q} photos: none left to query after {shots} shots"
        else:
            out.append(lab)
    if dropped:
        notes.append(f"{len(dropped)} classes left out of the evaluation: " +
                     "; ".join(f"{k} ({v})" for k, v in list(dropped.items())[:20]))
    return np.asarray(out, np.int64)


def _any_images(source: str | os.PathLike) -> list[str]:
    """Every image of a folder (searched recursively) or of a CSV manifest's ``path`` column."""
    p = Path(source).expanduser()
    if p.suffix.lower() == ".csv":
        return read_labelled(p).frame["path"].tolist()
    if not p.is_dir():
        raise FileNotFoundError(f"folder {p} does not exist")
    files = [str(f) for f in image_files(p, recursive=True)]
    if not files:
        raise LayoutError(f"{p}: no images")
    return files


def _embed(embedder: Any, paths: list[str], labels: Any, progress: bool, what: str) -> EmbeddedSet:
    if not paths:  # some embedders (a Keras head's predict) fail on an empty batch
        return EmbeddedSet.from_kept(np.zeros((0, 0), np.float32), [], [], labels)
    embedded = embedder.embed(paths, labels, progress=progress)
    if not len(embedded):
        reasons = "; ".join(f"{p}: {r}" for p, r in embedded.skipped[:3])
        raise LayoutError(f"none of the {len(paths)} {what} could be read ({reasons})")
    return embedded


def _near(paths: list[str], labels: np.ndarray, cat_paths: list[str], cat_labels: np.ndarray, max_distance: int,
          progress: bool) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray, dict[str, Any]]:
    """Near-copy pairs among the photos, photos near their catalogue image, and counts for the report."""
    from itemrec.data.near_duplicates import hash_files, near_pairs

    _, ph, ok, _ = hash_files(paths, progress, desc="perceptual hashes")
    i, j, _ = near_pairs(ph, None, max_distance, ok)
    same = labels[i] == labels[j]
    near_cat = np.zeros(len(paths), bool)
    if cat_paths:
        _, ch, cok, _ = hash_files(cat_paths, False)
        a, b, _ = near_pairs(ph, ch, max_distance, ok, cok)
        hit = labels[a] == cat_labels[b]
        near_cat[a[hit]] = True
    with_copy = np.zeros(len(paths), bool)
    with_copy[i[same]] = with_copy[j[same]] = True
    counts = {"max_distance_bits": max_distance, "same_class_pairs": int(same.sum()),
              "cross_class_pairs": int((~same).sum()), "photos_with_same_class_copy": int(with_copy.sum()),
              "photos_near_catalogue": int(near_cat.sum())}
    return (i[same], j[same]), near_cat, counts


def evaluate_folder(embedder: Any, data_path: str | os.PathLike, opts: FolderEvalOptions, progress: bool = True
                    ) -> dict[str, Any]:
    """Evaluate ``embedder`` (anything with ``embed(paths, labels)``) on a labelled folder or manifest.

    Args:
        embedder: an :class:`itemrec.embedder.ImageEmbedder` or a run's embedder.
        data_path: folder-per-class, ``split/class`` tree or CSV manifest.
        opts: :class:`FolderEvalOptions`.
        progress: tqdm bars.

    Returns:
        The report dict (see :func:`itemrec.evaluate_folder_report.write_report`); the curves
        are under ``"_curves"`` and the per-class table under ``"_per_class"``.

    Raises:
        FileNotFoundError: a folder (data, catalogue or background) does not exist.
        LayoutError: the data cannot be used as asked (the message says why and what to pass):
            no split for the gallery or the queries, no image readable, or no class that can
            be evaluated.
        ValueError: bad option values (``shots < 0``, ``draws < 1``, a bad metric, ...).
    """
    from itemrec import evaluation as ev

    if opts.shots < 0 or opts.draws < 1:
        raise ValueError("--gallery-shots must be >= 0 and --draws >= 1")
    data = read_labelled(data_path)
    notes = list(opts.notes) + _layout_notes(data)
    in_gallery, as_query, pools = choose_pools(data, opts)
    use = in_gallery | as_query
    frame = data.frame[use].reset_index(drop=True)
    in_gallery, as_query = in_gallery[use], as_query[use]
    catalogue = read_catalogue(opts.catalogue) if opts.catalogue else {}
    keys = sorted(set(frame["key"]) | set(catalogue))
    key_to_label = {k: n for n, k in enumerate(keys)}
    photos = _embed(embedder, frame["path"].tolist(), frame.assign(in_gallery=in_gallery, as_query=as_query),
                    progress, "photos")
    photo_e, frame, skipped = photos.vectors, photos.labels, list(photos.skipped)
    in_gallery, as_query = frame.pop("in_gallery").to_numpy(bool), frame.pop("as_query").to_numpy(bool)
    labels = frame["key"].map(key_to_label).to_numpy(np.int64)
    cat_keys = [k for k in keys if k in catalogue]
    cat = _embed(embedder, [catalogue[k] for k in cat_keys], cat_keys, progress, "catalogue images")
    cat_e, cat_keys, cat_skipped = cat.vectors, cat.labels, list(cat.skipped)
    cat_y = np.array([key_to_label[k] for k in cat_keys], np.int64)
    classes = _classes(labels, in_gallery, as_query, set(cat_keys), keys, opts.shots, notes)
    if not len(classes):
        raise LayoutError("no class can be evaluated: " + (notes[-1] if notes else "no photos"))
    bg_e = None
    if opts.background:
        bg_paths = _any_images(opts.background)
        bg_e = _embed(embedder, bg_paths, None, progress, "background photos").vectors
    near, near_cat, near_counts = None, None, None
    if opts.exclude_near_duplicates:
        near, near_cat, near_counts = _near(frame["path"].tolist(), labels, [catalogue[k] for k in cat_keys], cat_y,
                                            opts.max_distance, progress)
    res = ev.cmc_gallery_draws(photo_e, labels, classes, opts.shots, opts.draws, opts.seed, opts.max_rank, opts.metric,
                               in_gallery, as_query, cat_e if len(cat_y) else None, cat_y if len(cat_y) else None,
                               near, near_cat, bg_e, opts.hubness_k, opts.beta)
    queries = as_query & np.isin(labels, classes)
    report = {
        "data": str(data_path), "layout": data.layout, "splits": data.splits, "pools": pools,
        "n_photos": int(len(frame)), "n_unreadable": len(skipped) + len(cat_skipped),
        "unreadable": [list(s) for s in (skipped + cat_skipped)[:50]],
        "n_classes": int(len(classes)), "n_gallery_classes": int(len(np.union1d(cat_y, labels[in_gallery]) if opts.shots else cat_y)),
        "gallery": {"catalogue": opts.catalogue, "catalogue_images": int(len(cat_y)), "shots": opts.shots,
                    "draws": opts.draws, "seed": opts.seed},
        "hubness": None if bg_e is None else {"background": opts.background, "n_background": int(len(bg_e)),
                                              "k": opts.hubness_k, "beta": opts.beta},
        "near_duplicates": None if near_counts is None else {**near_counts,
                                                             "queries_dropped_per_draw": float(res.n_excluded.mean())},
        "cmc": _cmc_dict(res), "retrieval": _retrieval(photo_e[queries], labels[queries], opts.metric),
        "verification": _verification(photo_e[queries], labels[queries], opts, keys),
        "notes": notes,
    }
    report["_curves"] = res
    report["_per_class"] = _per_class(res, labels, keys, data.names())
    return report


def _layout_notes(data: LabelledImages) -> list[str]:
    notes = []
    if data.spellings:
        notes.append("class names matched across spellings: " + "; ".join(
            f"{' = '.join(v)}" for v in list(data.spellings.values())[:10]))
    if data.empty_folders:
        notes.append(f"{len(data.empty_folders)} class folders hold no image: {', '.join(data.empty_folders[:5])}")
    return notes


def _per_class(res: Any, labels: np.ndarray, keys: list[str], names: dict[str, str]) -> pd.DataFrame:
    return pd.DataFrame({
        "class": [names.get(keys[c], keys[c]) for c in res.classes], "queries_over_draws": res.per_class_queries,
        "hit@1": res.per_class_hit1, "hit@5": res.per_class_hit5,
        "photos": [int((labels == c).sum()) for c in res.classes]})


def _cmc_dict(res: Any) -> dict[str, Any]:
    from itemrec.evaluation.retrieval import _wilson

    def one(c: Any, wilson: bool) -> dict[str, Any]:
        five = min(5, len(c.ranks)) - 1
        d = {"rank1": float(c.mean[0]), "rank1_ci_draws": [float(c.ci_low[0]), float(c.ci_high[0])],
             "rank5": float(c.mean[five]), "rank5_ci_draws": [float(c.ci_low[five]), float(c.ci_high[five])],
             "queries_per_draw": int(c.n_queries)}
        if wilson:
            lo, hi = _wilson(np.array([c.mean[0]]), int(c.n_queries))
            d["rank1_ci_wilson"] = [float(lo[0]), float(hi[0])]
        return d

    return {"image_averaged": one(res.image, True), "class_balanced": one(res.balanced, False),
            "n_draws": int(res.image.n_draws), "max_rank": int(len(res.image.ranks))}


def _retrieval(emb: np.ndarray, labels: np.ndarray, metric: str) -> dict[str, Any]:
    from itemrec import evaluation as ev

    if len(emb) < 6 or len(np.unique(labels)) < 2:
        return {"skipped": f"{len(emb)} query photos in {len(np.unique(labels))} classes: too few"}
    rep = ev.retrieval_report(emb, labels, ks=(1, 5), metric=metric)
    return {"recall_at_1": rep.recall_at_k[1], "recall_at_5": rep.recall_at_k[5], "map_at_r": rep.map_at_r,
            "n_queries": rep.n_queries}


def _verification(emb: np.ndarray, labels: np.ndarray, opts: FolderEvalOptions, keys: list[str]) -> dict[str, Any]:
    """VAL at each target FAR: threshold fitted on a random half of the classes, reported on the other."""
    from itemrec import evaluation as ev

    classes = np.unique(labels)
    rng = np.random.default_rng(opts.seed + 104729)
    fit_classes = rng.permutation(classes)[: len(classes) // 2]
    fit = np.isin(labels, fit_classes)
    out: dict[str, Any] = {}
    for far in opts.far_targets:
        key = f"{far:.0e}"
        try:
            thr = ev.fit_threshold(emb[fit], labels[fit], far, opts.metric)
            rep = ev.evaluate_threshold(thr, emb[~fit], labels[~fit])
        except ValueError as exc:
            out[key] = {"skipped": f"threshold fitted on {len(fit_classes)} of {len(classes)} classes: {exc}"}
            continue
        out[key] = {"val": rep.val, "far": rep.far, "threshold": thr.value, "n_same": rep.n_same, "n_diff": rep.n_diff,
                    "fit_classes": int(len(fit_classes)), "report_classes": int(len(classes) - len(fit_classes)),
                    "fit_class_keys": sorted(keys[c] for c in fit_classes)}
    return out
