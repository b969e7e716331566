"""The same open-set head training in PyTorch + pytorch-metric-learning (PML), next to itemrec's Keras run.

What it measures: for each finished itemrec run folder (frozen backbone, ``model.head == "linear"``,
``head_init == "identity"``, loss ``cosine``/``proxy_anchor``/``multi_similarity``/``contrastive``),
it retrains phase 1 in PyTorch on the *same* cached backbone features (train rows plus
``train.catalogue_copies`` copies of each training class's catalogue image), the *same* P×K index
batches (``batch_indices``, seed ``config.seed + 1``), a ``torch.nn.Linear(D, D)`` starting at the
identity with L2-normalised output, the PML loss of the same name and parameters (class vectors
started at the catalogue embeddings when ``loss.init_from_catalogue``), Adam at ``train.frozen_lr``
over head and loss parameters, and itemrec's model selection (``open_set_scores`` on the validation
classes, the starting weights as epoch -1, early stopping with the run's patience). It then scores
the chosen weights once on the test split as ``itemrec.training.report`` does (catalogue gallery of
the test classes). A gap between the two rows is then due to the implementation, not the method.

Run (the feature cache of the runs must hold their features; a miss runs the backbone)::

    ITEMREC_DATA=/work/shared/datasets ITEMREC_WEIGHTS=/work/shared/weights \\
        .venv/bin/python bench/pml_replication.py /tmp/gruns/grocery_open_linear [--epochs 2] [--out r.csv]

``--epochs`` overrides ``train.frozen_epochs`` (for quick checks: the Keras row stays the full run's).
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from itemrec import evaluation as ev
from itemrec.training.builders import resolve_weights
from itemrec.training.config import ExperimentConfig
from itemrec.training.data import SplitData, batch_indices
from itemrec.training.features import FeatureCache
from itemrec.training.selection import class_gallery, open_set_scores

LOSSES = ("cosine", "proxy_anchor", "multi_similarity", "contrastive")
COLUMNS = ("run", "implementation", "loss", "rank1_image", "rank5_image", "rank1", "recall_at_1", "map_at_r",
           "valcls_score", "best_epoch", "epochs_run", "train_seconds")


def load_data(cfg: ExperimentConfig, splits: SplitData) -> dict[str, np.ndarray]:
    """The cached features the Keras run trained, selected and was tested on (same path lists, same keys)."""
    m = cfg.model
    weights = resolve_weights(m.weights, m.backbone)
    cache = FeatureCache(cfg.cache_dir)

    def extractor():  # only called on a cache miss
        from itemrec.models import build_feature_extractor

        return build_feature_extractor(m.backbone, m.input_size, weights)

    def feats(paths):
        return cache.get_or_compute(extractor, [str(p) for p in paths], m.backbone, weights, m.input_size,
                                    m.resize_mode)

    d: dict[str, np.ndarray] = {}
    tr = feats(splits.train.paths)
    x, y = tr.features, splits.train.labels[tr.keep]
    n = splits.n_train_classes
    cat = feats(splits.train.representative_arrays(np.arange(n))[0])
    if len(cat.keep) != n:
        raise ValueError("a catalogue image of the training classes cannot be read")
    d["catalogue"] = cat.features
    copies = cfg.train.catalogue_copies
    d["x"] = np.concatenate([x] + [cat.features.astype(x.dtype)] * copies)
    d["y"] = np.concatenate([y] + [np.arange(n, dtype=y.dtype)] * copies)
    vc = splits.val_classes
    gal = class_gallery(vc)
    q = feats(gal.query_paths)
    d["vq"], d["vq_y"] = q.features, gal.query_labels[q.keep]
    g = feats(gal.gallery_paths)
    if len(g.keep) != len(gal.gallery_paths):
        raise ValueError("a gallery image of the validation classes cannot be read")
    d["vg"], d["vg_y"] = g.features, gal.gallery_labels
    te = feats(splits.test.paths)
    d["tq"], d["tq_y"] = te.features, splits.test.labels[te.keep]
    classes = np.unique(d["tq_y"])
    if all(int(c) in splits.test.representatives for c in classes):  # report._gallery: catalogue images
        paths, labels = splits.test.representative_arrays(classes)
    else:  # else the first calib image of each class
        first = [np.flatnonzero(splits.calib.labels == c)[0] for c in classes]
        paths, labels = [splits.calib.paths[i] for i in first], classes
    tg = feats(paths)
    d["tg"], d["tg_y"] = tg.features, np.asarray(labels)[tg.keep]
    print(f"  feature cache: {cache.hits} hits, {cache.misses} misses", file=sys.stderr)
    return d


def make_loss(cfg: ExperimentConfig, n_classes: int, dim: int, catalogue_emb: torch.Tensor):
    """``(PML loss, PML miner or None)`` with the run's parameters; class vectors from the catalogue if asked."""
    from pytorch_metric_learning import losses, miners

    c = cfg.loss
    miner = None
    if c.name == "cosine":
        loss = losses.NormalizedSoftmaxLoss(n_classes, dim, temperature=1.0 / c.scale)
        vectors = None if not c.init_from_catalogue else (loss.W, catalogue_emb.T)  # PML W is (D, n_classes)
    elif c.name == "proxy_anchor":
        loss = losses.ProxyAnchorLoss(n_classes, dim, margin=c.proxy_margin, alpha=c.proxy_alpha)
        vectors = None if not c.init_from_catalogue else (loss.proxies, catalogue_emb)  # (n_classes, D)
    elif c.name == "multi_similarity":
        loss = losses.MultiSimilarityLoss(alpha=c.ms_alpha, beta=c.ms_beta, base=c.ms_base)
        miner = None if c.ms_epsilon is None else miners.MultiSimilarityMiner(epsilon=c.ms_epsilon)
        vectors = None
    elif c.name == "contrastive":
        loss = losses.ContrastiveLoss(pos_margin=c.pos_margin, neg_margin=c.neg_margin)
        vectors = None
    else:
        raise SystemExit(f"{cfg.name}: loss {c.name!r} is not replicated (one of {LOSSES})")
    if vectors is not None:
        with torch.no_grad():
            vectors[0].copy_(vectors[1])
    return loss, miner


def train_pml(cfg: ExperimentConfig, d: dict[str, np.ndarray], epochs: int) -> tuple:
    """Phase 1 in PyTorch with itemrec's selection; ``(embed function with the chosen weights, info)``."""
    torch.manual_seed(cfg.seed)
    t, metric = cfg.train, cfg.eval.metric
    x, y = torch.from_numpy(d["x"].astype(np.float32)), torch.from_numpy(d["y"].astype(np.int64))
    dim = x.shape[1]
    head = torch.nn.Linear(dim, dim)
    with torch.no_grad():
        head.weight.copy_(torch.eye(dim))
        head.bias.zero_()

    def embed(a):
        out = head(a if torch.is_tensor(a) else torch.from_numpy(np.asarray(a, np.float32)))
        return torch.nn.functional.normalize(out, dim=1) if cfg.model.l2_normalize else out

    def scores() -> dict[str, float]:
        with torch.no_grad():
            return open_set_scores(embed(d["vq"]).numpy(), d["vq_y"], embed(d["vg"]).numpy(), d["vg_y"], metric)

    with torch.no_grad():  # loss.init_from_catalogue: the untrained head's (normalised) catalogue embeddings
        cat = torch.nn.functional.normalize(head(torch.from_numpy(d["catalogue"].astype(np.float32))), dim=1)
    loss_fn, miner = make_loss(cfg, int(d["y"].max()) + 1, dim, cat)
    params = list(head.parameters()) + list(loss_fn.parameters())
    opt = torch.optim.Adam(params, lr=t.frozen_lr, betas=(0.9, 0.999), eps=1e-7)  # Keras Adam's defaults
    idx = batch_indices(d["y"], epochs, t.global_batch, cfg.seed + 1, t.p, t.k, t.steps_per_epoch)
    start = scores()
    best, best_epoch = start["valcls_score"], -1
    best_state = copy.deepcopy((head.state_dict(), loss_fn.state_dict()))
    es_best, wait, history = None, 0, []  # keras.callbacks.EarlyStopping: does not see epoch -1
    t0 = time.perf_counter()
    for epoch in range(epochs):
        total = 0.0
        for step in idx[epoch]:
            b = torch.from_numpy(step)
            emb, labels = embed(x[b]), y[b]
            loss = loss_fn(emb, labels, miner(emb, labels)) if miner is not None else loss_fn(emb, labels)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item()
        s = scores()
        history.append({"epoch": epoch, "loss": total / len(idx[epoch]), **s})
        print(f"  epoch {epoch}: loss {total / len(idx[epoch]):.4f}  valcls_score {s['valcls_score']:.4f}",
              file=sys.stderr)
        if not np.isfinite(total):  # keras.callbacks.TerminateOnNaN
            break
        score = s["valcls_score"]
        if np.isfinite(score) and score > best:  # BestCheckpoint
            best, best_epoch = score, epoch
            best_state = copy.deepcopy((head.state_dict(), loss_fn.state_dict()))
        wait += 1
        if es_best is None or score > es_best:
            es_best, wait = score, 0
        elif t.early_stopping_patience and wait >= t.early_stopping_patience and epoch > 0:
            break
    seconds = time.perf_counter() - t0
    head.load_state_dict(best_state[0])
    loss_fn.load_state_dict(best_state[1])
    info = {"valcls_score": best, "best_epoch": best_epoch, "epochs_run": len(history), "train_seconds": seconds,
            "before_training": start["valcls_score"], "history": history}
    return embed, info


def test_metrics(cfg: ExperimentConfig, d: dict[str, np.ndarray], embed) -> dict[str, float]:
    """The open-set test metrics of ``report._open_set`` that the table shows."""
    metric = cfg.eval.metric
    with torch.no_grad():
        q, g = embed(d["tq"]).numpy(), embed(d["tg"]).numpy()
    max_rank = int(min(cfg.eval.max_rank, len(d["tg_y"])))
    image = ev.cmc_image_averaged(q, d["tq_y"], g, d["tg_y"], max_rank=max_rank, metric=metric)
    balanced = ev.cmc_representative(q, d["tq_y"], g, d["tg_y"], max_rank=max_rank, n_draws=cfg.eval.cmc_draws,
                                     seed=cfg.seed, metric=metric)
    retrieval = ev.retrieval_report(q, d["tq_y"], ks=(1, 5), metric=metric)
    return {"rank1_image": image.at(1), "rank5_image": image.at(min(5, max_rank)), "rank1": balanced.at(1),
            "recall_at_1": retrieval.recall_at_k[1], "map_at_r": retrieval.map_at_r}


def keras_row(run_dir: Path, cfg: ExperimentConfig) -> dict:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    phase = json.loads((run_dir / "training.json").read_text())["phases"]["phase1"]
    hist = run_dir / "phase1" / "history.csv"
    epochs_run = sum(1 for _ in open(hist)) - 1 if hist.is_file() else None
    return {"run": cfg.name, "implementation": "itemrec (Keras)", "loss": cfg.loss.name,
            **{k: metrics[k] for k in COLUMNS[3:8]}, "valcls_score": metrics["validation_classes"]["valcls_score"],
            "best_epoch": phase.get("best_epoch"), "epochs_run": epochs_run, "train_seconds": phase.get("seconds")}


def check_run(cfg: ExperimentConfig, splits: SplitData) -> None:
    m, problems = cfg.model, []
    if m.head != "linear" or m.head_init != "identity" or m.decay_to_init or m.dropout:
        problems.append("head must be linear, identity init, no decay_to_init, no dropout")
    if cfg.train.finetune_epochs or cfg.train.augment or not cfg.train.use_feature_cache:
        problems.append("only frozen-backbone runs on cached features (no phase 2, no augmentation)")
    if cfg.loss.name not in LOSSES or splits.kind != "open" or splits.val_classes is None:
        problems.append(f"open split with validation classes and a loss in {LOSSES}")
    if cfg.train.optimizer != "adam" or cfg.train.monitor not in ("auto", "valcls_score"):
        problems.append("Adam and valcls_score selection")
    if problems:
        raise SystemExit(f"{cfg.name}: not replicable here: " + "; ".join(problems))


def fmt(v) -> str:
    return "" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run_dirs", nargs="+", type=Path)
    ap.add_argument("--epochs", type=int, default=None, help="override train.frozen_epochs (quick checks)")
    ap.add_argument("--out", type=Path, default=None, help="also write the table as CSV")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = []
    for run_dir in args.run_dirs:
        cfg = ExperimentConfig.from_json(run_dir / "config.json")
        splits = SplitData.load(run_dir / "splits")
        check_run(cfg, splits)
        epochs = cfg.train.frozen_epochs if args.epochs is None else args.epochs
        print(f"{cfg.name}: loss {cfg.loss.name}, {epochs} epochs", file=sys.stderr)
        d = load_data(cfg, splits)
        embed, info = train_pml(cfg, d, epochs)
        rows.append(keras_row(run_dir, cfg))
        rows.append({"run": cfg.name, "implementation": "PML (PyTorch)", "loss": cfg.loss.name,
                     **test_metrics(cfg, d, embed), **{k: info[k] for k in COLUMNS[8:]}})
        if epochs != cfg.train.frozen_epochs:
            print(f"  note: PML ran {epochs} of the run's {cfg.train.frozen_epochs} epochs", file=sys.stderr)
    print("| " + " | ".join(COLUMNS) + " |")
    print("|" + "---|" * len(COLUMNS))
    for r in rows:
        print("| " + " | ".join(fmt(r[c]) for c in COLUMNS) + " |")
    if args.out:
        with open(args.out, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=COLUMNS)
            w.writeheader()
            w.writerows(rows)
    return rows


if __name__ == "__main__":
    main()
