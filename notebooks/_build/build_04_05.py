"""Regenerate notebooks 04-05 (stored without outputs): ``python notebooks/_build/build_04_05.py``."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from nbgen import code, md, params, write_notebook  # noqa: E402

HERE = Path(__file__).resolve().parents[1]

SETUP = """
    %matplotlib inline
    import os
    from pathlib import Path

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import pandas as pd
    from IPython.display import Image, display

    from itemrec.experiments.reporting import preset, save_figure_png, save_image_png
    from itemrec.experiments.results_io import save_results

    pd.set_option("display.precision", 3)
    out = Path(OUT_DIR)
    out.mkdir(parents=True, exist_ok=True)
    readme = Path(README_IMAGES) if README_IMAGES else None
    data_root = Path(DATA_ROOT) if DATA_ROOT else None
"""


def nb04() -> list:
    return [
        md("""
        # 04 · Clustering the products of a packed shelf

        **Goal.** Group the product facings of a shelf photo by product, without knowing which
        products (or how many) are there. The recipe (github.com/BCuan/embedding-clustering):
        learn an embedding on crops of shelf products, embed every box of the shelf, cluster the
        embeddings with HDBSCAN and then OPTICS on what HDBSCAN left as noise, and draw each
        cluster on the photo by merging its boxes with a morphological closing.

        The embedding is a **cosine softmax** (NormFace, Wang et al. 2017): the embedding $x$ and
        one anchor $W_j$ per training class are L2-normalised and the logits are
        $\\lambda \\cos\\theta_j = \\lambda\\, \\hat x \\cdot \\hat W_j$. The scale $\\lambda$ sets how
        peaked the softmax can get; too small and the loss cannot reach low values, too large and
        it stops caring about the angles once the training crops are separated. We sweep it
        against a plain softmax baseline. On a CPU the practical route is a frozen ImageNet
        MobileNetV2 (local weights) whose pooled features are computed once, with a small trained
        head on top.

        The training crops are **corrupted on purpose**: copies, duplicated classes and a mixed
        class. We audit them first and split so that no copy of a test crop is in training.
        """),
        md("""
        ## Parameters

        `QUICK = True` uses a few dozen crops per class, small images and two values of λ (a smoke
        run, well under 90 s on two CPU cores); `QUICK = False` is the run the README reports.
        Settings left at `None` take the mode's preset (`itemrec.experiments.packed_scenes.PRESETS`).
        """),
        params("""
        QUICK = True
        DATA_ROOT = None  # folder holding packed-scenes/; None: $ITEMREC_DATA
        WEIGHTS = None  # MobileNetV2 no-top weights file; None: $ITEMREC_WEIGHTS/mobilenet_v2_1.0_224_imagenet_no_top.h5
        OUT_DIR = "../reports/notebooks/04_packed_scenes"
        CACHE_DIR = "../reports/feature_cache"  # frozen-backbone features, reused across runs; None: no cache
        SHELF_LABELS = "../tests/data/shelf_labels.json"  # hand labels of the shelf boxes (optional)
        README_IMAGES = None  # a folder to save the key figures as small PNGs (e.g. "../readme_images")
        SEED = 0
        # None: the preset of the mode
        SCALES = None  # λ values of the cosine softmax
        EPOCHS = None
        INPUT_SIZE = None
        TRAIN_PER_CLASS = None
        TEST_PER_CLASS = None
        """),
        code(SETUP + """
    from itemrec.clustering import cluster_embeddings
    from itemrec.data.audit import audit
    from itemrec.data.loaders import load_packed_scenes, load_shelf
    from itemrec.experiments import packed_scenes as ps
    from itemrec.scene import cluster_scene
    from itemrec.training.features import features_of

    cfg = preset(ps.PRESETS, QUICK, scales=SCALES, epochs=EPOCHS, input_size=INPUT_SIZE,
                 train_per_class=TRAIN_PER_CLASS, test_per_class=TEST_PER_CLASS)
    cfg
        """),
        md("""
        ## Audit of the training crops

        The audit hashes every file: identical bytes are the same image. It reports copies inside
        a class, class pairs that share images, **duplicated classes** (two ids, one product:
        their sets of distinct images are almost the same) and **mixed classes** (a class whose
        images also appear under several other classes).
        """),
        code("""
        crops = load_packed_scenes(data_root / "packed-scenes" if data_root else None)
        report = audit(crops, check=None)
        print(report.summary())
        """),
        md("""
        ## Cleaning

        Each duplicated class is merged into one label, the mixed class is dropped (its ids mean
        several products), and so is any remaining image found under two labels. Copies stay for
        now; the split below keeps each set of copies together.
        """),
        code("""
        cleaned = ps.clean_crops(crops, report)
        print(cleaned.summary())
        """),
        md("""
        ## A split that copies cannot cross

        A per-file split sends copies of one image to both sides, and an exact copy is its own
        nearest neighbour: Recall@1 would then measure memory, not the embedding. Grouping the
        files by content hash (scikit-learn's `StratifiedGroupKFold`) keeps every group on one
        side. For scoring, each side then keeps one file per content.
        """),
        code("""
        naive_train, naive_test = ps.per_file_split(cleaned.dataset, cfg["test_fraction"], SEED)
        train_all, test_all = ps.duplicate_safe_split(cleaned.dataset, cfg["test_fraction"], SEED)
        leaks = {"per-file split": ps.leaked(naive_train, naive_test), "duplicate-safe split": ps.leaked(train_all, test_all)}
        display(pd.DataFrame({"test files": [len(naive_test), len(test_all)],
                              "test files with a copy in training": list(leaks.values())}, index=list(leaks)))
        train = ps.cap_per_class(ps.dedupe(train_all), cfg["train_per_class"], SEED)
        test = ps.cap_per_class(ps.dedupe(test_all), cfg["test_per_class"], SEED)
        print(f"training on {len(train)} distinct crops, scoring on {len(test)} held-out crops, {cleaned.dataset.n_classes} classes")
        """),
        md("""
        ## Frozen MobileNetV2 features

        Crops are letterboxed to `input_size` pixels and passed once through the frozen ImageNet
        MobileNetV2; its global-average-pooled 1280-d features are cached on disk.
        """),
        code("""
        train_x, extractor = ps.backbone_features(train.paths, cfg["input_size"], WEIGHTS, cache_dir=CACHE_DIR, progress=True)
        test_x, _ = ps.backbone_features(test.paths, cfg["input_size"], WEIGHTS, cache_dir=CACHE_DIR, extractor=extractor, progress=True)
        train_x.shape, test_x.shape
        """),
        md("""
        ## The λ sweep

        One head per setting (Dropout → Dense → ReLU → Dense(128) → L2), same seed and epochs:
        the plain softmax baseline (Dense logits on the unnormalised embedding) and the cosine
        softmax at each λ. Each is scored on the held-out crops, every crop querying all the
        others, by Recall@1 and MAP@R (Musgrave et al. 2020) with cosine distance. The first row
        is the frozen features with no head at all.
        """),
        code("""
        sweep = ps.scale_sweep(train_x, train.labels, test_x, test.labels, scales=cfg["scales"], epochs=cfg["epochs"],
                               embedding_dim=cfg["embedding_dim"], hidden=cfg["hidden"], seed=SEED, progress=True)
        sweep.table()
        """),
        code("""
        fig = ps.plot_sweep(sweep, path=out / "scale_sweep.png")
        fig
        """),
        md("""
        ## Clustering the shelf

        The 63 boxes of `shelf.jpeg` are cropped, letterboxed like the training crops and embedded
        with the best cosine head (by held-out MAP@R). HDBSCAN (min cluster size 2) clusters the
        embeddings; OPTICS then looks for pairs among HDBSCAN's noise. Each cluster's boxes are
        united, closed with a square kernel of 1 % of the image side (bridging the gaps between
        facings, not between shelf rows) and drawn in the cluster's colour; noise boxes stay grey.
        """),
        code("""
        best = sweep.best("map_at_r")
        shelf_image, shelf_boxes = load_shelf(data_root / "packed-scenes" if data_root else None)
        scene = cluster_scene(shelf_image, shelf_boxes, ps.head_embed_fn(extractor, best.head), crop_size=cfg["input_size"],
                              min_cluster_size=cfg["min_cluster_size"], closing_scale=cfg["closing_scale"],
                              out_path=out / "shelf_clusters.jpg", max_side=1200, progress=True)
        print(f"{best.name}: {scene.clustering.n_clusters} clusters "
              f"({scene.clustering.n_hdbscan_clusters} from HDBSCAN, {scene.clustering.n_optics_clusters} from OPTICS), "
              f"{scene.clustering.n_noise} noise boxes of {len(scene.box_ids)}")
        display(Image(filename=str(scene.overlay_path), width=720))
        """),
        md("""
        ## Against the hand labels

        `tests/data/shelf_labels.json` gives each box its product (22 products; how it was made is
        in the file). The adjusted Rand index compares the clustering with them (noise boxes count
        as singletons), next to the same clustering of the frozen features without a head.
        """),
        code("""
        shelf_scores = frozen_scores = None
        if SHELF_LABELS and Path(SHELF_LABELS).is_file():
            hand = ps.read_hand_labels(SHELF_LABELS)
            shelf_scores = ps.score_against_hand_labels(scene.box_ids, scene.labels, hand)
            frozen = cluster_embeddings(features_of(extractor, scene.crops), min_cluster_size=cfg["min_cluster_size"])
            frozen_scores = ps.score_against_hand_labels(scene.box_ids, frozen.labels, hand)
            display(pd.DataFrame([vars(shelf_scores), vars(frozen_scores)], index=[best.name, "frozen features"]))
        else:
            print(f"no hand labels at {SHELF_LABELS}: skipping the ARI")
        """),
        md("""
        ## Results

        The key numbers go to `OUT_DIR/results.json` (the notebook test reads them); with
        `README_IMAGES` set, the figures are also saved there as small PNGs.
        """),
        code("""
        results = {
            "mode": cfg["mode"],
            "settings": {k: v for k, v in cfg.items() if k != "mode"},
            "audit": {"n_files": report.n_images, "distinct": report.distinct_images,
                      "duplicated_classes": report.duplicated_classes, "mixed_classes": report.mixed_classes},
            "clean": {"n_files": len(cleaned.dataset), "n_classes": cleaned.dataset.n_classes,
                      "merged": cleaned.merged, "dropped_classes": cleaned.dropped_classes},
            "split": {"n_train": len(train), "n_test": len(test), "leaked_per_file": leaks["per-file split"],
                      "leaked_duplicate_safe": leaks["duplicate-safe split"], "naive_test_files": len(naive_test)},
            "sweep": sweep.table().to_dict(orient="records"),
            "best_head": best.name, "best_scale": best.scale,
            "shelf": {"n_boxes": len(scene.box_ids), "n_clusters": scene.clustering.n_clusters,
                      "n_noise": scene.clustering.n_noise, "overlay": str(scene.overlay_path),
                      "scores": vars(shelf_scores) if shelf_scores else None,
                      "frozen_scores": vars(frozen_scores) if frozen_scores else None},
        }
        if readme:
            save_figure_png(fig, readme / "packed_scale_sweep.png")
            save_image_png(scene.overlay_path, readme / "packed_shelf_clusters.png", max_side=560, colors=96)
        save_results(out, results)
        """),
    ]


def nb05() -> list:
    return [
        md("""
        # 05 · Digits with a triplet network, rejecting non-digits, and face retrieval

        Three small experiments on what an embedding knows and what it does not.

        1. **A triplet network on MNIST.** A small CNN maps a digit to a 10-d unit vector, trained
           on random triplets with the hinge loss
           $\\max(\\lVert f(a)-f(p)\\rVert^2 - \\lVert f(a)-f(n)\\rVert^2 + m, 0)$
           (FaceNet, Schroff et al. 2015), for several margins $m$.
        2. **Rejecting non-digits.** A softmax classifier on the embeddings says *which* digit; the
           spread of its probabilities, measured by the Gini impurity $G(p) = 1 - \\sum_i p_i^2$,
           says whether the input looks like *any* digit. Letters drawn in the MNIST way (20×20 box,
           centred by centre of mass in 28×28) are the non-digits.
        3. **Face retrieval** with no training at all: detect and crop faces, embed them with the
           ImageNet MobileNetV2, and ask whether nearest neighbours are the same person.
        """),
        md("""
        ## Parameters

        `QUICK = True`: 3,000 digits, two margins, one short epoch, eight photos per person (well
        under 90 s on two CPU cores). `QUICK = False`: all 10,000 digits (the MNIST *test* set, the
        only part available offline, split 60/20/20), four margins, all 118 photos. Settings left at
        `None` take the preset (`itemrec.experiments.digits.PRESETS`).
        """),
        params("""
        QUICK = True
        DATA_ROOT = None  # folder holding mnist/ and celebrity-faces/; None: $ITEMREC_DATA
        WEIGHTS = None  # MobileNetV2 no-top weights file; None: $ITEMREC_WEIGHTS/mobilenet_v2_1.0_224_imagenet_no_top.h5
        OUT_DIR = "../reports/notebooks/05_digits_faces"
        README_IMAGES = None  # a folder to save the key figures as small PNGs (e.g. "../readme_images")
        SEED = 0
        # None: the preset of the mode
        MARGINS = None
        EPOCHS = None
        N_TRIPLETS = None
        EMBEDDING_DIM = None
        """),
        code(SETUP + """
    from itemrec import glyphs, plots
    from itemrec.data.loaders import load_faces, load_mnist
    from itemrec.evaluation import classification_report, retrieval_report
    from itemrec.experiments import digits as dg
    from itemrec.experiments import face_retrieval as fr

    cfg = preset(dg.PRESETS, QUICK, margins=MARGINS, epochs=EPOCHS, n_triplets=N_TRIPLETS, embedding_dim=EMBEDDING_DIM)
    cfg
        """),
        md("""
        ## Digits and non-digits

        The 10,000 MNIST digits are split (stratified, seeded) into training, validation and test
        parts. The non-digits are the letters that do not resemble a digit (no O, I, S, Z, B, G, …)
        rendered from Pillow's built-in font and every TrueType font of the system, normalised
        exactly like MNIST (`itemrec.glyphs`).
        """),
        code("""
        images, labels = load_mnist(data_root / "mnist" if data_root else None)
        splits = dg.split_digits(images, labels, seed=SEED, limit=cfg["mnist_limit"])
        letters = glyphs.render_glyphs()
        print(splits.sizes(), f"{len(letters)} glyphs: {len(set(letters.chars))} letters x {len(set(letters.fonts))} fonts")
        order = np.random.default_rng(SEED).permutation(len(letters))
        dg.plot_samples(splits.x_test, letters.images[order], n=14)
        """),
        md("""
        ## The margin sweep

        Each margin trains a fresh network (same seed) on random triplets redrawn every epoch.
        On the validation digits we measure Recall@1 and MAP@R (each digit querying the others)
        and the triplet accuracy: the fraction of fresh random triplets with the positive closer
        than the negative. Squared distances between unit vectors lie in [0, 4].
        """),
        code("""
        sweep = dg.margin_sweep(splits, cfg["margins"], n_triplets=cfg["n_triplets"], epochs=cfg["epochs"],
                                filters=cfg["filters"], embedding_dim=cfg["embedding_dim"], seed=SEED, progress=True)
        sweep.table()
        """),
        md("""
        ## The embedding of the test digits

        The network with the best validation MAP@R embeds the test digits; t-SNE (van der Maaten &
        Hinton 2008) draws the 10-d embedding in 2-D, keeping neighbourhoods (not distances).
        """),
        code("""
        best = sweep.best("map_at_r")
        emb = {part: dg.embed_digits(best.model, getattr(splits, f"x_{part}")) for part in ("train", "val", "test")}
        test_retrieval = retrieval_report(emb["test"], splits.y_test, ks=(1, 5), metric="cosine")
        n = min(cfg["tsne_points"], len(splits.y_test))
        fig_tsne = plots.plot_features_2d(emb["test"][:n], splits.y_test[:n], method="tsne", seed=SEED,
                                          title=f"t-SNE of {n} test digits (margin {best.margin:g})", path=out / "digits_tsne.png")
        print(f"margin {best.margin:g}: test Recall@1 {test_retrieval.recall_at_k[1]:.3f}, MAP@R {test_retrieval.map_at_r:.3f}")
        fig_tsne
        """),
        md("""
        ## A softmax classifier on the embedding

        Multinomial logistic regression (a softmax layer) is fitted on the training embeddings; the
        embedding itself stays fixed.
        """),
        code("""
        clf = dg.fit_softmax_classifier(emb["train"], splits.y_train, seed=SEED)
        cls = classification_report(splits.y_test, clf.predict_proba(emb["test"]), class_names=[str(d) for d in range(10)])
        print(f"test accuracy {cls.accuracy:.3f}, macro F1 {cls.f1_macro:.3f}")
        plots.plot_confusion_matrix(cls.confusion, cls.class_names)
        """),
        md("""
        ## Rejecting non-digits by the Gini impurity

        The threshold τ is fitted on the **validation** digits so that 5 % of them are rejected
        ($G(p) > τ$); the rates are then measured on the test digits and on the letters. The ROC
        shows every other choice of τ, the impurity used as a "not a digit" score.
        """),
        code("""
        gini = dg.gini_rejection(clf, emb["val"], emb["test"], dg.embed_digits(best.model, letters.images),
                                 target_in_rejection=cfg["target_in_rejection"])
        r = gini.report
        print(f"tau = {r.threshold.value:.3f}: rejects {r.in_rejection_rate:.1%} of test digits and "
              f"{r.out_rejection_rate:.1%} of letters; ROC AUC {r.auc:.3f}")
        fig_gini = dg.plot_rejection(gini, path=out / "gini_rejection.png")
        fig_gini
        """),
        md("""
        ## Faces: detect and crop

        OpenCV's frontal-face Haar cascade (Viola & Jones 2001) finds faces in each photo; the
        largest one, grown by a margin into a square, is the crop. Photos without a detection fall
        back to their central square (red frame).
        """),
        code("""
        people = fr.per_person(load_faces(data_root / "celebrity-faces" if data_root else None), cfg["faces_per_person"], SEED)
        faces = fr.run_face_retrieval(people, size=cfg["face_size"], margin=cfg["face_margin"], weights=WEIGHTS, progress=True)
        fig_faces = fr.plot_face_crops(faces, per_row=8, path=out / "face_crops.png")
        fig_faces
        """),
        md("""
        ## Faces: retrieval and clustering

        The crops are embedded by the frozen ImageNet MobileNetV2 (pooled features, centred on their
        mean). Leave-one-out retrieval: each photo queries all the others; precision@k is the share
        of its k nearest neighbours showing the same person (the uncropped photos for comparison).
        Clustering is scored by the adjusted Rand index: HDBSCAN + OPTICS without the number of
        people, Ward clustering given it.
        """),
        code("""
        display(pd.Series(faces.summary(), name="faces").to_frame())
        fig_face_tsne = plots.plot_features_2d(faces.embeddings, faces.labels, method="tsne", class_names=faces.class_names,
                                               seed=SEED, title="t-SNE of the face embeddings", path=out / "faces_tsne.png")
        fig_face_tsne
        """),
        md("""
        ## Results

        The key numbers go to `OUT_DIR/results.json`; with `README_IMAGES` set, the figures are also
        saved there as small PNGs.
        """),
        code("""
        results = {
            "mode": cfg["mode"],
            "settings": {k: v for k, v in cfg.items() if k != "mode"},
            "digits": {"sizes": splits.sizes(), "margin_sweep": sweep.table().to_dict(orient="records"),
                       "best_margin": best.margin, "test_recall_at_1": test_retrieval.recall_at_k[1],
                       "test_map_at_r": test_retrieval.map_at_r, "classifier_accuracy": cls.accuracy,
                       "classifier_f1_macro": cls.f1_macro},
            "rejection": {"n_letters": len(letters), "tau": r.threshold.value, "val_rejection": r.threshold.in_rejection_val,
                          "digit_rejection": r.in_rejection_rate, "letter_rejection": r.out_rejection_rate, "auc": r.auc},
            "faces": faces.summary(),
        }
        if readme:
            save_figure_png(fig_tsne, readme / "digits_tsne.png")
            save_figure_png(fig_gini, readme / "digits_gini_rejection.png")
            save_figure_png(fig_face_tsne, readme / "faces_tsne.png")
        save_results(out, results)
        """),
    ]


def main() -> None:
    write_notebook(HERE / "04_packed_scene_clustering.ipynb", nb04())
    write_notebook(HERE / "05_digit_triplets_and_face_retrieval.ipynb", nb05())


if __name__ == "__main__":
    main()
