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
# # 01 · Triplet loss for grocery item recognition
#
# **Goal.** Recognise grocery products that the model has **never seen in training**, by
# comparing an embedding of a shelf photo with the embedding of each product's catalogue
# image. We learn the embedding with the triplet loss (Weinberger & Saul 2009; Schroff et al.,
# *FaceNet*, 2015): for an anchor $a$, a positive $p$ of the same product and a negative $n$
# of another,
#
# $$\ell(a,p,n) = \max\big(\lVert f(a)-f(p)\rVert^2 - \lVert f(a)-f(n)\rVert^2 + m,\ 0\big).$$
#
# Which triplets we train on matters as much as the loss. We compare the original **random**
# triplets with two miners over P×K batches (P products × K photos): **batch-hard** (hardest
# positive and negative per anchor, Hermans et al. 2017) and **semi-hard** (the nearest negative
# still farther than the positive, FaceNet). The original trained an ImageNet InceptionV3 trunk
# (global pooling, dropout, two dense layers) on random triplets, then ran a matching test: 10
# random query photos, each keeping its top-5 catalogue matches within a distance threshold.

# %% [markdown]
# ## Parameters
#
# Everything the notebook trains is set here, and only here. `QUICK = True` takes the smoke-run
# sizes (a subset of the photos, a few epochs, under two minutes on a laptop CPU); `QUICK = False`
# the full sizes (the original's InceptionV3 at 299 px when TensorFlow sees a GPU). The sizes
# live in `itemrec.experiments.presets`; change any of them below. `BACKBONE` is `"mobilenet_v2"`
# or `"inception_v3_mixed8"` (local ImageNet weights files) or `"small_cnn"`.

# %% tags=["parameters"]
from itemrec.experiments import presets

QUICK = True
DATA_ROOT = None  # folder holding grocery-store/; None: $ITEMREC_DATA
OUT_DIR = "outputs/01_triplet"
SEED = 0
WEIGHTS = "auto"  # "local" weights file for mobilenet_v2 / inception_v3_mixed8, None: random
EMBEDDING_DIM = 128
MARGIN = 0.2
MINERS = ["random", "batch_hard", "semi_hard"]
CNN_MINER = "semi_hard"  # the miner of the small-CNN run
FAR_TARGETS = [0.1, 0.01, 0.001]
MATCH_QUERIES = 10  # the matching test: random query photos...
MATCH_TOP_K = 5  # ...their nearest catalogue images...
MATCH_FAR = 0.1  # ...kept within the distance threshold fitted on calibration pairs at this FAR
# the sizes of the mode (itemrec.experiments.presets)
SIZES = presets.sizes("01", QUICK)
SUBSET = SIZES["SUBSET"]  # photos kept per class and official split; None: the whole dataset
BACKBONE = SIZES["BACKBONE"]
INPUT_SIZE = SIZES["INPUT_SIZE"]
OPTIMIZER = SIZES["OPTIMIZER"]
EPOCHS = SIZES["EPOCHS"]  # frozen-backbone epochs (head on cached features)
FINETUNE_EPOCHS = SIZES["FINETUNE_EPOCHS"]
CNN_EPOCHS = SIZES["CNN_EPOCHS"]
CNN_INPUT_SIZE = SIZES["CNN_INPUT_SIZE"]  # the small CNN trains from scratch: a smaller input
P = SIZES["P"]  # products per batch
K = SIZES["K"]  # photos per product in a batch
CMC_DRAWS = SIZES["CMC_DRAWS"]

# %%
# %matplotlib inline
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np
import pandas as pd
from IPython.display import display

from itemrec import losses, mining, plots
from itemrec.data import load_grocery, random_triplets
from itemrec.data.splits import grocery_open_set
from itemrec.experiments import grocery as g
from itemrec.experiments.results_io import save_results

pd.set_option("display.precision", 3)
out = Path(OUT_DIR)
out.mkdir(parents=True, exist_ok=True)


def run_config(name, miner, **schedule):
    """A triplet run of the parameters cell as it is *now*, in a folder named by its miner and training hash."""
    schedule.setdefault("weights", WEIGHTS)
    config = g.grocery_config(
        name, out / "runs", loss="triplet", miner=miner, margin=MARGIN, embedding_dim=EMBEDDING_DIM,
        optimizer=OPTIMIZER, p=P, k=K, data_root=g.grocery_root(DATA_ROOT, SUBSET, out, SEED), cmc_draws=CMC_DRAWS,
        far_targets=FAR_TARGETS, seed=SEED, **schedule)
    return g.keyed(config, swept=("loss.config.miner", "train.frozen_epochs", "train.finetune_epochs"))


# %% [markdown]
# ## Data: the open-set protocol
#
# The Grocery Store dataset (Klasson et al., WACV 2019) has 81 fine classes. 40 of them are
# held out entirely: their official *val* photos calibrate the decision thresholds and their
# *test* photos are the queries; the 41 others train the model. With `SUBSET` set, a linked
# copy keeping that many photos per class (same official split) stands in for the full folder.

# %%
ds = load_grocery(g.grocery_root(DATA_ROOT, SUBSET, out, SEED))
seen, unseen = grocery_open_set(ds)
pd.DataFrame({"seen (train)": seen.frame["split"].value_counts(),
              "unseen (never trained on)": unseen.frame["split"].value_counts()})

# %% [markdown]
# ## The original random triplets
#
# `random_triplets` draws (anchor, positive, negative) uniformly: most such triplets are
# already satisfied by the margin and teach the model little, which is why mining exists.
# Below, each row is an anchor with its positive (green) and negative (red).

# %%
train = seen.split("train")
trip = random_triplets(train.labels, 4, seed=SEED)
fig_triplets = plots.plot_query_matches(list(train.paths[trip[:, 0]]), train.labels[trip[:, 0]], list(train.paths),
                                        train.labels, trip[:, 1:], class_names=ds.class_names, thumb=80,
                                        path=out / "random_triplets.png")
fig_triplets

# %% [markdown]
# ## The loss and the miners, in code
#
# The trainer builds a `TripletLoss` with the miner the config names. On a toy batch of four
# 1-d embeddings, two per class (class 0 at 0.0 and 0.1, class 1 at 0.15 and 1.0), the squared
# distances give, for anchor 0.0 with positive 0.1 ($d_{ap} = 0.01$): batch-hard picks its
# hardest positive and the nearest negative 0.15 ($d_{an} = 0.0225$, loss 0.01 − 0.0225 + 0.2 =
# 0.1875); semi-hard picks the nearest negative farther than the positive, here the same 0.15.
# The table gives each miner's loss over all its triplets of the batch.

# %%
toy = np.array([[0.0], [0.1], [0.15], [1.0]], np.float32)
toy_labels = np.array([0, 0, 1, 1])
miners = {"batch_hard": mining.BatchHardMiner(), "semi_hard": mining.SemiHardMiner(),
          "random": mining.RandomTripletMiner(seed=SEED)}
toy_losses = {name: losses.TripletLoss(margin=MARGIN, miner=miner) for name, miner in miners.items()}
pd.Series({name: float(loss(toy, toy_labels)) for name, loss in toy_losses.items()}, name="toy batch loss").to_frame()

# %% [markdown]
# ## Training with three ways of picking triplets
#
# Each run freezes the ImageNet backbone, caches its pooled features once, and trains the
# embedding head (Dense → Dense → L2-normalised) on P×K batches. `"random"` picks one random
# positive and negative per anchor inside the batch (the random generator, in-batch). Each run
# lives in a folder named by its miner, epochs and a hash of everything trained: change a
# parameter and re-run this cell, and a new run trains beside the old one.

# %% tags=["train"]
runs = {}
for miner in MINERS:
    config = run_config("triplet", miner, backbone=BACKBONE, input_size=INPUT_SIZE, epochs=EPOCHS,
                        finetune_epochs=FINETUNE_EPOCHS)
    runs[miner] = g.run_or_load(config)
    print(miner, "->", runs[miner].run_dir.name)

# %% [markdown]
# ## Training curves
#
# Besides the loss, every epoch logs the mean anchor-positive distance $d_{ap}$ and
# anchor-negative distance $d_{an}$ of the mined triplets, and the fraction of triplets still
# violating the margin. Training pushes $d_{an}$ above $d_{ap}$ by the margin.

# %%
panels = [["loss", "val_loss"], ["d_ap", "d_an", "val_d_ap", "val_d_an"], ["active_fraction"]]
for miner, res in runs.items():
    display(plots.plot_history(res.history, panels, title=f"triplet loss, {miner} triplets, {len(res.history)} epochs",
                               path=out / f"curves_{miner}.png"))

# %% [markdown]
# ## A small CNN from scratch
#
# The original experiment's four-block CNN, trained end to end with the same loss: a backbone
# without weights has nothing to freeze, so all its epochs are fine-tuning epochs of every layer.

# %% tags=["train"]
cnn_config = run_config("triplet_small_cnn", CNN_MINER, backbone="small_cnn", weights=None,
                        input_size=CNN_INPUT_SIZE, epochs=0, finetune_epochs=CNN_EPOCHS, finetune_layers="all",
                        finetune_lr=1e-3)
runs["small_cnn"] = g.run_or_load(cnn_config)
display(plots.plot_history(runs["small_cnn"].history, panels, title="small CNN, from scratch",
                           path=out / "curves_small_cnn.png"))
summary = g.summary_table(runs)
summary

# %% [markdown]
# ## CMC on the unseen classes
#
# Each draw picks one test photo per unseen class and ranks the 40 catalogue images by cosine
# distance; the curve is the mean over the draws with its 95% band.

# %% tags=["cmc"]
fig_cmc = plots.plot_cmc({name: g.cmc_from_metrics(res.metrics) for name, res in runs.items()},
                         title=f"CMC over {CMC_DRAWS} draws vs catalogue images, unseen classes", path=out / "cmc.png")
fig_cmc

# %% [markdown]
# ## Verification: VAL at a chosen FAR
#
# For the best run (by MAP@R), a distance threshold is fitted on the **calibration** pairs of
# the unseen classes for each target FAR, then VAL (same-product pairs accepted) and FAR
# (different-product pairs accepted) are measured on the **test** pairs, which the threshold
# never saw.

# %%
best = summary["map_at_r"].idxmax()
emb = g.open_set_embeddings(runs[best].run_dir)
sweep = g.verification_sweep(emb, tuple(FAR_TARGETS))
display(plots.plot_val_far(sweep.curve, sweep.reports[0].threshold, title=f"VAL/FAR on test ({best})",
                           path=out / "val_far.png"))
sweep.table

# %% [markdown]
# ## The matching test
#
# As the original ran it: `MATCH_QUERIES` random test photos of unseen products (left), each with
# its `MATCH_TOP_K` nearest catalogue images, kept only within the distance threshold fitted on
# the calibration pairs at FAR `MATCH_FAR` (dropped matches leave an empty cell). Green when right,
# red when wrong, with the cosine distance.

# %%
match_threshold = g.verification_sweep(emb, (MATCH_FAR,)).reports[0].threshold.value
fig_matches, queries, neighbours = g.top_matches(emb, n_queries=MATCH_QUERIES, k=MATCH_TOP_K, seed=SEED,
                                                 threshold=match_threshold, path=out / "top5_matches.png")
found = float(np.mean([emb.test_labels[q] in emb.gallery_labels[nb[nb >= 0]] for q, nb in zip(queries, neighbours)]))
print(f"threshold {match_threshold:.3f}: the right product is among the kept matches for {found:.0%} of the queries")
fig_matches

# %% [markdown]
# ## Embedding projector
#
# The test embeddings with thumbnails, for the TensorBoard Embedding Projector
# (`tensorboard --logdir OUT_DIR/projector`, or load the TSV files at projector.tensorflow.org).

# %%
proj = g.export_run_projector(emb, out / "projector", max_images=500 if QUICK else 2000, seed=SEED)
sorted(p.name for p in proj.out_dir.iterdir())

# %%
results = {
    "quick": QUICK, "settings": presets.settings("01", globals()), "best_run": best,
    "runs": summary.to_dict(orient="index"), "run_dirs": {name: res.run_dir for name, res in runs.items()},
    "verification": sweep.table.to_dict(orient="records"),
    "matching": {"threshold": match_threshold, "queries": len(queries), "found": found},
    "files": {"cmc": out / "cmc.png", "val_far": out / "val_far.png", "top5": out / "top5_matches.png",
              "projector": proj.config, "sprite": proj.sprite},
}
save_results(out, results)
