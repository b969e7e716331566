"""Regenerate notebooks 01-03 (stored without outputs): ``python notebooks/_build/build_01_03.py``."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from nbgen import code, md, params, write_notebook  # noqa: E402

HERE = Path(__file__).resolve().parents[1]

SETUP = """
    import os
    from pathlib import Path

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import pandas as pd
    from IPython.display import Image, display

    from itemrec import plots
    from itemrec.experiments.results_io import save_results

    pd.set_option("display.precision", 3)
    out = Path(OUT_DIR)
    out.mkdir(parents=True, exist_ok=True)
"""


def nb01() -> list:
    return [
        md("""
        # 01 · Triplet loss for grocery item recognition

        **Goal.** Recognise grocery products that the model has **never seen in training**, by
        comparing an embedding of a shelf photo with the embedding of each product's catalogue
        image. We learn the embedding with the triplet loss (Weinberger & Saul 2009; Schroff et al.,
        *FaceNet*, 2015): for an anchor $a$, a positive $p$ of the same product and a negative $n$
        of another,

        $$\\ell(a,p,n) = \\max\\big(\\lVert f(a)-f(p)\\rVert^2 - \\lVert f(a)-f(n)\\rVert^2 + m,\\ 0\\big).$$

        Which triplets we train on matters as much as the loss. We compare the original **random**
        triplets with two miners over P×K batches (P products × K photos): **batch-hard** (hardest
        positive and negative per anchor, Hermans et al. 2017) and **semi-hard** (the nearest negative
        still farther than the positive, FaceNet). Everything runs through the `itemrec` package;
        this notebook only wires the steps together.
        """),
        md("""
        ## Parameters

        `QUICK = True` trains on a few images per class for a couple of epochs (a smoke run, well
        under two minutes on a laptop CPU); `QUICK = False` is the configuration whose numbers the
        README reports. `BACKBONE` is `"mobilenet_v2"` (the local ImageNet weights file),
        `"inception_v3"` (ImageNet weights downloaded by Keras: needs internet and `INPUT_SIZE ≥ 75`)
        or `"small_cnn"` (from scratch).
        """),
        params("""
        QUICK = True
        DATA_ROOT = None  # folder holding grocery-store/; None: $ITEMREC_DATA
        OUT_DIR = "outputs/01_triplet"
        BACKBONE = "mobilenet_v2"
        WEIGHTS = "auto"  # "local" file for MobileNetV2, "imagenet" (download) for the others, None: random
        INPUT_SIZE = 96
        EMBEDDING_DIM = 128
        MARGIN = 0.2
        MINERS = ("random", "batch_hard", "semi_hard")
        MINER = "semi_hard"  # the miner of the small-CNN comparison
        EPOCHS = 20  # frozen-backbone epochs (head on cached features)
        FINETUNE_EPOCHS = 0
        CNN_EPOCHS = 8
        CNN_INPUT_SIZE = 64  # the small CNN trains from scratch: a smaller input keeps it CPU-friendly
        P, K = 16, 4
        FAR_TARGETS = (0.1, 0.01, 0.001)
        CMC_DRAWS = 100
        SEED = 0
        """),
        code(SETUP + """
    from itemrec.data import load_grocery, random_triplets
    from itemrec.data.splits import grocery_open_set
    from itemrec.experiments import grocery as g
        """),
        md("""
        ## Data: the open-set protocol

        The Grocery Store dataset (Klasson et al., WACV 2019) has 81 fine classes. 40 of them are
        held out entirely: their official *val* photos calibrate the decision thresholds and their
        *test* photos are the queries; the 41 others train the model. In QUICK mode a linked subset
        (a few photos per class, same official split) stands in for the full folder.
        """),
        code("""
        root = Path(DATA_ROOT) / "grocery-store" if DATA_ROOT else None
        if QUICK:
            root = g.grocery_subset(out / "grocery-quick", {"train": 6, "val": None, "test": 3}, seed=SEED, root=root)
            EPOCHS, CNN_EPOCHS, FINETUNE_EPOCHS, INPUT_SIZE, CNN_INPUT_SIZE, CMC_DRAWS, P, K = 3, 2, 0, 64, 48, 30, 8, 4
        ds = load_grocery(root)
        seen, unseen = grocery_open_set(ds)
        pd.DataFrame({"seen (train)": seen.frame["split"].value_counts(),
                      "unseen (never trained on)": unseen.frame["split"].value_counts()})
        """),
        md("""
        ## The original random triplets

        `random_triplets` draws (anchor, positive, negative) uniformly: most such triplets are
        already satisfied by the margin and teach the model little, which is why mining exists.
        Below, each row is an anchor with its positive (green) and negative (red).
        """),
        code("""
        train = seen.split("train")
        trip = random_triplets(train.labels, 4, seed=SEED)
        plots.plot_query_matches(list(train.paths[trip[:, 0]]), train.labels[trip[:, 0]], list(train.paths),
                                 train.labels, trip[:, 1:], class_names=ds.class_names, thumb=80)
        """),
        md("""
        ## Training with three ways of picking triplets

        Each run freezes the ImageNet backbone, caches its pooled features once, and trains the
        embedding head (Dense → Dense → L2-normalised) on P×K batches. `"random"` picks one random
        positive and negative per anchor inside the batch (the random generator, in-batch).
        """),
        code("""
        runs = {}
        for miner in MINERS:
            cfg = g.grocery_config(f"triplet_{miner}", out / "runs", loss="triplet", miner=miner, margin=MARGIN,
                                   backbone=BACKBONE, weights=WEIGHTS, input_size=INPUT_SIZE,
                                   embedding_dim=EMBEDDING_DIM, epochs=EPOCHS, finetune_epochs=FINETUNE_EPOCHS,
                                   p=P, k=K, data_root=root, cmc_draws=CMC_DRAWS, far_targets=FAR_TARGETS, seed=SEED)
            runs[miner] = g.run_or_load(cfg)
        """),
        md("""
        ## Training curves

        Besides the loss, every epoch logs the mean anchor-positive distance $d_{ap}$ and
        anchor-negative distance $d_{an}$ of the mined triplets, and the fraction of triplets still
        violating the margin. Training pushes $d_{an}$ above $d_{ap}$ by the margin.
        """),
        code("""
        panels = [["loss", "val_loss"], ["d_ap", "d_an", "val_d_ap", "val_d_an"], ["active_fraction"]]
        for miner, res in runs.items():
            display(plots.plot_history(res.history, panels, title=f"triplet loss, {miner} triplets",
                                       path=out / f"curves_{miner}.png"))
        """),
        md("""
        ## A small CNN from scratch

        The original experiment's four-block CNN, trained end to end with the same loss and miner,
        shows what the ImageNet features bring.
        """),
        code("""
        cfg = g.grocery_config("triplet_small_cnn", out / "runs", loss="triplet", miner=MINER, margin=MARGIN,
                               backbone="small_cnn", input_size=CNN_INPUT_SIZE, embedding_dim=EMBEDDING_DIM,
                               epochs=CNN_EPOCHS, p=P, k=K, data_root=root, cmc_draws=CMC_DRAWS,
                               far_targets=FAR_TARGETS, seed=SEED)
        runs["small_cnn"] = g.run_or_load(cfg)
        display(plots.plot_history(runs["small_cnn"].history, panels, title="small CNN, from scratch"))
        summary = g.summary_table(runs)
        summary
        """),
        md("""
        ## CMC on the unseen classes

        Each draw picks one test photo per unseen class and ranks the 40 catalogue images by cosine
        distance; the curve is the mean over the draws with its 95% band.
        """),
        code("""
        plots.plot_cmc({name: g.cmc_from_metrics(res.metrics) for name, res in runs.items()},
                       title="CMC vs catalogue images, unseen classes", path=out / "cmc.png")
        """),
        md("""
        ## Verification: VAL at a chosen FAR

        For the best run (by MAP@R), a distance threshold is fitted on the **calibration** pairs of
        the unseen classes for each target FAR, then VAL (same-product pairs accepted) and FAR
        (different-product pairs accepted) are measured on the **test** pairs, which the threshold
        never saw.
        """),
        code("""
        best = summary["map_at_r"].idxmax()
        emb = g.open_set_embeddings(runs[best].run_dir)
        sweep = g.verification_sweep(emb, FAR_TARGETS)
        display(plots.plot_val_far(sweep.curve, sweep.reports[0].threshold, title=f"VAL/FAR on test ({best})",
                                   path=out / "val_far.png"))
        sweep.table
        """),
        md("""
        ## Top-5 matches

        Test photos of unseen products (left) and their five nearest catalogue images: green when
        right, red when wrong, with the cosine distance.
        """),
        code("""
        fig, queries, neighbours = g.top_matches(emb, n_queries=6, k=5, seed=SEED, path=out / "top5_matches.png")
        fig
        """),
        md("""
        ## Embedding projector

        The test embeddings with thumbnails, for the TensorBoard Embedding Projector
        (`tensorboard --logdir OUT_DIR/projector`, or load the TSV files at projector.tensorflow.org).
        """),
        code("""
        proj = g.export_run_projector(emb, out / "projector", max_images=500 if QUICK else 2000, seed=SEED)
        sorted(p.name for p in proj.out_dir.iterdir())
        """),
        code("""
        results = {
            "quick": QUICK, "backbone": BACKBONE, "margin": MARGIN, "input_size": INPUT_SIZE, "best_run": best,
            "runs": summary.to_dict(orient="index"),
            "verification": sweep.table.to_dict(orient="records"),
            "files": {"cmc": out / "cmc.png", "val_far": out / "val_far.png", "top5": out / "top5_matches.png",
                      "projector": proj.config, "sprite": proj.sprite},
        }
        save_results(out, results)
        """),
    ]


def nb02() -> list:
    return [
        md("""
        # 02 · Center loss for grocery item recognition

        Softmax cross-entropy separates the training classes but leaves each class spread out. The
        **center loss** (Wen, Zhang, Li & Qiao, ECCV 2016) also pulls each embedding towards a
        running centre of its class:

        $$L = L_{softmax} + \\lambda\\,\\tfrac{1}{2}\\textstyle\\sum_i \\lVert x_i - c_{y_i}\\rVert^2,
        \\qquad c_j \\leftarrow c_j - \\alpha\\,\\frac{\\sum_{i:y_i=j}(c_j - x_i)}{1 + n_j}.$$

        λ weighs the pull, α is the centres' learning rate. On the same open-set split as notebook
        01 (40 grocery products never seen in training), we compare it with plain softmax and with
        the triplet loss by CMC against the catalogue images.
        """),
        params("""
        QUICK = True
        DATA_ROOT = None  # folder holding grocery-store/; None: $ITEMREC_DATA
        OUT_DIR = "outputs/02_center"
        BACKBONE = "mobilenet_v2"
        WEIGHTS = "auto"
        INPUT_SIZE = 96
        EMBEDDING_DIM = 128
        LAMBDA = 0.1  # weight of the centre term
        ALPHA = 0.5  # centre learning rate
        MARGIN = 0.2  # triplet baseline
        MINER = "semi_hard"  # triplet baseline
        FROZEN_EPOCHS = 15  # phase 1: backbone frozen, head on cached features
        FINETUNE_EPOCHS = 2  # phase 2: top layers of the backbone too
        FINETUNE_LAYERS = 20
        FINETUNE_LR = 1e-5
        P, K = 16, 4
        CMC_DRAWS = 200
        SEED = 0
        """),
        code(SETUP + """
    from itemrec.experiments import grocery as g
        """),
        code("""
        root = Path(DATA_ROOT) / "grocery-store" if DATA_ROOT else None
        if QUICK:
            root = g.grocery_subset(out / "grocery-quick", {"train": 6, "val": None, "test": 3}, seed=SEED, root=root)
            FROZEN_EPOCHS, FINETUNE_EPOCHS, INPUT_SIZE, CMC_DRAWS, P, K = 2, 1, 64, 30, 8, 4
        common = dict(backbone=BACKBONE, weights=WEIGHTS, input_size=INPUT_SIZE, embedding_dim=EMBEDDING_DIM,
                      epochs=FROZEN_EPOCHS, finetune_epochs=FINETUNE_EPOCHS, finetune_layers=FINETUNE_LAYERS,
                      finetune_lr=FINETUNE_LR, p=P, k=K, data_root=root, cmc_draws=CMC_DRAWS, seed=SEED)
        """),
        md("""
        ## Training: frozen, then fine-tuned

        Phase 1 trains the head and the classifier on cached features of the frozen backbone;
        phase 2 also unfreezes the backbone's top layers at a small learning rate (BatchNorm stays
        in inference mode). A monitor draws the deep features of held-out photos of the training
        classes (PCA to 2-D) after every epoch.
        """),
        code("""
        center = g.run_or_load(g.grocery_config("center", out / "runs", loss="center", lam=LAMBDA, alpha=ALPHA,
                                                feature_monitor=True, **common))
        center.training["phases"]
        """),
        md("""
        ## Softmax and center-loss curves

        `ce` is the softmax cross-entropy, `center` the centre term $L_c$ (before λ). Epochs count
        on across the phases: fine-tuning starts after epoch `FROZEN_EPOCHS`.
        """),
        code("""
        plots.plot_history(center.history, [["ce", "val_ce"], ["center", "val_center"], ["accuracy", "val_accuracy"]],
                           title=f"center loss, λ={LAMBDA}, α={ALPHA}", path=out / "center_curves.png")
        """),
        md("""
        ## Deep features, epoch by epoch

        The frames of both phases joined into one animation: classes contract towards their
        centres as training goes on.
        """),
        code("""
        gif, frames = g.feature_animation(center.run_dir, out / "deep_features.gif")
        display(Image(filename=str(frames[-1])))
        Image(filename=str(gif))
        """),
        md("""
        ## Baselines on the same split and schedule

        Plain softmax (λ = 0 in effect) and the triplet loss, with the same backbone, head, phases
        and seed.
        """),
        code("""
        runs = {"center": center}
        runs["softmax"] = g.run_or_load(g.grocery_config("softmax", out / "runs", loss="softmax", **common))
        runs["triplet"] = g.run_or_load(g.grocery_config("triplet", out / "runs", loss="triplet", margin=MARGIN,
                                                         miner=MINER, **common))
        summary = g.summary_table(runs)
        summary
        """),
        md("""
        ## CMC on the unseen classes

        One random test photo per unseen class per draw, ranked against the 40 catalogue images;
        mean over the draws with the 95% band of the draws.
        """),
        code("""
        cmcs = {name: g.cmc_from_metrics(res.metrics) for name, res in runs.items()}
        plots.plot_cmc(cmcs, title=f"CMC over {CMC_DRAWS} query draws, unseen classes", path=out / "cmc.png")
        """),
        code("""
        table = pd.DataFrame({name: {"rank1": c.at(1), "rank1_ci_low": c.ci_low[0], "rank1_ci_high": c.ci_high[0],
                                     "rank5": c.at(min(5, len(c.ranks)))} for name, c in cmcs.items()}).T
        save_results(out, {"quick": QUICK, "lambda": LAMBDA, "alpha": ALPHA, "input_size": INPUT_SIZE,
                           "runs": summary.to_dict(orient="index"), "cmc": table.to_dict(orient="index"),
                           "files": {"cmc": out / "cmc.png", "curves": out / "center_curves.png", "gif": gif}})
        table
        """),
    ]


def nb03() -> list:
    return [
        md("""
        # 03 · Fashion article types by transfer learning

        A closed-set classifier: which of the fashion set's **article types** (T-shirt, watch,
        sandal...) does a product photo show? We benchmark a small CNN trained from scratch against
        two ImageNet architectures, MobileNetV2 and VGG16, each with two heads (a plain
        fully-connected head, and one with BatchNorm and dropout), trained the transfer-learning way:
        backbone **frozen** first, then its top layers **fine-tuned**.

        *VGG16 weights:* offline, only randomly initialised VGG16 weights are available
        (`VGG16_WEIGHTS = None`), so its frozen features are random projections and its numbers are
        a floor; with internet, set `VGG16_WEIGHTS = "imagenet"` and Keras downloads the ImageNet
        weights. MobileNetV2 uses the local ImageNet weights file.
        """),
        params("""
        QUICK = True
        DATA_ROOT = None  # folder holding fashion-products/; None: $ITEMREC_DATA
        OUT_DIR = "outputs/03_fashion"
        LABEL_COLUMN = "articleType"
        MIN_COUNT = 100  # drop classes rarer than this
        MAX_PER_CLASS = 100  # cap per class (None: all images)
        INPUT_SIZE = 48
        BACKBONES = ("mobilenet_v2", "vgg16")
        HEADS = ("fc", "bn_dropout")
        VGG16_WEIGHTS = None  # "imagenet" with internet
        FROZEN_EPOCHS = 15
        FINETUNE_EPOCHS = 1
        FINETUNE_LAYERS = {"mobilenet_v2": 20, "vgg16": 4}  # top weighted layers unfrozen in phase 2
        FINETUNE_LR = 1e-5
        CNN_EPOCHS = 10
        LEARNING_RATES = (1e-2, 1e-3, 1e-4)
        OPTIMIZERS = ("adam", "sgd", "rmsprop")
        SWEEP_EPOCHS = 10
        BATCH_SIZE = 32
        N_EXAMPLES = 6
        SEED = 0
        """),
        code(SETUP + """
    from itemrec.experiments import fashion as f
        """),
        md("""
        ## Data

        Article types with fewer than `MIN_COUNT` photos are dropped; the rest are split 70/15/15,
        stratified by class and seeded, so every class is in every part.
        """),
        code("""
        if QUICK:
            MIN_COUNT, MAX_PER_CLASS, INPUT_SIZE, FROZEN_EPOCHS, FINETUNE_EPOCHS = 300, 30, 48, 3, 1
            CNN_EPOCHS, SWEEP_EPOCHS, LEARNING_RATES, OPTIMIZERS = 2, 3, (1e-2, 1e-3), ("adam", "sgd")
        root = Path(DATA_ROOT) / "fashion-products" if DATA_ROOT else None
        splits = f.fashion_splits(root, LABEL_COLUMN, MIN_COUNT, MAX_PER_CLASS, seed=SEED)
        store = f.ImageStore(splits, INPUT_SIZE)
        names = store.class_names
        pd.DataFrame({p: getattr(splits, p).class_counts() for p in ("train", "val", "test")})
        """),
        md("""
        ## Learning rate × optimiser, chosen on validation loss

        A short sweep trains the fully-connected head on the frozen MobileNetV2 features for each
        pair; the pair with the lowest validation loss is used for every model below.
        """),
        code("""
        cache = out / "feature_cache"
        sweep = f.sweep_head(store, "mobilenet_v2", "local", LEARNING_RATES, OPTIMIZERS, SWEEP_EPOCHS,
                             batch_size=BATCH_SIZE, cache_dir=cache, seed=SEED)
        OPTIMIZER, LR = sweep.loc[0, "optimizer"], float(sweep.loc[0, "lr"])
        print(f"chosen: {OPTIMIZER}, lr={LR}")
        sweep
        """),
        md("""
        ## The benchmark

        The small CNN trains from scratch; each ImageNet backbone trains frozen (head only, on
        cached features; `backbone_unchanged` confirms its weights did not move) and is then
        fine-tuned. Each phase keeps its epoch of lowest validation loss; `best_val_loss_frozen` and
        `best_val_loss_finetuned` show what fine-tuning changed. Test scores are those of the final,
        fine-tuned model.
        """),
        code("""
        train_args = dict(optimizer=OPTIMIZER, lr=LR, batch_size=BATCH_SIZE, cache_dir=cache, seed=SEED)
        models = {"small_cnn": f.train_classifier(store, "small_cnn", None, "fc", frozen_epochs=CNN_EPOCHS,
                                                  finetune_epochs=0, **train_args)}
        for backbone in BACKBONES:
            weights = {"mobilenet_v2": "local", "vgg16": VGG16_WEIGHTS}.get(backbone, "imagenet")
            for head in HEADS:
                models[f"{backbone}+{head}"] = f.train_classifier(
                    store, backbone, weights, head, frozen_epochs=FROZEN_EPOCHS, finetune_epochs=FINETUNE_EPOCHS,
                    finetune_lr=FINETUNE_LR, finetune_layers=FINETUNE_LAYERS.get(backbone, 20), **train_args)
        summary = pd.DataFrame({name: {**m.metrics(), **m.frozen_check} for name, m in models.items()}).T
        summary
        """),
        md("""
        ## Curves of the best model

        Chosen by weighted F1 on the test split (phase 1: frozen; phase 2: fine-tuned).
        """),
        code("""
        best = summary["f1_weighted"].astype(float).idxmax()
        top = models[best]
        plots.plot_history(top.history[["loss", "val_loss", "accuracy", "val_accuracy"]], title=best,
                           path=out / "best_curves.png")
        """),
        md("""
        ## Per-class report and confusion matrix
        """),
        code("""
        display(top.report.per_class.sort_values("f1"))
        plots.plot_confusion_matrix(top.report.confusion, names, normalize=True, title=f"{best}, test split (row-normalised)",
                                    path=out / "confusion.png")
        """),
        md("""
        ## Predictions on single images

        Test photos the model has not trained on, with the predicted article type and its
        probability (green when right).
        """),
        code("""
        test = splits.test
        pick = test.frame.sample(N_EXAMPLES, random_state=SEED).index
        pred = f.predict_images(top.model, list(test.paths[pick]), INPUT_SIZE, names)
        display(f.plot_predictions(pred, list(test.frame.loc[pick, "class_name"]), path=out / "predictions.png"))
        pred[["predicted", "probability", "top"]]
        """),
        code("""
        save_results(out, {"quick": QUICK, "optimizer": OPTIMIZER, "lr": LR, "best_model": best,
                           "n_classes": len(names), "n_images": {p: len(getattr(splits, p)) for p in ("train", "val", "test")},
                           "sweep": sweep.to_dict(orient="records"), "models": summary.to_dict(orient="index"),
                           "files": {"confusion": out / "confusion.png", "predictions": out / "predictions.png",
                                     "curves": out / "best_curves.png"}})
        """),
    ]


def main() -> None:
    for name, cells in (("01_triplet_loss_item_recognition", nb01()), ("02_center_loss_item_recognition", nb02()),
                        ("03_fashion_classifier_transfer_learning", nb03())):
        print(write_notebook(HERE / f"{name}.ipynb", cells))


if __name__ == "__main__":
    main()
