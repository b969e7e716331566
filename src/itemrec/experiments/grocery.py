"""Drivers of notebooks 01 (triplet loss) and 02 (center loss) on the Grocery Store open-set protocol.

The protocol (:func:`itemrec.data.splits.grocery_open_set`): 41 of the 81 fine
classes are seen in training (official train/val images), the other 40 are
never seen; their official val images calibrate thresholds and their official
test images are the queries, matched against the catalogue ("iconic") image of
each class. Training and evaluation go through
:func:`itemrec.training.run_experiment`; this module adds what the notebooks
show on top of it:

* :func:`grocery_subset`: a small copy of the dataset folder (split files cut
  per class, images linked, not copied) for the notebooks' QUICK mode, with the
  official split kept, so the protocol is unchanged;
* :func:`grocery_config`; runs are named by :func:`itemrec.training.runs.keyed`
  and trained or read back by :func:`itemrec.training.runs.run_or_load`
  (re-exported here);
* :func:`open_set_embeddings`, :func:`verification_sweep` (thresholds fitted on
  the calibration split at several target FARs, VAL/FAR reported on test),
  :func:`top_matches` and :func:`export_run_projector`;
* :func:`cmc_from_metrics` and :func:`feature_animation`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from itemrec.data.records import ImageDataset
from itemrec.training.runs import keyed, load_run, run_or_load, sibling_runs  # noqa: F401  (the notebooks' entry points)

SPLIT_FILES = ("train", "val", "test")


# -- data -------------------------------------------------------------------------------


def grocery_subset(
    out_dir: str | os.PathLike,
    max_per_class: dict[str, int | None] | None = None,
    seed: int = 0,
    root: str | os.PathLike | None = None,
) -> Path:
    """A small Grocery Store folder under ``out_dir`` for quick experiments; returns its path.

    ``max_per_class`` caps the images of each class in each official split
    (``{"train": 10, "val": None, "test": 5}``; ``None`` keeps all), drawn with
    ``numpy.random.default_rng(seed)``. The split files are rewritten; every
    other entry of the dataset folder (images, ``classes.csv``, iconic images) is
    a symbolic link to the original, so nothing is copied and the images keep
    their real paths once resolved. Load it with
    ``itemrec.data.load_grocery(path)``.

    Args:
        out_dir: the folder that receives ``dataset/`` (created); calling again with the same
            folder rewrites the split files and keeps the links.
        max_per_class: caps per official split (keys ``"train"``, ``"val"``, ``"test"``; a
            positive int or ``None``); ``None`` for ``{"train": 10, "val": None, "test": 5}``.
            A split left out of the dict keeps all its images.
        seed: the seed of the per-class draws.
        root: the original ``grocery-store`` folder (or its ``dataset/``); ``None`` for
            ``$ITEMREC_DATA/grocery-store``.

    Returns:
        ``out_dir`` (the folder holding ``dataset/``), as a :class:`~pathlib.Path`.

    Raises:
        ValueError: an unknown split key, or a cap that is not a positive int or ``None``.
        itemrec.settings.DataNotFoundError: no ``classes.csv`` in the original folder.
        FileExistsError: an entry of ``out_dir/dataset`` is a real folder, not a link to the
            original's entry (another dataset is there).
    """
    from itemrec import settings

    caps = {"train": 10, "val": None, "test": 5} if max_per_class is None else dict(max_per_class)
    bad = sorted(set(caps) - set(SPLIT_FILES))
    if bad:
        raise ValueError(f"max_per_class keys must be among {SPLIT_FILES}; got {bad}")
    for name, cap in caps.items():
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
            raise ValueError(f"max_per_class[{name!r}] must be a positive int or None; got {cap!r}")
    src = settings.dataset_dir("grocery-store") if root is None else Path(root).expanduser()
    if (src / "dataset" / "classes.csv").is_file():
        src = src / "dataset"
    if not (src / "classes.csv").is_file():
        raise settings.DataNotFoundError(f"grocery-store: {src / 'classes.csv'} not found")
    src = src.resolve()
    dest = Path(out_dir).expanduser() / "dataset"
    dest.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for entry in sorted(src.iterdir()):
        target = dest / entry.name
        if entry.stem in SPLIT_FILES and entry.suffix == ".txt":
            lines = [ln for ln in entry.read_text().splitlines() if ln.strip()]
            cap = caps.get(entry.stem)
            if cap is not None:
                by_class: dict[int, list[int]] = {}
                for i, ln in enumerate(lines):
                    by_class.setdefault(int(ln.split(",")[1]), []).append(i)
                keep = sorted(j for idx in by_class.values() for j in rng.permutation(idx)[:cap])
                lines = [lines[j] for j in keep]
            if target.is_symlink():
                target.unlink()
            target.write_text("\n".join(lines) + "\n")
        elif not (target.is_symlink() and target.resolve() == entry):
            if target.is_symlink() or target.is_file():
                target.unlink()
            elif target.exists():
                raise FileExistsError(f"{target} exists and is not a link to {entry}; choose another out_dir")
            target.symlink_to(entry, target_is_directory=entry.is_dir())
    return dest.parent


def grocery_root(
    data_root: str | os.PathLike | None,
    subset: dict[str, int | None] | None,
    out_dir: str | os.PathLike,
    seed: int = 0,
) -> Path | None:
    """The dataset folder a notebook trains on: the real one, or a :func:`grocery_subset` of it.

    Args:
        data_root: folder holding ``grocery-store/`` (``None``: ``$ITEMREC_DATA``).
        subset: photos kept per class of each official split (``{"train": 6, "val": None, "test": 3}``),
            ``None`` for the whole dataset.
        out_dir: where the subset folder goes; its name carries the caps and the seed, so runs on
            different subsets never share a data path (the run key hashes that path).
        seed: the subset draw.

    Returns:
        The folder for :func:`grocery_config`'s ``data_root`` (``None``: the default dataset).
    """
    root = Path(data_root).expanduser() / "grocery-store" if data_root else None
    if not subset:
        return root
    tag = "_".join(f"{k}{'all' if v is None else v}" for k, v in sorted(subset.items()))
    return grocery_subset(Path(out_dir) / f"grocery-subset_{tag}_seed{int(seed)}", subset, seed=seed, root=root)


# -- configs and runs ---------------------------------------------------------------------


def default_weights(backbone: str) -> str | None:
    """``"local"`` (the MobileNetV2 file) for MobileNetV2, ``None`` for the small CNN, else ``"imagenet"`` (download).

    Args:
        backbone: a backbone name of :data:`itemrec.models.backbones.BACKBONES`.

    Returns:
        The ``model.weights`` value: ``"local"``, ``None`` or ``"imagenet"``.
    """
    if backbone == "mobilenet_v2":
        return "local"
    if backbone == "small_cnn":
        return None
    return "imagenet"


def grocery_config(
    name: str,
    output_dir: str | os.PathLike,
    *,
    loss: str = "triplet",
    backbone: str = "mobilenet_v2",
    weights: str | None = "auto",
    input_size: int = 96,
    embedding_dim: int = 128,
    hidden: int | None = 256,
    dropout: float = 0.2,
    margin: float = 0.2,
    miner: str = "batch_hard",
    lam: float = 0.01,
    finetune_lam: float | None = None,
    alpha: float = 0.5,
    optimizer: str = "adam",
    epochs: int = 5,
    finetune_epochs: int = 0,
    finetune_layers: int | str = 20,
    lr: float = 1e-3,
    finetune_lr: float = 1e-5,
    p: int = 16,
    k: int = 4,
    steps_per_epoch: int | None = None,
    data_root: str | os.PathLike | None = None,
    cmc_draws: int = 100,
    far_targets: tuple[float, ...] = (1e-1, 1e-2, 1e-3),
    feature_monitor: bool = False,
    monitor_classes: int = 10,
    seed: int = 0,
) -> Any:
    """An :class:`itemrec.training.ExperimentConfig` for the Grocery open-set protocol.

    ``data_root`` is a folder holding ``dataset/`` (the real one under
    ``$ITEMREC_DATA/grocery-store`` by default, or a :func:`grocery_subset`).
    ``weights="auto"`` is :func:`default_weights`. Phase 1 trains ``epochs``
    epochs with the backbone frozen (the head on cached features) at ``lr``;
    phase 2 ``finetune_epochs`` with the top ``finetune_layers`` backbone layers
    at ``finetune_lr``. Nothing is changed behind the caller's back: a backbone
    without weights (trained from scratch) must be asked for as ``epochs=0``,
    ``finetune_layers="all"``. Batches are P classes × K images.

    Args:
        name: the run's name.
        output_dir: where run folders go.
        loss: the loss's short (older) name: ``"triplet"``, ``"center"``, ``"softmax"``,
            ``"cosine"``, ``"arcface"``, ``"cosface"``, ``"multi_similarity"``,
            ``"proxy_anchor"`` or ``"contrastive"`` (the older defaults for the arguments
            not given here).
        backbone: the backbone name.
        weights: ``"auto"`` (:func:`default_weights`), ``"local"``, ``"imagenet"``, a file
            path, or ``None`` (random initialisation).
        input_size: the input side in pixels.
        embedding_dim: the embedding size D.
        hidden: the MLP head's hidden width (``None`` or 0: no hidden layer).
        dropout: the head's dropout rate in [0, 1).
        margin: the triplet loss's margin (``loss="triplet"`` only).
        miner: the triplet miner: ``"batch_hard"``, ``"batch_all"``, ``"semi_hard"`` or
            ``"random"`` (seeded by ``seed``).
        lam: the centre loss's weight λ (``loss="center"``).
        finetune_lam: the centre loss's λ in phase 2, or ``None`` to keep ``lam``.
        alpha: the centre loss's centre learning rate α in (0, 1].
        optimizer: ``"adam"``, ``"adamw"``, ``"sgd"`` or ``"rmsprop"``.
        epochs: phase 1 (frozen backbone) epochs.
        finetune_epochs: phase 2 (fine-tuning) epochs.
        finetune_layers: backbone layers trained in phase 2 (an int or ``"all"``).
        lr: phase 1 learning rate.
        finetune_lr: phase 2 learning rate.
        p: classes per batch.
        k: images per class per batch.
        steps_per_epoch: steps per epoch, or ``None`` for the P×K sampler's own count.
        data_root: the dataset folder (see above), or ``None``.
        cmc_draws: query draws of the CMC evaluation.
        far_targets: the FARs at which verification is reported.
        feature_monitor: draw the deep features after every epoch (for :func:`feature_animation`).
        monitor_classes: the classes the feature monitor draws.
        seed: the run's seed (model, batches, split, random miner).

    Returns:
        The validated :class:`itemrec.training.ExperimentConfig` (TensorBoard logs off).

    Raises:
        ConfigError: ``epochs > 0`` with a backbone without weights (freezing random
            weights trains nothing useful), or any invalid value.
    """
    from itemrec.training import ConfigError, ExperimentConfig

    if weights == "auto":
        weights = default_weights(backbone)
    if weights is None and epochs:
        raise ConfigError(
            f"{backbone} without weights trains from scratch: a frozen phase would keep random features. "
            f"Ask for it explicitly: epochs=0, finetune_epochs={int(epochs) + int(finetune_epochs)}, "
            f"finetune_layers='all', finetune_lr={lr}"
        )
    from itemrec.training.loss_config import convert_old_loss

    loss_spec, moved = convert_old_loss({"name": loss, "margin": float(margin), "miner": miner, "lam": float(lam),
                                         "alpha": float(alpha)}, int(seed), warn=False)
    train = {
        "optimizer": optimizer,
        "frozen_epochs": int(epochs),
        "frozen_lr": lr,
        "finetune_epochs": int(finetune_epochs),
        "finetune_lr": finetune_lr,
        "finetune_layers": finetune_layers,
        "p": int(p),
        "k": int(k),
        "steps_per_epoch": steps_per_epoch,
        "tensorboard": False,
        "feature_monitor": bool(feature_monitor),
        "monitor_classes": int(monitor_classes),
        "finetune_lam": None if finetune_lam is None else float(finetune_lam),
    }
    return ExperimentConfig.from_dict({
        "name": name,
        "output_dir": str(output_dir),
        "seed": int(seed),
        "data": {"name": "grocery", "root": None if data_root is None else str(data_root)},
        "split": {"kind": "open", "seed": int(seed)},
        "model": {"backbone": backbone, "weights": weights, "input_size": int(input_size),
                  "embedding_dim": int(embedding_dim), "hidden": hidden, "dropout": float(dropout)},
        "loss": loss_spec,
        "train": train,
        "eval": {"cmc_draws": int(cmc_draws), "far_targets": list(far_targets)},
    })


# -- embeddings of a run ------------------------------------------------------------------


@dataclass
class OpenSetEmbeddings:
    """A run's embeddings of its unseen-class splits and of their catalogue images.

    Embedding arrays are (N, D) float32 and label arrays (N,) integers, in the test split's
    class numbering; unreadable images are left out of every array alike.

    Attributes:
        test: embeddings of the test (query) images.
        test_labels: their labels.
        test_paths: their file paths (object array).
        calib: embeddings of the calibration images (the threshold fits).
        calib_labels: their labels.
        gallery: embeddings of the catalogue image of each test class.
        gallery_labels: their labels, one per class.
        gallery_paths: their file paths.
        class_names: the class names, indexed by label.
        metric: the run's evaluation distance (``"cosine"`` or ``"l2"``).
    """

    test: np.ndarray
    test_labels: np.ndarray
    test_paths: np.ndarray
    calib: np.ndarray
    calib_labels: np.ndarray
    gallery: np.ndarray
    gallery_labels: np.ndarray
    gallery_paths: np.ndarray
    class_names: list[str]
    metric: str = "cosine"


def _embed(embedder: Any, ds: ImageDataset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    s = embedder.embed(list(ds.paths), ds.labels)
    return s.vectors, s.labels, np.asarray(s.paths, dtype=object)


def open_set_embeddings(run_dir: str | os.PathLike) -> OpenSetEmbeddings:
    """Embed a finished open-set run's ``test`` and ``calib`` images and the test classes' catalogue images.

    Args:
        run_dir: a trained run folder (``splits/``, ``config.json``, ``embedding.keras``).

    Returns:
        The :class:`OpenSetEmbeddings`, embedded by the run's saved embedding model.

    Raises:
        ValueError: a closed-set run; a test class without a catalogue image; catalogue
            images that cannot be read.
        FileNotFoundError: a file of the run folder is missing.
    """
    from itemrec.embedder import ImageEmbedder
    from itemrec.training import ExperimentConfig
    from itemrec.training.data import SplitData

    run_dir = Path(run_dir)
    splits = SplitData.load(run_dir / "splits")
    if splits.kind != "open" or splits.calib is None:
        raise ValueError(f"{run_dir} is a {splits.kind}-set run; open_set_embeddings needs an open-set run")
    config = ExperimentConfig.from_json(run_dir / "config.json")
    embedder = ImageEmbedder.load(run_dir / "embedding.keras")
    test, test_y, test_p = _embed(embedder, splits.test)
    calib, calib_y, _ = _embed(embedder, splits.calib)
    classes = np.unique(test_y)
    missing = [splits.test.class_names[int(c)] for c in classes if int(c) not in splits.test.representatives]
    if missing:
        raise ValueError(f"{run_dir}: test classes without a catalogue image: {missing[:5]}")
    gal_p, gal_y = splits.test.representative_arrays(classes)
    gal = embedder.embed(list(gal_p), np.asarray(gal_y))
    if gal.skipped:
        raise ValueError(f"catalogue images cannot be read: {list(gal.skipped[:3])}")
    return OpenSetEmbeddings(test, test_y, test_p, calib, calib_y, gal.vectors, gal.labels, np.asarray(gal.paths),
                             list(splits.test.class_names), config.eval.metric)


@dataclass
class VerificationSweep:
    """Thresholds fitted on the calibration split, one per target FAR, and their VAL/FAR on test.

    Attributes:
        table: a ``pandas.DataFrame``, one row per target: ``target_far``, ``threshold``,
            ``far_calib``, ``val_calib``, ``far_test``, ``val_test``, ``n_same_test``,
            ``n_diff_test`` (rates in [0, 1]).
        reports: the :class:`itemrec.evaluation.VerificationReport` of each target, in order.
        curve: the :class:`itemrec.evaluation.ValFarCurve` of the test pairs.
    """

    table: Any  # pandas.DataFrame: target_far, threshold, far_calib, val_calib, far_test, val_test, n_same_test, n_diff_test
    reports: list  # itemrec.evaluation.VerificationReport, one per target
    curve: Any  # itemrec.evaluation.ValFarCurve on test


def verification_sweep(
    emb: OpenSetEmbeddings, far_targets: tuple[float, ...] = (1e-1, 1e-2, 1e-3), n_thresholds: int = 256
) -> VerificationSweep:
    """For each target FAR: ``fit_threshold`` on the calib pairs, ``evaluate_threshold`` on the test pairs.

    The threshold never sees a test pair, so test FAR can miss its target: the
    table shows by how much. ``curve`` is the descriptive VAL/FAR sweep on test.

    Args:
        emb: a run's :class:`OpenSetEmbeddings`.
        far_targets: the target false-accept rates, each in [0, 1).
        n_thresholds: thresholds of the descriptive test curve.

    Returns:
        The :class:`VerificationSweep`.

    Raises:
        ValueError: ``far_targets`` is empty; errors of
            :func:`itemrec.evaluation.fit_threshold` (a target outside [0, 1), or a calibration
            split without both same- and different-class pairs).
    """
    import pandas as pd

    from itemrec import evaluation as ev

    if not far_targets:
        raise ValueError("far_targets is empty; give at least one target FAR in (0, 1)")
    rows, reports = [], []
    for far in far_targets:
        thr = ev.fit_threshold(emb.calib, emb.calib_labels, float(far), emb.metric)
        rep = ev.evaluate_threshold(thr, emb.test, emb.test_labels)
        reports.append(rep)
        rows.append({"target_far": float(far), "threshold": thr.value, "far_calib": thr.far_val,
                     "val_calib": thr.val_val, "far_test": rep.far, "val_test": rep.val,
                     "n_same_test": rep.n_same, "n_diff_test": rep.n_diff})
    curve = ev.val_far_curve(emb.test, emb.test_labels, n_thresholds, emb.metric)
    return VerificationSweep(pd.DataFrame(rows), reports, curve)


def top_matches(
    emb: OpenSetEmbeddings, n_queries: int = 6, k: int = 5, seed: int = 0, path: str | os.PathLike | None = None,
    threshold: float | None = None,
) -> tuple[Any, np.ndarray, np.ndarray]:
    """Grid of ``n_queries`` random test images (distinct classes) and their ``k`` nearest catalogue images.

    Args:
        emb: a run's :class:`OpenSetEmbeddings`.
        n_queries: query photos, drawn with ``numpy.random.default_rng(seed)``, one class each.
        k: catalogue matches per query.
        seed: the draw.
        path: where to save the figure.
        threshold: keep only matches at distance ``<= threshold`` (the original matching test);
            dropped matches are ``-1`` and drawn as empty cells. ``None`` keeps all ``k``.

    Returns:
        ``(figure, query indices into emb.test, neighbours (n_queries, k) into the gallery, -1 = dropped)``.
    """
    from itemrec import evaluation as ev
    from itemrec import plots

    k = min(int(k), len(emb.gallery_labels))
    rng = np.random.default_rng(seed)
    classes = rng.permutation(np.unique(emb.test_labels))[: int(n_queries)]
    queries = np.array([rng.choice(np.flatnonzero(emb.test_labels == c)) for c in classes], dtype=np.int64)
    dist, nb = ev.knn(emb.test[queries], emb.gallery, k, metric=emb.metric)
    if threshold is not None:
        nb = np.where(dist <= float(threshold), nb, -1)
    fig = plots.plot_query_matches(list(emb.test_paths[queries]), emb.test_labels[queries], list(emb.gallery_paths),
                                   emb.gallery_labels, nb, dist, emb.class_names, path=path)
    return fig, queries, nb


def export_run_projector(
    emb: OpenSetEmbeddings, out_dir: str | os.PathLike, max_images: int = 1000, thumb_size: int = 48, seed: int = 0
) -> Any:
    """TensorBoard projector files of (up to ``max_images``) test embeddings with image thumbnails.

    Args:
        emb: a run's :class:`OpenSetEmbeddings`.
        out_dir: the projector folder (written by :func:`itemrec.plots.export_projector`).
        max_images: at most this many test images, a seeded random draw (kept in order).
        thumb_size: sprite thumbnail side in pixels.
        seed: the draw.

    Returns:
        The :class:`itemrec.plots.projector.ProjectorExport` of the written files.
    """
    from itemrec import plots

    n = len(emb.test_labels)
    pick = np.sort(np.random.default_rng(seed).permutation(n)[: int(max_images)])
    return plots.export_projector(emb.test[pick], emb.test_labels[pick], list(emb.test_paths[pick]), out_dir,
                                  emb.class_names, thumb_size=thumb_size)


# -- summaries ----------------------------------------------------------------------------


def cmc_from_metrics(metrics: dict[str, Any]) -> Any:
    """The :class:`itemrec.evaluation.CMCResult` stored in an open-set run's ``metrics.json``.

    Args:
        metrics: the run's metrics dict (:func:`itemrec.training.evaluate_run`'s result or the
            parsed ``metrics.json``).

    Returns:
        The class-balanced CMC (ranks, mean, 95% interval, draws, queries per draw).

    Raises:
        ValueError: not an open-set run's metrics, or no ``cmc`` entry.
    """
    from itemrec.evaluation import CMCResult

    if metrics.get("kind") != "open" or "cmc" not in metrics:
        raise ValueError(f"metrics of run {metrics.get('run')!r} hold no open-set CMC")
    c = metrics["cmc"]
    return CMCResult(np.asarray(c["ranks"]), np.asarray(c["mean"]), np.asarray(c["ci_low"]),
                     np.asarray(c["ci_high"]), int(c["n_draws"]), int(c["n_queries_per_draw"]))


OPEN_SET_KEYS = ("rank1", "rank5", "recall_at_1", "recall_at_5", "map_at_r", "roc_auc", "dir_at_far")


def summary_table(results: dict[str, Any], keys: tuple[str, ...] = OPEN_SET_KEYS) -> Any:
    """One row per run (``{name: RunResult}``), the scalar metrics ``keys`` as columns, plus training seconds.

    Args:
        results: run label to :class:`itemrec.training.RunResult`.
        keys: the metrics (top-level scalars of the run's metrics) to show.

    Returns:
        A ``pandas.DataFrame`` indexed by ``run`` with the ``keys`` and ``train_seconds``
        (NaN when not recorded).

    Raises:
        KeyError: a run lacks one of ``keys`` (e.g. it was not evaluated, or is closed-set).
    """
    import pandas as pd

    rows = []
    for name, res in results.items():
        missing = [k for k in keys if k not in res.metrics]
        if missing:
            raise KeyError(f"run {name!r} has no metrics {missing}; it has {sorted(res.metrics)}")
        row = {"run": name, **{k: float(res.metrics[k]) for k in keys}}
        row["train_seconds"] = float(res.training.get("seconds", float("nan")))
        rows.append(row)
    return pd.DataFrame(rows).set_index("run")


def feature_animation(run_dir: str | os.PathLike, out_path: str | os.PathLike | None = None,
                      duration_ms: int = 600) -> tuple[Path, list[Path]]:
    """Join the deep-feature frames of both phases (``phaseN/features/frame_*.png``) into one GIF.

    Needs a run trained with ``train.feature_monitor``. Returns ``(gif path, frames in epoch order)``.

    Args:
        run_dir: the run folder.
        out_path: the GIF to write (folders created); ``None`` for ``run_dir/deep_features.gif``.
        duration_ms: how long each frame shows, in milliseconds (the GIF loops).

    Returns:
        ``(gif path, frames)``: the frames are phase 1's then phase 2's, by file name; frames
        of another size are resized to the first one's.

    Raises:
        FileNotFoundError: the run has no feature frames (not trained with ``feature_monitor``).
    """

    from PIL import Image

    run_dir = Path(run_dir)
    frames = sorted((p for n in (1, 2) for p in (run_dir / f"phase{n}" / "features").glob("frame_*.png")),
                    key=lambda p: (p.parent.parent.name, p.name))
    if not frames:
        raise FileNotFoundError(f"no deep-feature frames under {run_dir}/phase*/features: train with feature_monitor")
    out = Path(out_path) if out_path is not None else run_dir / "deep_features.gif"
    out.parent.mkdir(parents=True, exist_ok=True)
    images = [Image.open(p).convert("RGB") for p in frames]
    size = images[0].size
    images = [im if im.size == size else im.resize(size) for im in images]
    images[0].save(out, save_all=True, append_images=images[1:], duration=int(duration_ms), loop=0)
    return out, frames
