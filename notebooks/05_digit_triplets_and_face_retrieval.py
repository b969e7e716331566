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
# # 05 · Digits with a triplet network, rejecting non-digits, and face retrieval
#
# Three small experiments on what an embedding knows and what it does not.
#
# 1. **A triplet network on MNIST.** A small CNN maps a digit to a 10-d unit vector, trained
#    on random triplets with the hinge loss
#    $\max(\lVert f(a)-f(p)\rVert^2 - \lVert f(a)-f(n)\rVert^2 + m, 0)$
#    (FaceNet, Schroff et al. 2015), for several margins $m$.
# 2. **Rejecting non-digits.** A softmax classifier on the embeddings says *which* digit; the
#    spread of its probabilities, measured by the Gini impurity $G(p) = 1 - \sum_i p_i^2$,
#    says whether the input looks like *any* digit. Letters drawn in the MNIST way (20×20 box,
#    centred by centre of mass in 28×28) are the non-digits.
# 3. **Face retrieval** with no training at all: detect and crop faces, embed them with the
#    ImageNet MobileNetV2, and ask whether nearest neighbours are the same person.

# %% [markdown]
# ## Parameters
#
# `QUICK = True`: 3,000 digits, two margins, one short epoch, eight photos per person (well
# under 90 s on two CPU cores). `QUICK = False`: all 10,000 digits (the MNIST *test* set, the
# only part available offline, split 60/20/20), four margins, all 118 photos. The sizes live in
# `itemrec.experiments.presets`; change any of them below. Nothing after this cell sets a
# parameter.

# %% tags=["parameters"]
from itemrec.experiments import presets

QUICK = True
DATA_ROOT = None  # folder holding mnist/ and celebrity-faces/; None: $ITEMREC_DATA
WEIGHTS = None  # MobileNetV2 no-top weights file; None: $ITEMREC_WEIGHTS/mobilenet_v2_1.0_224_imagenet_no_top.h5
OUT_DIR = "../reports/notebooks/05_digits_faces"
README_IMAGES = None  # a folder to save the key figures as small PNGs (e.g. "../readme_images")
SEED = 0
EMBEDDING_DIM = 10
FILTERS = [16, 32, 64]
TARGET_IN_REJECTION = 0.05  # share of validation digits the Gini threshold may reject
GINI_COEFFICIENT_THRESHOLD = 0.87  # the original's rule: non-digit when the Gini coefficient is above it
FACE_MARGIN = 0.2
FACES_ONLY = True  # drop crops that are not faces (no detection, or no face found again in the crop)
# the sizes of the mode (itemrec.experiments.presets)
SIZES = presets.sizes("05", QUICK)
MNIST_LIMIT = SIZES["MNIST_LIMIT"]  # digits used (None: all 10,000)
MARGINS = SIZES["MARGINS"]
N_TRIPLETS = SIZES["N_TRIPLETS"]
EPOCHS = SIZES["EPOCHS"]
TSNE_POINTS = SIZES["TSNE_POINTS"]
FACES_PER_PERSON = SIZES["FACES_PER_PERSON"]
FACE_SIZE = SIZES["FACE_SIZE"]

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

from itemrec import glyphs, plots
from itemrec.data.loaders import load_faces, load_mnist
from itemrec.evaluation import classification_report, retrieval_report
from itemrec.experiments import digits as dg
from itemrec.experiments import face_retrieval as fr

# %% [markdown]
# ## Digits and non-digits
#
# The 10,000 MNIST digits are split (stratified, seeded) into training, validation and test
# parts. The non-digits are the letters that do not resemble a digit (no O, I, S, Z, B, G, …)
# rendered from Pillow's built-in font and every TrueType font of the system, normalised
# exactly like MNIST (`itemrec.glyphs`).

# %%
images, labels = load_mnist(data_root / "mnist" if data_root else None)
splits = dg.split_digits(images, labels, seed=SEED, limit=MNIST_LIMIT)
letters = glyphs.render_glyphs()
print(splits.sizes(), f"{len(letters)} glyphs: {len(set(letters.chars))} letters x {len(set(letters.fonts))} fonts")
order = np.random.default_rng(SEED).permutation(len(letters))
dg.plot_samples(splits.x_test, letters.images[order], n=14, path=out / "samples.png")

# %% [markdown]
# ## The margin sweep
#
# Each margin is one run of the trainer (`dg.digit_config`, an `ExperimentConfig`; same seed): the
# small CNN from scratch on batches of 10 digits × K images, each image the anchor of one random
# triplet (the `random` miner), `N_TRIPLETS` triplets an epoch. Runs are kept in `OUT_DIR/runs`.
# On the validation digits we measure Recall@1 and MAP@R (each digit querying the others)
# and the triplet accuracy: the fraction of fresh random triplets with the positive closer
# than the negative. Squared distances between unit vectors lie in [0, 4].

# %% tags=["train"]
sweep = dg.margin_sweep(splits, tuple(MARGINS), out_dir=out / "runs", n_triplets=N_TRIPLETS, epochs=EPOCHS,
                        filters=tuple(FILTERS), embedding_dim=EMBEDDING_DIM, seed=SEED, progress=True)
sweep.table()

# %% [markdown]
# ## The embedding at each margin
#
# The same validation digits embedded by each margin's network, drawn on their two principal
# axes (PCA: fast, and distances along the axes stay comparable): a larger margin packs each
# class tighter and pushes the classes apart, as the original observed.

# %%
n_val = min(TSNE_POINTS, len(splits.y_val))
for run in sweep.runs:
    display(plots.plot_features_2d(dg.embed_digits(run.model, splits.x_val[:n_val]), splits.y_val[:n_val],
                                   method="pca", title=f"margin {run.margin:g}: {n_val} validation digits (PCA)",
                                   path=out / f"digits_margin_{run.margin:g}.png"))

# %% [markdown]
# ## The embedding of the test digits
#
# The network with the best validation MAP@R embeds the test digits; t-SNE (van der Maaten &
# Hinton 2008) draws the 10-d embedding in 2-D, keeping neighbourhoods (not distances).

# %%
best = sweep.best("map_at_r")
emb = {part: dg.embed_digits(best.model, getattr(splits, f"x_{part}")) for part in ("train", "val", "test")}
test_retrieval = retrieval_report(emb["test"], splits.y_test, ks=(1, 5), metric="cosine")
n = min(TSNE_POINTS, len(splits.y_test))
fig_tsne = plots.plot_features_2d(emb["test"][:n], splits.y_test[:n], method="tsne", seed=SEED,
                                  title=f"t-SNE of {n} test digits (margin {best.margin:g})", path=out / "digits_tsne.png")
print(f"margin {best.margin:g}: test Recall@1 {test_retrieval.recall_at_k[1]:.3f}, MAP@R {test_retrieval.map_at_r:.3f}")
fig_tsne

# %% [markdown]
# ## A softmax classifier on the embedding
#
# Multinomial logistic regression (a softmax layer) is fitted on the training embeddings; the
# embedding itself stays fixed.

# %%
clf = dg.softmax_classifier(emb["train"], splits.y_train, seed=SEED)
cls = classification_report(splits.y_test, clf.predict_proba(emb["test"]), class_names=[str(d) for d in range(10)])
print(f"test accuracy {cls.accuracy:.3f}, macro F1 {cls.f1_macro:.3f}")
plots.plot_confusion_matrix(cls.confusion, cls.class_names, path=out / "digits_confusion.png")

# %% [markdown]
# ## Rejecting non-digits by the Gini impurity
#
# The threshold τ is fitted on the **validation** digits so that 5 % of them are rejected
# ($G(p) > τ$); the rates are then measured on the test digits and on the letters. The ROC
# shows every other choice of τ, the impurity used as a "not a digit" score.

# %%
gini = dg.gini_rejection(clf, emb["val"], emb["test"], dg.embed_digits(best.model, letters.images),
                         target_in_rejection=TARGET_IN_REJECTION)
r = gini.report
print(f"tau = {r.threshold.value:.3f}: rejects {r.in_rejection_rate:.1%} of test digits and "
      f"{r.out_rejection_rate:.1%} of letters; ROC AUC {r.auc:.3f}")
fig_gini = dg.plot_rejection(gini, path=out / "gini_rejection.png")
fig_gini

# %% [markdown]
# ## The original's rule: the Gini *coefficient*
#
# The write-up this reproduces measured the softmax vector with the Gini **coefficient** of
# inequality (0 for a uniform vector, 0.9 for a one-hot one over ten digits) and called an input
# a non-digit when it was above a hand-set 0.87, that is when the classifier was *confident*.
# Side by side with the impurity rule on the same test digits and letters; the AUC is each
# score's ranking of letters above digits over every threshold (0.5: no better than chance;
# below 0.5: the rule points the wrong way).

# %%
original = dg.original_gini_rule(clf, emb["test"], dg.embed_digits(best.model, letters.images),
                                 threshold=GINI_COEFFICIENT_THRESHOLD)
rules = pd.DataFrame({
    "Gini impurity > τ (fitted on validation)": {"digits rejected": r.in_rejection_rate,
                                                  "letters rejected": r.out_rejection_rate, "AUC": r.auc},
    f"Gini coefficient > {GINI_COEFFICIENT_THRESHOLD:g} (original)": {
        "digits rejected": original["digit_rejection"], "letters rejected": original["letter_rejection"],
        "AUC": original["auc"]}}).T
better = rules["AUC"].idxmax()
print(f"works better (higher AUC as a non-digit score): {better}")
rules

# %% [markdown]
# ## Faces: detect and crop
#
# OpenCV's frontal-face Haar cascade (Viola & Jones 2001) finds faces in each photo; the
# largest one, grown by a margin into a square, is the crop. Photos without a detection fall
# back to their central square (red frame). With `FACES_ONLY`, as the original kept only the
# faces it found, a crop is used only if it is a face: the photo had a detection and the
# detector finds a face again inside the crop; the others are dropped before anything is embedded.

# %%
people = fr.per_person(load_faces(data_root / "celebrity-faces" if data_root else None), FACES_PER_PERSON, SEED)
faces = fr.run_face_retrieval(people, size=FACE_SIZE, margin=FACE_MARGIN, weights=WEIGHTS, faces_only=FACES_ONLY,
                              progress=True)
print(f"{len(faces.dropped)} of {len(people)} photos dropped: their crop is not a face")
fig_faces = fr.plot_face_crops(faces, per_row=8, path=out / "face_crops.png")
fig_faces

# %% [markdown]
# ## Faces: retrieval and clustering
#
# The crops are embedded by the frozen ImageNet MobileNetV2 (pooled features, centred on their
# mean). Leave-one-out retrieval: each photo queries all the others; precision@k is the share
# of its k nearest neighbours showing the same person (the uncropped photos for comparison).
# Clustering is scored by the adjusted Rand index: HDBSCAN + OPTICS without the number of
# people, Ward clustering given it.

# %%
display(pd.Series(faces.summary(), name="faces").to_frame())
fig_face_tsne = plots.plot_features_2d(faces.embeddings, faces.labels, method="tsne", class_names=faces.class_names,
                                       seed=SEED, title="t-SNE of the face embeddings", path=out / "faces_tsne.png")
fig_face_tsne

# %% [markdown]
# ## Results
#
# The key numbers go to `OUT_DIR/results.json`; with `README_IMAGES` set, the figures are also
# saved there as small PNGs.

# %%
results = {
    "settings": presets.settings("05", globals()),
    "digits": {"sizes": splits.sizes(), "margin_sweep": sweep.table().to_dict(orient="records"),
               "best_margin": best.margin, "test_recall_at_1": test_retrieval.recall_at_k[1],
               "test_map_at_r": test_retrieval.map_at_r, "classifier_accuracy": cls.accuracy,
               "classifier_f1_macro": cls.f1_macro},
    "rejection": {"n_letters": len(letters), "tau": r.threshold.value, "val_rejection": r.threshold.in_rejection_val,
                  "digit_rejection": r.in_rejection_rate, "letter_rejection": r.out_rejection_rate, "auc": r.auc,
                  "original_gini_rule": original, "better_rule": better},
    "faces": faces.summary(),
}
if readme:
    save_figure_png(fig_tsne, readme / "digits_tsne.png")
    save_figure_png(fig_gini, readme / "digits_gini_rejection.png")
    save_figure_png(fig_face_tsne, readme / "faces_tsne.png")
save_results(out, results)
