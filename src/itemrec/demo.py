"""The embedded demo (``itemrec demo``): catalogue → training → evaluation → gallery → recognition.

Works offline on a fresh machine: it uses only the embedded synthetic catalogue
(:mod:`itemrec.data.synthetic`) and a small CNN trained from scratch, so no
dataset or weights file is needed. Every step is seeded, so the same ``seed``
gives the same metrics.

1. **Catalogue**: :func:`itemrec.data.synthetic.write_catalogue` renders the
   products (one catalogue image each, plus shelf photos) into ``out/catalogue``.
2. **Split and train**: :func:`itemrec.training.run_experiment` splits the
   products class-disjointly (half *seen* for training, half *unseen*, whose
   photos form ``calib`` and ``test``) and trains ``small_cnn`` with a
   normalised-softmax (cosine) loss (Wang et al., "NormFace", 2017;
   ``s · cos θ`` logits) into ``out/run``.
3. **Evaluate** (:func:`itemrec.training.evaluate_run`, on unseen products
   only): CMC against the catalogue images over many random query draws,
   Recall@K and MAP@R, VAL at fixed FAR with the threshold fitted on ``calib``
   and reported on ``test``, open-set DIR@FAR.
4. **Gallery** (:class:`itemrec.gallery.Gallery`, SQLite + FAISS, in
   ``out/gallery``): the unseen products are enrolled from their catalogue
   image and ``enrol_photos`` of their ``calib`` photos, except
   ``unknown_products`` of them, which are never enrolled nor seen before query
   time. The unknown threshold is calibrated
   (:meth:`~itemrec.gallery.Gallery.calibrate`) on the other ``calib`` photos
   of the enrolled products for a target false-accept rate (FPIR).
5. **Recognise** every ``test`` photo of the unseen products, and draw a few
   of them with their top matches; photos of never-enrolled products should
   come back *unknown*. The outcome, whatever it is, goes into the report.
6. **Report**: ``out/report.md`` with the plots beside it and ``out/demo.json``
   (see :mod:`itemrec.demo_report`).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from itemrec._jsonio import json_default

MARKER = ".itemrec-demo"


class DemoError(ValueError):
    """The demo cannot run as asked (for instance the output folder holds other files)."""


@dataclass(frozen=True)
class DemoSize:
    """How big the demo is. :data:`FULL` trains for about 1–3 minutes on 2 CPU cores; :data:`QUICK` is for tests.

    Attributes:
        products: synthetic products (classes) in the catalogue; half are seen in training.
        photos: shelf photos rendered per product.
        image_size: image side in pixels (the catalogue's and the model's input).
        embedding_dim: the embedding size D.
        epochs: training epochs (the small CNN trains from scratch, all layers).
        steps_per_epoch: batches per epoch.
        batch_size: images per batch.
        learning_rate: the Adam learning rate.
        enrol_photos: ``calib`` photos enrolled per product besides its catalogue image.
        unknown_products: unseen products never enrolled (their photos should be rejected).
        target_far: the false-accept rate (FPIR) the unknown threshold is calibrated for, and
            the evaluation's DIR@FAR target.
        cmc_draws: query draws of the CMC evaluation.
        shown_known: photos of enrolled products drawn in the report.
        shown_per_unknown: photos drawn per never-enrolled product.
        top_k: matches returned (and drawn) per query.
    """

    products: int = 200
    photos: int = 30
    image_size: int = 64
    embedding_dim: int = 64
    epochs: int = 20
    steps_per_epoch: int = 40
    batch_size: int = 32
    learning_rate: float = 1e-3
    enrol_photos: int = 3
    unknown_products: int = 2
    target_far: float = 0.05
    cmc_draws: int = 200
    shown_known: int = 6
    shown_per_unknown: int = 2
    top_k: int = 3


FULL = DemoSize()
QUICK = DemoSize(products=12, photos=8, image_size=32, embedding_dim=16, epochs=15, steps_per_epoch=8, batch_size=16,
                 learning_rate=3e-3, enrol_photos=1, unknown_products=1, cmc_draws=20, shown_known=3, shown_per_unknown=2, top_k=2)


@dataclass
class QueryOutcome:
    """What the gallery said about one query photo.

    Attributes:
        path: the photo's file.
        product: its true product (item id).
        enrolled: whether that product is in the gallery.
        decision: the recognised item id, or ``None`` for "unknown" (below the threshold).
        best_item: the most similar item, whatever the threshold (``None`` for an empty gallery).
        best_similarity: its cosine similarity in [−1, 1] (``-inf`` without one).
        top_items: the ``top_k`` nearest items, most similar first.
        top_similarities: their similarities.
    """

    path: str
    product: str
    enrolled: bool
    decision: str | None  # the recognised item id, None = "unknown"
    best_item: str | None
    best_similarity: float
    top_items: list[str]
    top_similarities: list[float]

    @property
    def correct(self) -> bool:
        """Right when an enrolled product is recognised as itself, or a never-enrolled one is rejected."""
        return self.decision == self.product if self.enrolled else self.decision is None


@dataclass
class DemoResult:
    """Everything the demo measured; ``to_dict`` is what ``demo.json`` holds.

    Attributes:
        out_dir: the demo's folder (absolute).
        settings: the :class:`DemoSize` fields, ``seed``, ``quick``, the model and the loss.
        dataset: product and image counts (seen/unseen products, images per split).
        metrics: the training run's evaluation (:func:`itemrec.training.evaluate_run`).
        calibration: the gallery's unknown threshold, its target FAR, and the FAR/DIR and
            impostor/mated counts on the calibration photos.
        recognition: outcome rates and counts over every test photo
            (:func:`itemrec.demo_report.recognition_counts`) and other operating points.
        gallery: the gallery's description, its integrity check, and the enrolled and
            never-enrolled products.
        shown: the query outcomes drawn in the report.
        timings: seconds per step (``catalogue``, ``train``, ``enrol``, ..., ``total``,
            ``total_cpu``).
        files: names (``"report.md"``, ``"demo.json"``) to the paths written.
    """

    out_dir: Path
    settings: dict[str, Any]
    dataset: dict[str, Any]
    metrics: dict[str, Any]
    calibration: dict[str, Any]
    recognition: dict[str, Any]
    gallery: dict[str, Any]
    shown: list[QueryOutcome]
    timings: dict[str, float]
    files: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON-ready values (what ``demo.json`` holds).

        Returns:
            Every field as a dict entry, ``out_dir`` as a string and each shown outcome as a
            dict with its ``correct`` flag added. NumPy values are left as they are (the
            writer's JSON default converts them).
        """
        out = {k: v for k, v in asdict(self).items() if k != "shown"}
        out["out_dir"] = str(self.out_dir)
        out["shown"] = [{**asdict(q), "correct": q.correct} for q in self.shown]
        return out

    def summary_lines(self) -> list[str]:
        """The short summary ``itemrec demo`` prints (:func:`itemrec.demo_report.summary_lines`).

        Returns:
            The lines, without newlines.
        """
        from itemrec.demo_report import summary_lines

        return summary_lines(self)


def _prepare_out(out: Path) -> None:
    """Create ``out`` or reuse a folder an earlier demo wrote; refuse a non-empty foreign folder."""
    if out.exists() and not out.is_dir():
        raise DemoError(f"--out {out} is a file; give a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise DemoError(f"--out {out} is not empty and was not written by `itemrec demo`; choose another folder")
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("written by `itemrec demo`; the demo may replace everything in this folder\n")
    for name in ("catalogue", "gallery"):
        shutil.rmtree(out / name, ignore_errors=True)


def demo_config(out: Path, manifest: Path, size: DemoSize, seed: int) -> Any:
    """The :class:`~itemrec.training.ExperimentConfig` of the demo's training run (``out/run``).

    ``small_cnn`` from scratch (no weights, every layer trained for ``size.epochs`` epochs, no
    frozen phase), the cosine-softmax loss at scale 16, an open split of half the products
    (no validation classes), cosine evaluation.

    Args:
        out: the demo's folder (the run goes to ``out/run``).
        manifest: the catalogue's manifest CSV.
        size: the :class:`DemoSize`.
        seed: the run's and the split's seed.

    Returns:
        The validated config.
    """
    from itemrec.training.config import (DataConfig, EvalConfig, ExperimentConfig, LossConfig, ModelConfig,
                                         SplitConfig, TrainConfig)

    return ExperimentConfig(
        name="run", output_dir=str(out), seed=seed,
        data=DataConfig(name=str(manifest)),
        split=SplitConfig(kind="open", unseen_fraction=0.5, val_fraction=0.2, calib_fraction=0.3, seed=seed,
                          val_classes_fraction=0.0),
        model=ModelConfig(backbone="small_cnn", weights=None, input_size=size.image_size, embedding_dim=size.embedding_dim,
                          hidden=None, dropout=0.0),
        loss=LossConfig("SoftmaxLoss", {"head": {"class_name": "CosineSoftmax", "config": {"scale": 16.0}}}),
        train=TrainConfig(frozen_epochs=0, finetune_epochs=size.epochs, finetune_lr=size.learning_rate,
                          finetune_layers="all", batch_size=size.batch_size, steps_per_epoch=size.steps_per_epoch,
                          tensorboard=False),
        eval=EvalConfig(metric="cosine", cmc_draws=size.cmc_draws, max_rank=10, far_targets=(1e-2, 1e-3),
                        dir_far=size.target_far),
    )


def enable_deterministic_ops() -> bool:
    """Deterministic kernels from now on, for the whole process (TensorFlow backend).

    Without it, multi-threaded CPU kernels may add floats in a different order from run to
    run, and the demo's training drifts apart (rank-1 0.700 vs 0.714 in two runs of seed 0).
    Uses the public ``tf.config.experimental.enable_op_determinism``, which TensorFlow offers
    no public way to undo: ``itemrec demo`` runs in its own process; a notebook or script
    calling :func:`run_demo` keeps deterministic kernels afterwards.

    Returns:
        Whether determinism was switched on (``False`` on the JAX and PyTorch backends).
    """
    import keras

    if keras.backend.backend() != "tensorflow":
        return False
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()
    return True


def _families(n_products: int, seed: int) -> list[int]:
    from itemrec.data.synthetic import make_specs

    return [s.family for s in make_specs(n_products, seed)]


def run_demo(out_dir: str | os.PathLike = "models/demo", quick: bool = False, seed: int = 0,
             progress: bool = True, size: DemoSize | None = None) -> DemoResult:
    """Run the whole demo into ``out_dir`` (see the module docstring) and write ``report.md``.

    Switches TensorFlow op determinism on for the rest of the process (:func:`enable_deterministic_ops`).
    A folder an earlier demo wrote is reused: its run is retrained and its catalogue and
    gallery are replaced.

    Args:
        out_dir: the output folder: new, empty, or one an earlier demo wrote.
        quick: use :data:`QUICK` instead of :data:`FULL` (ignored when ``size`` is given).
        seed: the seed of every step, an integer >= 0.
        progress: training and enrolment progress output.
        size: the demo's :class:`DemoSize`, or ``None`` for ``QUICK``/``FULL``.

    Returns:
        The :class:`DemoResult`; ``out_dir`` holds ``report.md``, ``demo.json``, the plots,
        ``catalogue/``, ``run/`` and ``gallery/``.

    Raises:
        DemoError: ``seed`` not an integer >= 0; ``out_dir`` is a file, or a non-empty folder
            the demo did not write; a ``size`` that leaves no product to enrol or no
            calibration photo.
        ConfigError: a ``size`` the training config rejects (e.g. ``batch_size`` < 2).
    """

    from itemrec.data.synthetic import write_catalogue
    from itemrec.demo_report import operating_points, pick_shown, recognition_counts, write_markdown, write_plots
    from itemrec.embedder import ImageEmbedder
    from itemrec.gallery import Gallery
    from itemrec.training import SplitData, run_experiment

    size = size or (QUICK if quick else FULL)
    if not isinstance(seed, int) or seed < 0:
        raise DemoError(f"seed must be an integer >= 0; got {seed!r}")
    out = Path(out_dir).expanduser().resolve()
    _prepare_out(out)
    timings: dict[str, float] = {}
    t_all, cpu0 = time.perf_counter(), time.process_time()

    t = time.perf_counter()
    ds = write_catalogue(out / "catalogue", size.products, size.photos, size.image_size, seed)
    manifest = ds.to_csv(out / "catalogue" / "manifest.csv")
    timings["catalogue"] = time.perf_counter() - t

    t = time.perf_counter()
    config = demo_config(out, manifest, size, seed)  # imports Keras
    timings["setup"] = time.perf_counter() - t
    t = time.perf_counter()
    enable_deterministic_ops()
    run = run_experiment(config, overwrite=True, progress=progress, evaluate=True)
    timings["train"] = float(run.training["phases"]["phase2"]["seconds"])
    timings["train_and_evaluate"] = time.perf_counter() - t
    metrics = run.metrics

    # -- gallery: enrol the unseen products, except the never-enrolled ones ------------------
    t = time.perf_counter()
    splits = SplitData.load(run.run_dir / "splits")
    test, calib = splits.test, splits.calib
    names = test.class_names
    unseen = np.unique(test.labels)
    if len(unseen) <= size.unknown_products:
        raise DemoError(f"{len(unseen)} unseen products cannot leave {size.unknown_products} unknown and enrol the rest")
    rng = np.random.default_rng([seed, 2024])
    unknown = np.sort(rng.choice(unseen, size=size.unknown_products, replace=False))
    enrolled = np.setdiff1d(unseen, unknown)
    embedder = ImageEmbedder.load(run.run_dir / "embedding.keras")
    gallery = Gallery.create(out / "gallery", embedder, prototype="each")
    first = np.zeros(len(calib), bool)  # the first enrol_photos calib photos of each enrolled product
    for c in enrolled:
        first[np.flatnonzero(calib.labels == c)[: size.enrol_photos]] = True
    gallery.enroll_many([(names[c], names[c], [test.representatives[int(c)], *calib.paths[first & (calib.labels == c)]])
                         for c in enrolled], progress=progress, total=len(enrolled))
    timings["enrol"] = time.perf_counter() - t

    t = time.perf_counter()  # calibrate on the other calib photos of the enrolled products
    known_calib = calib.subset(np.isin(calib.labels, enrolled) & ~first)
    if not len(known_calib):
        raise DemoError(f"no calibration photos left after enrolling {size.enrol_photos} per product; lower enrol_photos")
    calib_set = embedder.embed(list(known_calib.paths), known_calib.labels)
    calib_emb, calib_ids = calib_set.vectors, [names[c] for c in calib_set.labels]
    cal = gallery.calibrate(calib_emb, calib_ids, target_far=size.target_far)
    timings["calibrate"] = time.perf_counter() - t

    # -- recognise every test photo of the unseen products -------------------------------------
    t = time.perf_counter()
    q_set = embedder.embed(list(test.paths), test.labels)
    q_emb, q_labels, q_paths = q_set.vectors, q_set.labels, q_set.paths
    results = gallery.query(vectors=q_emb, k=size.top_k, fingerprint=embedder.fingerprint_id)
    enrolled_set = {names[c] for c in enrolled}
    outcomes = [
        QueryOutcome(str(p), names[c], names[c] in enrolled_set, r.item_id,
                     r.best.item_id if r.best else None, float(r.best.similarity) if r.best else float("-inf"),
                     [m.item_id for m in r.matches], [float(m.similarity) for m in r.matches])
        for p, c, r in zip(q_paths, q_labels, results)
    ]
    op_points = operating_points(gallery, calib_emb, calib_ids, q_emb, [names[c] for c in q_labels], enrolled_set)
    timings["recognise"] = time.perf_counter() - t
    check = gallery.check()
    gallery_info = {**gallery.describe(), "integrity_ok": check.ok, "problems": check.problems,
                    "enrolled": sorted(enrolled_set), "unknown": [names[c] for c in unknown]}
    gallery.close()

    families = _families(size.products, seed)
    fam_of = {names[c]: families[int(c)] for c in unseen}
    recognition = recognition_counts(outcomes, fam_of, enrolled_set)
    recognition["operating_points"] = op_points
    shown = pick_shown(outcomes, size.shown_known, size.shown_per_unknown, rng)
    result = DemoResult(
        out_dir=out,
        settings={**asdict(size), "seed": seed, "quick": quick, "model": "small_cnn from scratch", "loss": "cosine (NormFace)"},
        dataset={"products": size.products, "photos_per_product": size.photos, "image_size": size.image_size,
                 "seen_products": splits.n_train_classes, "unseen_products": int(len(unseen)),
                 "train_images": len(splits.train), "val_images": len(splits.val),
                 "calib_images": len(calib), "test_images": len(test)},
        metrics=metrics,
        calibration={"threshold": cal.threshold, "target_far": cal.target_far, "far_calib": cal.far,
                     "dir_calib": cal.dir, "n_impostor": cal.n_impostor, "n_mated": cal.n_mated},
        recognition=recognition, gallery=gallery_info, shown=shown, timings=timings,
    )
    t = time.perf_counter()
    plots = write_plots(result, run.run_dir, gallery_images={names[c]: test.representatives[int(c)] for c in enrolled})
    timings["plots"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t_all
    timings["total_cpu"] = time.process_time() - cpu0
    write_markdown(result, plots)
    (out / "demo.json").write_text(json.dumps(result.to_dict(), indent=1, default=_json_default) + "\n")
    result.files["demo.json"] = str(out / "demo.json")
    return result


def _json_default(x: Any) -> Any:
    return str(x) if isinstance(x, Path) else json_default(x)


__all__ = ["run_demo", "demo_config", "DemoResult", "DemoSize", "QueryOutcome", "DemoError", "FULL", "QUICK"]
