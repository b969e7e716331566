# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 04 · Clustering the products of a packed shelf
#
# **Goal.** Group the product facings of a shelf photo by product, without knowing which
# products (or how many) are there. The recipe (github.com/BCuan/embedding-clustering):
# learn an embedding on crops of shelf products, embed every box of the shelf, cluster the
# embeddings with HDBSCAN and then OPTICS on what HDBSCAN left as noise, and draw each
# cluster on the photo by merging its boxes with a morphological closing.
#
# The embedding is a **cosine softmax** (NormFace, Wang et al. 2017): the embedding $x$ and
# one anchor $W_j$ per training class are L2-normalised and the logits are
# $\lambda \cos\theta_j = \lambda\, \hat x \cdot \hat W_j$. The scale $\lambda$ sets how
# peaked the softmax can get; too small and the loss cannot reach low values, too large and
# it stops caring about the angles once the training crops are separated. We sweep it
# against a plain softmax baseline. On a CPU the practical route is a frozen ImageNet
# MobileNetV2 (local weights) whose pooled features are computed once, with a small trained
# head on top.
#
# The training crops are **corrupted on purpose**: copies, duplicated classes and a mixed
# class. We audit them first and split so that no copy of a test crop is in training.

# %% [markdown]
# ## Parameters
#
# Everything the notebook trains is set here, and only here. `QUICK = True` uses a few dozen
# crops per class, small images and two values of λ (a smoke run, well under 90 s on two CPU
# cores); `QUICK = False` is the run the README reports. The sizes live in
# `itemrec.experiments.presets`; change any of them below.

# %% tags=["parameters"]
from itemrec.experiments import presets

QUICK = True
DATA_ROOT = None  # folder holding packed-scenes/; None: $ITEMREC_DATA
WEIGHTS = None  # MobileNetV2 no-top weights file; None: $ITEMREC_WEIGHTS/mobilenet_v2_1.0_224_imagenet_no_top.h5
OUT_DIR = "../reports/notebooks/04_packed_scenes"
CACHE_DIR = "../reports/feature_cache"  # frozen-backbone features, reused across runs; None: OUT_DIR/runs/.feature_cache
SHELF_LABELS = "../tests/data/shelf_labels.json"  # hand labels of the shelf boxes (optional)
README_IMAGES = None  # a folder to save the key figures as small PNGs (e.g. "../readme_images")
SEED = 0
TEST_FRACTION = 0.3
EMBEDDING_DIM = 128
MIN_CLUSTER_SIZE = 2
CLOSING_SCALE = 0.01  # closing kernel, as a fraction of the image side
# the sizes of the mode (itemrec.experiments.presets)
SIZES = presets.sizes("04", QUICK)
SCALES = SIZES["SCALES"]  # λ values of the cosine softmax
EPOCHS = SIZES["EPOCHS"]
INPUT_SIZE = SIZES["INPUT_SIZE"]
HIDDEN = SIZES["HIDDEN"]
TRAIN_PER_CLASS = SIZES["TRAIN_PER_CLASS"]
TEST_PER_CLASS = SIZES["TEST_PER_CLASS"]

# %%
# %matplotlib inline
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np
import pandas as pd
from IPython.display import Image, display

from itemrec.experiments.reporting import save_figure_png, save_image_png
from itemrec.experiments.results_io import save_results

pd.set_option("display.precision", 3)
out = Path(OUT_DIR)
out.mkdir(parents=True, exist_ok=True)
readme = Path(README_IMAGES) if README_IMAGES else None
data_root = Path(DATA_ROOT) if DATA_ROOT else None

from itemrec.clustering import cluster_embeddings
from itemrec.data.audit import audit
from itemrec.data.loaders import load_packed_scenes, load_shelf
from itemrec import plots
from itemrec.experiments import packed_scenes as ps
from itemrec.scene import cluster_scene

# %% [markdown]
# ## Audit of the training crops
#
# The audit hashes every file: identical bytes are the same image. It reports copies inside
# a class, class pairs that share images, **duplicated classes** (two ids, one product:
# their sets of distinct images are almost the same) and **mixed classes** (a class whose
# images also appear under several other classes).

# %%
crops = load_packed_scenes(data_root / "packed-scenes" if data_root else None)
report = audit(crops, check=None)
print(report.summary())

# %% [markdown]
# ## Cleaning
#
# Each duplicated class is merged into one label, the mixed class is dropped (its ids mean
# several products), and so is any remaining image found under two labels. Copies stay for
# now; the split below keeps each set of copies together.

# %%
cleaned = ps.clean_crops(crops, report)
print(cleaned.summary())

# %% [markdown]
# ## A split that copies cannot cross
#
# A per-file split sends copies of one image to both sides, and an exact copy is its own
# nearest neighbour: Recall@1 would then measure memory, not the embedding. Grouping the
# files by content hash (scikit-learn's `StratifiedGroupKFold`) keeps every group on one
# side. For scoring, each side then keeps one file per content.

# %%
naive_train, naive_test = ps.per_file_split(cleaned.dataset, TEST_FRACTION, SEED)
train_all, test_all = ps.duplicate_safe_split(cleaned.dataset, TEST_FRACTION, SEED)
leaks = {"per-file split": ps.leaked(naive_train, naive_test), "duplicate-safe split": ps.leaked(train_all, test_all)}
display(pd.DataFrame({"test files": [len(naive_test), len(test_all)],
                      "test files with a copy in training": list(leaks.values())}, index=list(leaks)))
train = ps.cap_per_class(ps.dedupe(train_all), TRAIN_PER_CLASS, SEED)
test = ps.cap_per_class(ps.dedupe(test_all), TEST_PER_CLASS, SEED)
print(f"training on {len(train)} distinct crops, scoring on {len(test)} held-out crops, {cleaned.dataset.n_classes} classes")

# %% [markdown]
# ## The λ sweep, one run of the trainer per head
#
# The split above goes to a manifest (the held-out crops double as the logged validation
# curve: each head trains a fixed number of epochs, nothing is chosen on them). Each head is an
# `ExperimentConfig` trained by `itemrec.training.run_experiment`: crops letterboxed to
# `INPUT_SIZE` pixels pass once through the frozen ImageNet MobileNetV2 (its 1280-d pooled
# features cached on disk), then the head (Dropout → Dense → ReLU → Dense(128) → L2) trains on
# them. The settings: the plain softmax baseline (Dense logits on the unnormalised embedding)
# and the cosine softmax at each λ, same seed and epochs; each scored on the held-out crops,
# every crop querying all the others, by Recall@1 and MAP@R (Musgrave et al. 2020) with cosine
# distance. The first row is the frozen features with no head at all. Runs are kept in
# `OUT_DIR/runs`, named by λ and a hash of what they trained.

# %% tags=["train"]
manifest = ps.write_manifest({"train": train, "val": test, "test": test}, out / "split" / "crops.csv")
base = ps.head_config("head", out / "runs", manifest, weights=WEIGHTS, input_size=INPUT_SIZE,
                      embedding_dim=EMBEDDING_DIM, hidden=HIDDEN, epochs=EPOCHS, feature_cache_dir=CACHE_DIR,
                      seed=SEED)
sweep = ps.scale_sweep(base, scales=tuple(SCALES), progress=True)
sweep.table()

# %%
fig = ps.plot_sweep(sweep, path=out / "scale_sweep.png")
fig

# %% [markdown]
# ## Training curves and the learned clusters
#
# The training loss and accuracy of every head, epoch by epoch; then the held-out crops embedded
# by the best cosine head (by MAP@R), drawn with t-SNE: each product should form its own cluster.

# %%
curves = pd.DataFrame({f"{r.name} {k}": r.history[k] for r in sweep.runs for k in ("loss", "accuracy")})
fig_curves = plots.plot_history(curves, [[c for c in curves if c.endswith(" loss")],
                                         [c for c in curves if c.endswith(" accuracy")]],
                                title="training of each head", path=out / "head_curves.png")
display(fig_curves)
best = sweep.best("map_at_r")
test_set = best.embedder().embed(list(test.paths), test.labels)  # vectors with the labels of the files kept
fig_clusters = plots.plot_features_2d(test_set.vectors, test_set.labels, method="tsne", seed=SEED,
                                      class_names=cleaned.dataset.class_names,
                                      title=f"t-SNE of {len(test)} held-out crops, {best.name}", path=out / "head_tsne.png")
fig_clusters

# %% [markdown]
# ## Clustering the shelf
#
# The 63 boxes of `shelf.jpeg` are cropped, letterboxed like the training crops and embedded
# with the best cosine head (by held-out MAP@R). HDBSCAN (min cluster size 2) clusters the
# embeddings; OPTICS then looks for pairs among HDBSCAN's noise. Each cluster's boxes are
# united, closed with a square kernel of 1 % of the image side (bridging the gaps between
# facings, not between shelf rows) and drawn in the cluster's colour; noise boxes stay grey.

# %%
shelf_image, shelf_boxes = load_shelf(data_root / "packed-scenes" if data_root else None)
scene = cluster_scene(shelf_image, shelf_boxes, ps.run_embed_fn(best), crop_size=INPUT_SIZE,
                      min_cluster_size=MIN_CLUSTER_SIZE, closing_scale=CLOSING_SCALE,
                      out_path=out / "shelf_clusters.jpg", max_side=1200, progress=True)
print(f"{best.name}: {scene.clustering.n_clusters} clusters "
      f"({scene.clustering.n_hdbscan_clusters} from HDBSCAN, {scene.clustering.n_optics_clusters} from OPTICS), "
      f"{scene.clustering.n_noise} noise boxes of {len(scene.box_ids)}")
display(Image(filename=str(scene.overlay_path), width=720))

# %% [markdown]
# ## Against the hand labels
#
# `tests/data/shelf_labels.json` gives each box its product (22 products; how it was made is
# in the file). The adjusted Rand index compares the clustering with them (noise boxes count
# as singletons), next to the same clustering of the frozen features without a head.

# %%
shelf_scores = frozen_scores = None
if SHELF_LABELS and Path(SHELF_LABELS).is_file():
    hand = ps.read_hand_labels(SHELF_LABELS)
    shelf_scores = ps.score_against_hand_labels(scene.box_ids, scene.labels, hand)
    frozen = cluster_embeddings(ps.run_embed_fn(sweep.frozen)(scene.crops), min_cluster_size=MIN_CLUSTER_SIZE)
    frozen_scores = ps.score_against_hand_labels(scene.box_ids, frozen.labels, hand)
    display(pd.DataFrame([vars(shelf_scores), vars(frozen_scores)], index=[best.name, "frozen features"]))
else:
    print(f"no hand labels at {SHELF_LABELS}: skipping the ARI")

# %% [markdown]
# ## Results
#
# The key numbers go to `OUT_DIR/results.json` (the notebook test reads them); with
# `README_IMAGES` set, the figures are also saved there as small PNGs.

# %%
results = {
    "settings": presets.settings("04", globals()),
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
