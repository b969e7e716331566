"""MNIST digits: a triplet network with a 10-d embedding, a softmax classifier on it, Gini rejection.

* :func:`split_digits`: a seeded, stratified train/val/test split of the
  10,000 MNIST test digits (the only MNIST part available offline).
* :func:`write_digits`: the split as 28×28 PNG files and a manifest
  (``split.kind = "given"``), so the digits train like any other images.
* :func:`digit_config`: the triplet network as an
  :class:`itemrec.training.ExperimentConfig`: the small CNN of the original
  experiment (conv 3×3 → BN → ReLU → max-pool blocks, ``model.cnn_filters``)
  with global average pooling and a linear layer to a 10-d, L2-normalised
  embedding, trained from scratch on **random triplets** (in each batch of
  P digits × K images, one random positive and one random negative per
  anchor: the ``random`` miner) with the hinge triplet loss
  ``max(‖a − p‖² − ‖a − n‖² + margin, 0)`` (Schroff, Kalenichenko & Philbin,
  "FaceNet", CVPR 2015).
* :func:`margin_sweep`: one run of :func:`itemrec.training.run_experiment`
  per margin (through :func:`itemrec.training.runs.run_or_load`: keyed, kept,
  read back), scored on the validation digits by Recall@1 / MAP@R and
  triplet accuracy (fraction of fresh random triplets with ``d(a, p) < d(a, n)``).
* :func:`softmax_classifier`: multinomial logistic regression (softmax
  regression) on the embeddings.
* :func:`gini_rejection`: rejects inputs whose class probabilities are spread
  out, by the Gini impurity ``1 − Σ p_i²`` (:mod:`itemrec.evaluation.gini`)
  with a threshold fitted on validation digits, tested on test digits and on
  letters rendered like MNIST digits (:mod:`itemrec.glyphs`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


@dataclass
class DigitSplits:
    """Grey 28×28 uint8 digits and labels of each part.

    Attributes:
        x_train: (N_train, 28, 28) uint8 digits, ink bright.
        y_train: (N_train,) int64 digits 0..9.
        x_val: (N_val, 28, 28) validation digits.
        y_val: (N_val,) their labels.
        x_test: (N_test, 28, 28) test digits.
        y_test: (N_test,) their labels.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    def sizes(self) -> dict[str, int]:
        """Digits per part.

        Returns:
            ``{"train": n, "val": n, "test": n}``.
        """
        return {"train": len(self.y_train), "val": len(self.y_val), "test": len(self.y_test)}


def split_digits(
    images: np.ndarray, labels: np.ndarray, fractions: Sequence[float] = (0.6, 0.2, 0.2), seed: int = 0, limit: int | None = None
) -> DigitSplits:
    """Stratified train/val/test parts in ``fractions`` (scikit-learn ``train_test_split``, seeded).

    Args:
        images: (N, H, W) digits.
        labels: (N,) labels.
        fractions: three positive fractions summing to 1 (default 0.6, 0.2, 0.2).
        seed: the seed (the val/test cut uses ``seed + 1``).
        limit: first draw this many digits (stratified); ``None`` or ≥ N: all.

    Returns:
        The :class:`DigitSplits`.

    Raises:
        ValueError: ``images`` not (N, H, W) with N labels, bad ``fractions``, or a class too
            small to stratify (from scikit-learn).
    """
    from sklearn.model_selection import train_test_split

    x, y = np.asarray(images), np.asarray(labels, dtype=np.int64)
    if x.ndim != 3 or len(x) != len(y):
        raise ValueError(f"images must be (N, H, W) with N = len(labels); got {x.shape} and {y.shape}")
    f = [float(v) for v in fractions]
    if len(f) != 3 or min(f) <= 0 or abs(sum(f) - 1) > 1e-6:
        raise ValueError(f"fractions must be three positive numbers summing to 1; got {fractions}")
    idx = np.arange(len(y))
    if limit is not None and limit < len(y):
        idx, _ = train_test_split(idx, train_size=int(limit), stratify=y, random_state=seed)
    train, rest = train_test_split(idx, train_size=f[0], stratify=y[idx], random_state=seed)
    val, test = train_test_split(rest, train_size=f[1] / (f[1] + f[2]), stratify=y[rest], random_state=seed + 1)
    return DigitSplits(x[train], y[train], x[val], y[val], x[test], y[test])


def to_rgb(images: np.ndarray) -> np.ndarray:
    """Grey ``(N, H, W)`` uint8 images as ``(N, H, W, 3)``, the input of the small CNN.

    Args:
        images: (N, H, W) grey images.

    Returns:
        (N, H, W, 3), the grey level repeated on three channels.

    Raises:
        ValueError: ``images`` is not 3-D.
    """
    x = np.asarray(images)
    if x.ndim != 3:
        raise ValueError(f"expected grey images (N, H, W); got shape {x.shape}")
    return np.repeat(x[..., None], 3, axis=-1)


def write_digits(splits: "DigitSplits", root: str | os.PathLike) -> Path:
    """The digits of ``splits`` as RGB PNG files under ``root`` and a manifest CSV with their split.

    Files are ``root/<split>/<index>_<label>.png``, so writing the same splits again rewrites
    the same files; the manifest is ``root/digits.csv`` (with its ``.meta.json``), classes
    ``"0"`` … ``"9"``.

    Args:
        splits: the digits.
        root: the folder to write (created).

    Returns:
        The manifest's path.
    """
    import pandas as pd
    from PIL import Image

    from itemrec.data.records import ImageDataset

    root = Path(root)
    rows = []
    for part in ("train", "val", "test"):
        x, y = getattr(splits, f"x_{part}"), getattr(splits, f"y_{part}")
        (root / part).mkdir(parents=True, exist_ok=True)
        for i, (img, label) in enumerate(zip(to_rgb(x), y)):
            path = root / part / f"{i:05d}_{int(label)}.png"
            Image.fromarray(img).save(path)
            rows.append({"path": str(path), "label": int(label), "class_name": str(int(label)), "split": part})
    return ImageDataset(pd.DataFrame(rows), [str(d) for d in range(10)], name="mnist").to_csv(root / "digits.csv")


def digit_config(
    name: str,
    output_dir: str | os.PathLike,
    manifest: str | os.PathLike,
    *,
    margin: float = 0.2,
    embedding_dim: int = 10,
    filters: Sequence[int] = (32, 64, 128),
    n_triplets: int = 10_000,
    epochs: int = 3,
    p: int = 10,
    k: int = 6,
    learning_rate: float = 1e-3,
    seed: int = 0,
) -> Any:
    """The triplet network of the module docstring as an :class:`itemrec.training.ExperimentConfig`.

    All layers train from scratch with Adam for a fixed number of epochs (``monitor="last"``);
    the miner is ``random`` and the distance squared L2 (Schroff et al. 2015).

    Args:
        name: run name (stem; see :func:`itemrec.training.runs.keyed`).
        output_dir: where runs go.
        manifest: a :func:`write_digits` CSV.
        margin: the hinge margin on squared L2 distances of unit embeddings (``d ∈ [0, 4]``).
        embedding_dim: the embedding width (default 10).
        filters: the small CNN's block filters.
        n_triplets: random triplets per epoch: ``ceil(n_triplets / (p · k))`` steps of ``p`` digits × ``k``
            images, each image the anchor of one triplet.
        epochs: training epochs.
        p: digit classes per batch.
        k: images per class in a batch.
        learning_rate: Adam's learning rate.
        seed: weights and batches.

    Returns:
        The validated config.

    Raises:
        ConfigError: e.g. a negative margin.
    """
    from itemrec.training import ExperimentConfig

    steps = max(1, math.ceil(int(n_triplets) / (int(p) * int(k))))
    return ExperimentConfig.from_dict({
        "name": name, "output_dir": str(output_dir), "seed": int(seed),
        "data": {"name": str(manifest)},
        "split": {"kind": "given"},
        "model": {"backbone": "small_cnn", "weights": None, "input_size": 28, "cnn_filters": [int(f) for f in filters],
                  "head": "mlp", "hidden": None, "dropout": 0.0, "embedding_dim": int(embedding_dim)},
        "loss": {"class_name": "TripletLoss", "config": {
            "margin": float(margin), "miner": {"class_name": "RandomTripletMiner", "config": {"seed": int(seed)}},
            "distance": "squared_l2"}},
        "train": {"frozen_epochs": 0, "finetune_epochs": int(epochs), "finetune_layers": "all",
                  "finetune_lr": float(learning_rate), "p": int(p), "k": int(k), "steps_per_epoch": steps,
                  "monitor": "last", "tensorboard": False},
    })


def embed_digits(model: Any, images: np.ndarray) -> np.ndarray:
    """Embeddings (N, D) float32 of grey digit-like images by a run's :class:`itemrec.embedder.ImageEmbedder`.

    Args:
        model: the embedder (its ``embed_arrays`` takes uint8 RGB images).
        images: (N, 28, 28) grey images (cast to uint8).

    Returns:
        (N, D) float32.

    Raises:
        ValueError: ``images`` is not 3-D.
    """
    return np.asarray(model.embed_arrays(to_rgb(np.asarray(images, np.uint8))), dtype=np.float32)


def triplet_accuracy(embeddings: np.ndarray, labels: np.ndarray, n: int = 5000, seed: int = 0) -> float:
    """Fraction of ``n`` random triplets with ``‖a − p‖² < ‖a − n‖²``.

    Triplets from :func:`itemrec.data.sampling.random_triplets`.

    Args:
        embeddings: (N, D) embeddings.
        labels: (N,) labels.
        n: how many triplets.
        seed: the seed of the draw.

    Returns:
        The fraction, in [0, 1].

    Raises:
        ValueError: fewer than 2 classes, or no class with two images.
    """
    from itemrec.data.sampling import random_triplets

    e = np.asarray(embeddings, dtype=np.float64)
    t = random_triplets(labels, n, seed=seed)
    d_ap = ((e[t[:, 0]] - e[t[:, 1]]) ** 2).sum(axis=1)
    d_an = ((e[t[:, 0]] - e[t[:, 2]]) ** 2).sum(axis=1)
    return float(np.mean(d_ap < d_an))


@dataclass
class MarginRun:
    """One margin of :func:`margin_sweep`, scored on the validation digits.

    Attributes:
        margin: the triplet margin.
        model: the run's :class:`itemrec.embedder.ImageEmbedder`.
        history: logged value -> one entry per epoch (``loss``, ``active_fraction``, ...).
        recall_at_1: validation Recall@1 (leave-one-out, cosine), in [0, 1].
        map_at_r: validation MAP@R (Musgrave et al. 2020), in [0, 1].
        triplet_accuracy: :func:`triplet_accuracy` on the validation digits.
        seconds: training time (NaN when not recorded).
    """

    margin: float
    model: Any
    history: dict[str, list[float]]
    recall_at_1: float
    map_at_r: float
    triplet_accuracy: float
    seconds: float


@dataclass
class MarginSweep:
    """The runs of :func:`margin_sweep`.

    Attributes:
        runs: one :class:`MarginRun` per margin, in sweep order.
    """

    runs: list[MarginRun] = field(default_factory=list)

    def table(self) -> pd.DataFrame:
        """One row per margin.

        Returns:
            pandas.DataFrame with ``margin``, ``val_recall_at_1``, ``val_map_at_r``,
            ``val_triplet_accuracy``, ``final_loss``, ``final_active_fraction`` (NaN when not
            logged) and ``seconds``.
        """
        return pd.DataFrame(
            [dict(margin=r.margin, val_recall_at_1=r.recall_at_1, val_map_at_r=r.map_at_r,
                  val_triplet_accuracy=r.triplet_accuracy, final_loss=r.history["loss"][-1],
                  final_active_fraction=r.history.get("active_fraction", [np.nan])[-1], seconds=r.seconds)
             for r in self.runs]
        )

    def best(self, metric: str = "map_at_r") -> MarginRun:
        """The run with the highest ``metric``.

        Args:
            metric: a :class:`MarginRun` attribute: ``"map_at_r"`` (default), ``"recall_at_1"``
                or ``"triplet_accuracy"``.

        Returns:
            The best :class:`MarginRun` (the first one on ties).

        Raises:
            ValueError: the sweep is empty.
        """
        if not self.runs:
            raise ValueError("empty sweep")
        return max(self.runs, key=lambda r: getattr(r, metric))


def margin_sweep(splits: DigitSplits, margins: Sequence[float] = (0.1, 0.2, 0.5, 1.0), out_dir: str | os.PathLike = "runs",
                 progress: bool = False, **config_kwargs: Any) -> MarginSweep:
    """One run of the trainer per margin (:func:`digit_config`, same seed), scored on the validation digits.

    Args:
        splits: the digits; written once to ``out_dir/digits`` (:func:`write_digits`).
        margins: the margins.
        out_dir: runs go to ``out_dir``, named by margin and training hash, and are kept.
        progress: progress bars.
        **config_kwargs: the other :func:`digit_config` arguments.

    Returns:
        The :class:`MarginSweep` (each run's ``model`` is its :class:`itemrec.embedder.ImageEmbedder`).

    Raises:
        ValueError: no margins.
    """
    from itemrec.embedder import ImageEmbedder
    from itemrec.evaluation import retrieval_report
    from itemrec.training.runs import keyed, run_or_load

    it = list(margins)
    if not it:
        raise ValueError("give at least one margin")
    manifest = write_digits(splits, Path(out_dir) / "digits")
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="margins", unit="net")
    config_kwargs.setdefault("p", min(10, len(np.unique(splits.y_train))))
    sweep = MarginSweep()
    for m in it:
        res = run_or_load(keyed(digit_config("digits", out_dir, manifest, margin=float(m), **config_kwargs),
                                ("loss.config.margin",)), progress=progress)
        model = ImageEmbedder.load(res.run_dir / "embedding.keras")
        emb = embed_digits(model, splits.x_val)
        rep = retrieval_report(emb, splits.y_val, ks=(1,), metric="cosine")
        hist = {c: res.history[c].astype(float).tolist() for c in res.history.columns if c not in ("epoch", "phase")}
        sweep.runs.append(MarginRun(float(m), model, hist, rep.recall_at_k[1], rep.map_at_r,
                                    triplet_accuracy(emb, splits.y_val), float(res.training.get("seconds", np.nan))))
    return sweep


def softmax_classifier(embeddings: np.ndarray, labels: np.ndarray, c: float = 10.0, seed: int = 0) -> Any:
    """Softmax (multinomial logistic) regression on embeddings; ``predict_proba`` gives the class probabilities.

    scikit-learn's ``LogisticRegression`` (L2 penalty, lbfgs, at most 2000 iterations).

    Args:
        embeddings: (N, D) training embeddings.
        labels: (N,) labels.
        c: the inverse regularisation strength ``C``.
        seed: its random state.

    Returns:
        The fitted ``LogisticRegression``.
    """
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=float(c), max_iter=2000, random_state=seed).fit(np.asarray(embeddings, np.float64), labels)


@dataclass
class GiniExperiment:
    """Rejection of non-digits by Gini impurity; ``report`` holds the rates and the ROC.

    Attributes:
        report: the :class:`itemrec.evaluation.RejectionReport` (threshold, rejection rates, ROC).
        in_impurity: (n,) Gini impurity ``1 − Σ p²`` of the test digits, in [0, 1 − 1/C].
        out_impurity: (m,) that of the non-digit glyphs.
    """

    report: Any  # itemrec.evaluation.RejectionReport
    in_impurity: np.ndarray  # test digits
    out_impurity: np.ndarray  # non-digit glyphs


def gini_rejection(
    classifier: Any,
    val_embeddings: np.ndarray,
    test_embeddings: np.ndarray,
    out_embeddings: np.ndarray,
    target_in_rejection: float = 0.05,
) -> GiniExperiment:
    """Fit τ on validation digits (reject ``target_in_rejection`` of them), report on test digits vs ``out``.

    An input is rejected as "not a digit" when the Gini impurity ``1 − Σ p_i²`` of its
    softmax probabilities exceeds τ.

    Args:
        classifier: fitted, with ``predict_proba`` (n, d) -> (n, C).
        val_embeddings: (n_val, d) validation digits (fit τ).
        test_embeddings: (n, d) test digits.
        out_embeddings: (m, d) non-digits (glyphs).
        target_in_rejection: the fraction of validation digits to reject, in [0, 1).

    Returns:
        The :class:`GiniExperiment`.

    Raises:
        ValueError: ``target_in_rejection`` outside [0, 1).
    """
    from itemrec.evaluation import fit_gini_threshold, gini_impurity, gini_rejection_report

    p_val, p_in, p_out = (classifier.predict_proba(np.asarray(e, np.float64)) for e in (val_embeddings, test_embeddings, out_embeddings))
    tau = fit_gini_threshold(p_val, target_in_rejection)
    report = gini_rejection_report(tau, p_in, p_out)
    return GiniExperiment(report, np.atleast_1d(gini_impurity(p_in)), np.atleast_1d(gini_impurity(p_out)))


def original_gini_rule(classifier: Any, test_embeddings: np.ndarray, out_embeddings: np.ndarray,
                       threshold: float = 0.87) -> dict[str, float]:
    """The original write-up's rule: the Gini *coefficient* of the softmax vector, "not a digit" when above ``threshold``.

    The coefficient (:func:`itemrec.evaluation.lorenz_gini`) measures inequality: 0 for the uniform
    vector, ``1 − 1/C`` (0.9 for ten digits) for a one-hot one; the original rejected above a
    hand-set 0.87.

    Args:
        classifier: fitted, with ``predict_proba`` (n, d) -> (n, C).
        test_embeddings: (n, d) test digits.
        out_embeddings: (m, d) non-digits.
        threshold: reject when the coefficient exceeds it.

    Returns:
        ``threshold``, ``digit_rejection`` and ``letter_rejection`` (fractions rejected) and ``auc``: the
        ROC AUC of the coefficient as a non-digit score in the original's direction (higher = reject;
        below 0.5 means the direction is backwards).
    """
    from sklearn.metrics import roc_auc_score

    from itemrec.evaluation.gini import lorenz_gini

    g_in, g_out = (np.atleast_1d(lorenz_gini(classifier.predict_proba(np.asarray(e, np.float64))))
                   for e in (test_embeddings, out_embeddings))
    y = np.r_[np.zeros(len(g_in)), np.ones(len(g_out))]
    return {"threshold": float(threshold), "digit_rejection": float(np.mean(g_in > threshold)),
            "letter_rejection": float(np.mean(g_out > threshold)), "auc": float(roc_auc_score(y, np.r_[g_in, g_out]))}


def plot_rejection(exp: GiniExperiment, path: str | os.PathLike | None = None):
    """Histograms of the Gini impurity of digits and non-digits with τ, and the ROC of impurity as a non-digit score.

    Args:
        exp: the :class:`GiniExperiment`.
        path: where to save the figure too; parents are created.

    Returns:
        The ``matplotlib.figure.Figure``.
    """
    from itemrec.plots._common import maybe_save, new_figure

    r = exp.report
    fig = new_figure(10.0, 3.8)
    ax = fig.add_subplot(1, 2, 1)
    bins = np.linspace(0, 0.9, 46)
    ax.hist(exp.in_impurity, bins=bins, alpha=0.6, density=True, label=f"test digits (rejected {r.in_rejection_rate:.1%})")
    ax.hist(exp.out_impurity, bins=bins, alpha=0.6, density=True, label=f"letters (rejected {r.out_rejection_rate:.1%})")
    ax.axvline(r.threshold.value, color="k", ls="--", lw=1, label=f"τ = {r.threshold.value:.3f}")
    ax.set_xlabel("Gini impurity 1 − Σ p²")
    ax.set_ylabel("density")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax.set_title("softmax spread: digits vs non-digits")
    ax = fig.add_subplot(1, 2, 2)
    ax.plot(r.fpr, r.tpr, label=f"Gini impurity (AUC {r.auc:.3f})")
    ax.plot([0, 1], [0, 1], color="0.7", lw=0.8, ls=":")
    ax.plot([r.in_rejection_rate], [r.out_rejection_rate], "k*", ms=11, label="fitted τ")
    ax.set_xlabel("digits rejected (false positive rate)")
    ax.set_ylabel("letters rejected (true positive rate)")
    ax.set_title("rejection ROC")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return maybe_save(fig, path)


def plot_samples(digits: np.ndarray, letters: np.ndarray, n: int = 12, path: str | os.PathLike | None = None):
    """Two rows of grey 28×28 images: ``n`` MNIST digits above ``n`` non-digit glyphs.

    Args:
        digits: (N, 28, 28) digits (the first ``n`` drawn).
        letters: (M, 28, 28) glyphs (the first ``n`` drawn).
        n: images per row.
        path: where to save the figure too; parents are created.

    Returns:
        The ``matplotlib.figure.Figure``.
    """
    from itemrec.plots._common import maybe_save, new_figure

    fig = new_figure(0.8 * n, 1.9)
    for r, (row, name) in enumerate(((digits, "MNIST"), (letters, "glyphs"))):
        for c in range(min(n, len(row))):
            ax = fig.add_subplot(2, n, r * n + c + 1)
            ax.imshow(row[c], cmap="gray", vmin=0, vmax=255)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(name, fontsize=8)
    return maybe_save(fig, path)
