"""``evaluate_run(run_dir)``: every metric of :mod:`itemrec.evaluation` on a run's test split.

The run's saved embedding model (``embedding.keras``, through
:class:`itemrec.embedder.ImageEmbedder`) embeds the images of the run's split
manifests, so what is measured is what a user of the run gets.

Open set (test classes never seen in training):

* CMC against a gallery of one representative per test class (the catalogue
  image; for datasets without one, the first ``calib`` image of the class),
  over ``eval.cmc_draws`` random draws of one query per class: mean and 95%
  interval (:func:`itemrec.evaluation.cmc_representative`);
* Recall@1/5, R-precision and MAP@R with the test images as their own
  reference set, leave-one-out (Musgrave et al. 2020);
* VAL at each FAR of ``eval.far_targets``: threshold fitted on the ``calib``
  split (:func:`~itemrec.evaluation.fit_threshold`), reported on the test split;
* open-set rejection: a seeded ``split.enrolled_fraction`` of the test classes
  is enrolled (their representatives form the gallery), the rest are unknown;
  the acceptance threshold is fitted on ``calib`` probes at FAR
  ``eval.dir_far`` and DIR/FAR are reported on test probes;
* the same CMC with the hubness correction of
  :func:`itemrec.evaluation.hubness_offsets` (``eval.hubness_k``, ``eval.hubness_beta``;
  background: the training images), under ``hubness``;
* per test class (``per_class.csv``): rank-1 and rank-5 hit rates over all its
  queries and the catalogue item most often ranked first instead
  (:func:`itemrec.evaluation.per_class_ranks`).

Closed set: accuracy, top-5, macro/weighted F1 and the confusion matrix, with
the loss's classifier head (softmax/centre/cosine losses) or, for triplet
models, class centroids of the training embeddings (nearest centroid).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from itemrec._jsonio import json_default


def _far_key(far: float) -> str:
    """``far`` in the shortest scientific notation that reads back as the same number: ``1e-02``, ``1.5e-02``."""
    for digits in range(17):
        key = f"{far:.{digits}e}"
        if float(key) == far:
            return key
    return repr(far)


def _embed(embedder: Any, ds: Any, progress: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    s = embedder.embed(list(ds.paths), ds.labels, progress=progress)
    return s.vectors, s.labels, np.asarray(s.paths), len(s.skipped)


def _gallery(splits: Any, classes: np.ndarray, embedder: Any, progress: bool) -> tuple[np.ndarray, np.ndarray, str]:
    """One image per class: the representative if every class has one, else the first calib image."""
    test = splits.test
    if all(int(c) in test.representatives for c in classes):
        paths, labels = test.representative_arrays(classes)
        source = "catalogue"
    else:
        calib = splits.calib
        paths, labels = [], []
        for c in classes:
            idx = np.flatnonzero(calib.labels == c)
            if len(idx) == 0:
                raise ValueError(f"test class {test.class_names[int(c)]!r} has neither a representative nor a calib image")
            paths.append(calib.paths[idx[0]])
            labels.append(int(c))
        source = "first calib image"
    s = embedder.embed(list(paths), np.asarray(labels), progress=progress)
    if s.skipped:
        raise ValueError(f"gallery images cannot be read: {list(s.skipped[:3])}")
    return s.vectors, s.labels, source


def _rankings(config: Any, test_e: np.ndarray, test_y: np.ndarray, gal_e: np.ndarray, gal_y: np.ndarray
              ) -> tuple[int, Any, Any, Any]:
    """``(max_rank, class-balanced CMC, image-averaged CMC, retrieval report)`` of test photos vs the gallery."""
    from itemrec import evaluation as ev

    e = config.eval
    max_rank = int(min(e.max_rank, len(gal_y)))
    cmc = ev.cmc_representative(test_e, test_y, gal_e, gal_y, max_rank=max_rank, n_draws=e.cmc_draws,
                                seed=config.seed, metric=e.metric)
    image = ev.cmc_image_averaged(test_e, test_y, gal_e, gal_y, max_rank=max_rank, metric=e.metric)
    retrieval = ev.retrieval_report(test_e, test_y, ks=(1, 5), metric=e.metric)
    return max_rank, cmc, image, retrieval


def _open_set(config: Any, splits: Any, embedder: Any, out: Path, progress: bool) -> dict[str, Any]:
    from itemrec import evaluation as ev
    from itemrec import plots

    e = config.eval
    metric = e.metric
    test_e, test_y, test_p, skipped = _embed(embedder, splits.test, progress)
    calib_e, calib_y, _, skipped_c = _embed(embedder, splits.calib, progress)
    classes = np.unique(test_y)
    gal_e, gal_y, source = _gallery(splits, classes, embedder, progress)
    max_rank, cmc, image, retrieval = _rankings(config, test_e, test_y, gal_e, gal_y)
    m: dict[str, Any] = {
        "kind": "open",
        "metric": metric,
        "n_test_images": int(len(test_y)),
        "n_test_classes": int(len(classes)),
        "n_calib_images": int(len(calib_y)),
        "skipped_images": int(skipped + skipped_c),
        "gallery": source,
        "cmc": {"ranks": cmc.ranks.tolist(), "mean": cmc.mean.tolist(), "ci_low": cmc.ci_low.tolist(),
                "ci_high": cmc.ci_high.tolist(), "n_draws": cmc.n_draws, "n_queries_per_draw": cmc.n_queries},
        "rank1": cmc.at(1),
        "rank1_ci": [float(cmc.ci_low[0]), float(cmc.ci_high[0])],
        "rank5": cmc.at(min(5, max_rank)),
        "rank1_image": image.at(1),
        "rank1_image_ci": [float(image.ci_low[0]), float(image.ci_high[0])],
        "rank5_image": image.at(min(5, max_rank)),
        "rank5_image_ci": [float(image.ci_low[min(5, max_rank) - 1]), float(image.ci_high[min(5, max_rank) - 1])],
        "k_shot": _k_shot(test_e, test_y, gal_e, gal_y, max_rank, config.seed, metric),
        "recall_at_1": retrieval.recall_at_k[1],
        "recall_at_5": retrieval.recall_at_k[5],
        "r_precision": retrieval.r_precision,
        "map_at_r": retrieval.map_at_r,
        "verification": {},
    }
    reports = []
    for far in e.far_targets:
        thr = ev.fit_threshold(calib_e, calib_y, far, metric)
        rep = ev.evaluate_threshold(thr, test_e, test_y)
        reports.append(rep)
        m["verification"][_far_key(far)] = {
            "target_far": far, "threshold": thr.value, "far_calib": thr.far_val, "val_calib": thr.val_val,
            "val": rep.val, "far": rep.far, "n_same": rep.n_same, "n_diff": rep.n_diff,
        }
        m[f"val_at_far_{_far_key(far)}"] = rep.val
    rng = np.random.default_rng(config.split.seed)
    n_enrol = min(len(classes) - 1, max(1, int(round(config.split.enrolled_fraction * len(classes)))))
    enrolled = np.sort(rng.choice(classes, size=n_enrol, replace=False))
    keep = np.isin(gal_y, enrolled)
    thr = ev.fit_openset_threshold(gal_e[keep], gal_y[keep], calib_e, calib_y, e.dir_far, metric)
    osr = ev.evaluate_openset(thr, gal_e[keep], gal_y[keep], test_e, test_y)
    m["openset"] = {
        "target_far": e.dir_far, "threshold": thr.value, "far_calib": thr.far_val, "dir_calib": thr.dir_val,
        "dir": osr.dir, "far": osr.far, "accuracy": osr.accuracy, "n_known": osr.n_known,
        "n_unknown": osr.n_unknown, "n_enrolled_classes": int(n_enrol),
    }
    m["dir_at_far"] = osr.dir
    name = config.name
    curves = {name: cmc}
    if e.hubness_k > 0 and len(splits.train):
        background, _, _, _ = _embed(embedder, splits.train, progress)
        offsets = ev.hubness_offsets(gal_e, background, e.hubness_k, e.hubness_beta, metric)
        cmc_h = ev.cmc_representative(test_e, test_y, gal_e, gal_y, max_rank=max_rank, n_draws=e.cmc_draws,
                                      seed=config.seed, metric=metric, gallery_offsets=offsets)
        m["hubness"] = {
            "k": e.hubness_k, "beta": e.hubness_beta, "background": "train split (seen classes)",
            "n_background": int(len(background)), "cmc_mean": cmc_h.mean.tolist(), "rank1": cmc_h.at(1),
            "rank1_ci": [float(cmc_h.ci_low[0]), float(cmc_h.ci_high[0])], "rank5": cmc_h.at(min(5, max_rank)),
        }
        curves[f"{name} + hubness correction"] = cmc_h
    plots.plot_cmc(curves, title=f"CMC vs {source} ({name})", path=out / "cmc.png")
    curve = ev.val_far_curve(test_e, test_y, 256, metric)
    plots.plot_val_far(curve, reports[0].threshold if reports else None, title=f"VAL/FAR on test ({name})",
                       path=out / "val_far.png")
    plots.plot_roc(curve, reports[0] if reports else None, title=f"ROC on test ({name})", log_far=False,
                   path=out / "roc.png")
    m["roc_auc"] = curve.auc
    per_class = ev.per_class_ranks(test_e, test_y, gal_e, gal_y, ks=(1, 5), metric=metric)
    names = list(splits.test.class_names)
    per_class.insert(1, "class", [names[int(c)] for c in per_class["label"]])
    per_class["confused_with"] = [names[int(c)] if c >= 0 else "" for c in per_class["confused_with"]]
    per_class.to_csv(out / "per_class.csv", index=False)
    m["n_classes_never_first"] = int((per_class["hit@1"] == 0).sum())
    return m


def _feature_metrics(config: Any, splits: Any, features: Any, progress: bool) -> dict[str, Any]:
    """The open-set metrics of the run's backbone's pooled features (what training started from)."""
    test_e, test_y, _, _ = _embed(features, splits.test, progress)
    gal_e, gal_y, _ = _gallery(splits, np.unique(test_y), features, progress)
    max_rank, balanced, image, retrieval = _rankings(config, test_e, test_y, gal_e, gal_y)
    return {"rank1_image": image.at(1), "rank5_image": image.at(min(5, max_rank)), "rank1": balanced.at(1),
            "rank5": balanced.at(min(5, max_rank)), "recall_at_1": retrieval.recall_at_k[1],
            "map_at_r": retrieval.map_at_r}


def _validation_scores(config: Any, splits: Any, embedder: Any, progress: bool) -> dict[str, Any]:
    """The model-selection scores (:mod:`itemrec.training.selection`) of the final embedding."""
    from itemrec.training.selection import class_gallery, open_set_scores

    vc = splits.val_classes
    gal = class_gallery(vc)
    q = embedder.embed(gal.query_paths, gal.query_labels, progress=progress)
    g = embedder.embed(gal.gallery_paths, gal.gallery_labels, progress=progress)
    scores = open_set_scores(q.vectors, q.labels, g.vectors, g.labels, config.eval.metric)
    return {"classes": splits.validation_classes, **scores}


def _k_shot(test_e: np.ndarray, test_y: np.ndarray, gal_e: np.ndarray, gal_y: np.ndarray, max_rank: int, seed: int,
            metric: str, shots: tuple[int, ...] = (1, 3), draws: int = 20) -> dict[str, Any]:
    """k-shot enrolment CMC (catalogue image + k test photos per class in the gallery, the rest query)."""
    from itemrec import evaluation as ev

    out: dict[str, Any] = {}
    fewest = int(np.bincount(np.unique(test_y, return_inverse=True)[1]).min())
    for k in shots:
        if fewest <= k:  # a class would have no query left
            out[str(k)] = {"skipped": f"a test class has only {fewest} photos"}
            continue
        r = ev.cmc_k_shot(test_e, test_y, gal_e, gal_y, k, max_rank=max_rank, n_draws=draws, seed=seed, metric=metric)
        five = min(5, max_rank) - 1
        out[str(k)] = {"rank1": r.at(1), "rank1_ci": [float(r.ci_low[0]), float(r.ci_high[0])],
                       "rank5": float(r.mean[five]), "rank5_ci": [float(r.ci_low[five]), float(r.ci_high[five])],
                       "n_draws": r.n_draws, "n_queries_per_draw": r.n_queries}
    return out


def _closed_set(config: Any, splits: Any, embedder: Any, run_dir: Path, progress: bool) -> dict[str, Any]:
    import keras

    from itemrec import evaluation as ev
    from itemrec import plots

    test_e, test_y, _, skipped = _embed(embedder, splits.test, progress)
    names = list(splits.train.class_names)
    if config.loss.is_classifier:
        from itemrec.models import register_custom_objects

        register_custom_objects()

        model = keras.saving.load_model(run_dir / "model.keras", compile=False, safe_mode=True)
        scores = np.asarray(keras.ops.convert_to_numpy(model.metric_loss.logits(test_e)))
        scorer = "classifier head"
    else:
        train_e, train_y, _, _ = _embed(embedder, splits.train, progress)
        n = splits.n_train_classes
        cent = np.stack([train_e[train_y == c].mean(axis=0) for c in range(n)])
        from itemrec._numeric import l2_normalize_rows

        scores = l2_normalize_rows(test_e, zero="keep") @ l2_normalize_rows(cent, zero="keep").T
        scorer = "nearest training centroid (cosine)"
    rep = ev.classification_report(test_y, scores, names, ks=(1, 5))
    retrieval = ev.retrieval_report(test_e, test_y, ks=(1, 5), metric=config.eval.metric)
    plots.plot_confusion_matrix(rep.confusion, names, normalize=True, title=f"confusion ({config.name})",
                                path=run_dir / "confusion.png")
    rep.per_class.to_csv(run_dir / "per_class.csv", index=False)
    return {
        "kind": "closed",
        "scorer": scorer,
        "n_test_images": int(len(test_y)),
        "n_classes": len(names),
        "skipped_images": int(skipped),
        "accuracy": rep.accuracy,
        "top5_accuracy": rep.top_k_accuracy.get(5),
        "f1_macro": rep.f1_macro,
        "f1_weighted": rep.f1_weighted,
        "precision_macro": rep.precision_macro,
        "recall_macro": rep.recall_macro,
        "recall_at_1": retrieval.recall_at_k[1],
        "map_at_r": retrieval.map_at_r,
    }


def evaluate_run(run_dir: str | os.PathLike, progress: bool = False) -> dict[str, Any]:
    """Evaluate a run folder (see the module docstring); writes ``metrics.json`` and the plots there.

    Besides ``metrics.json``: open set, ``cmc.png``, ``val_far.png``, ``roc.png`` and
    ``per_class.csv``; closed set, ``confusion.png`` and ``per_class.csv``; and
    ``curves.png`` from ``history.csv`` when the run has one.

    Args:
        run_dir: a trained run folder (``config.json``, ``embedding.keras``,
            ``splits/splits.json``).
        progress: show progress bars while embedding.

    Returns:
        The metrics (what ``metrics.json`` holds): ``kind`` (``"open"`` or ``"closed"``),
        ``run``, ``loss`` and the figures of that protocol, e.g. ``rank1``, ``rank5``,
        ``recall_at_1``, ``map_at_r``, ``verification``, ``val_at_far_<FAR>``, ``openset``,
        ``dir_at_far``, ``roc_auc``, ``hubness``, ``k_shot``, ``backbone_features`` and
        ``validation_classes`` for an open-set run; ``accuracy``, ``top5_accuracy``,
        ``f1_macro``, ... for a closed-set one. Rates lie in [0, 1].

    Raises:
        FileNotFoundError: one of the three files above is missing (not a trained run folder).
        ConfigError: the saved ``config.json`` is invalid.
        ValueError: a test class with neither a catalogue image nor a calib image, or gallery
            images that cannot be read; errors of :mod:`itemrec.evaluation` on degenerate
            splits.
    """

    from itemrec.embedder import ImageEmbedder
    from itemrec.training.config import ExperimentConfig
    from itemrec.training.data import SplitData

    run_dir = Path(run_dir)
    for need in ("config.json", "embedding.keras", "splits/splits.json"):
        if not (run_dir / need).exists():
            raise FileNotFoundError(f"{run_dir / need} not found: {run_dir} is not a trained itemrec run folder")
    config = ExperimentConfig.from_json(run_dir / "config.json")
    splits = SplitData.load(run_dir / "splits")
    if splits.kind == "open":
        from itemrec.training.run_embedders import run_embedders

        embedder, features = run_embedders(run_dir, config)
        metrics = _open_set(config, splits, embedder, run_dir, progress)
        if features is not None:
            metrics["backbone_features"] = _feature_metrics(config, splits, features, progress)
        if splits.val_classes is not None:
            metrics["validation_classes"] = _validation_scores(config, splits, embedder, progress)
    else:
        metrics = _closed_set(config, splits, ImageEmbedder.load(run_dir / "embedding.keras"), run_dir, progress)
    metrics["run"] = config.name
    metrics["loss"] = config.loss.name
    hist = run_dir / "history.csv"
    if hist.is_file():
        import pandas as pd

        from itemrec import plots

        frame = pd.read_csv(hist)
        cols = [c for c in frame.columns if c not in ("epoch", "phase", "epoch_seconds", "learning_rate")]
        if len(frame) and cols:
            plots.plot_history(frame[cols], title=config.name, path=run_dir / "curves.png")
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=1, default=json_default) + "\n")
    return metrics


