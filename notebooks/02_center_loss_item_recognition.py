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
# # 02 · Center loss for grocery item recognition
#
# Softmax cross-entropy separates the training classes but leaves each class spread out. The
# **center loss** (Wen, Zhang, Li & Qiao, ECCV 2016) also pulls each embedding towards a
# running centre of its class:
#
# $$L = L_{softmax} + \lambda\,\tfrac{1}{2}\textstyle\sum_i \lVert x_i - c_{y_i}\rVert^2,
# \qquad c_j \leftarrow c_j - \alpha\,\frac{\sum_{i:y_i=j}(c_j - x_i)}{1 + n_j}.$$
#
# λ weighs the pull, α is the centres' learning rate. On the same open-set split as notebook
# 01 (40 grocery products never seen in training), we compare λ values with each other, and
# the centre loss with plain softmax and the triplet loss, by CMC against the catalogue images.
#
# The write-up this reproduces trained an ImageNet InceptionV3 with SGD, 20 epochs frozen and 30
# fine-tuned, with λ = 0.001 in the frozen phase and 0.01 or 0.001 in fine-tuning (0.001 won).

# %% [markdown]
# ## Parameters
#
# Everything the notebook trains is set here, and only here: re-run this cell and a training
# cell, and that cell trains what this cell now says. `QUICK = True` takes the smoke-run sizes
# (a subset, two epochs), `QUICK = False` the full sizes, which are the original's (InceptionV3 at
# 299 px, SGD, 20 + 30 epochs) when TensorFlow sees a GPU. The sizes live in
# `itemrec.experiments.presets`; change any of them below.

# %% tags=["parameters"]
from itemrec.experiments import presets

QUICK = True
DATA_ROOT = None  # folder holding grocery-store/; None: $ITEMREC_DATA
OUT_DIR = "outputs/02_center"
SEED = 0
WEIGHTS = "auto"  # "local" weights file for mobilenet_v2 / inception_v3_mixed8, None: random
EMBEDDING_DIM = 128
LAMBDA = 0.1  # weight of the centre term in the frozen phase
FINETUNE_LAMBDA = None  # its weight in fine-tuning; None: LAMBDA throughout
ALPHA = 0.5  # centre learning rate
MARGIN = 0.2  # triplet baseline
MINER = "semi_hard"  # triplet baseline
FINETUNE_LAYERS = 20
MONITOR_CLASSES = 10  # classes drawn by the deep-feature monitor
# the sizes of the mode (itemrec.experiments.presets)
SIZES = presets.sizes("02", QUICK)
SUBSET = SIZES["SUBSET"]  # photos kept per class and official split; None: the whole dataset
BACKBONE = SIZES["BACKBONE"]
INPUT_SIZE = SIZES["INPUT_SIZE"]
OPTIMIZER = SIZES["OPTIMIZER"]
FROZEN_LR = SIZES["FROZEN_LR"]
FINETUNE_LR = SIZES["FINETUNE_LR"]
FROZEN_EPOCHS = SIZES["FROZEN_EPOCHS"]  # phase 1: backbone frozen, head on cached features
FINETUNE_EPOCHS = SIZES["FINETUNE_EPOCHS"]  # phase 2: the top FINETUNE_LAYERS of the backbone too
P = SIZES["P"]  # classes per batch
K = SIZES["K"]  # photos per class in a batch
CMC_DRAWS = SIZES["CMC_DRAWS"]

# %%
# %matplotlib inline
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import pandas as pd
from IPython.display import Image, display

from itemrec import losses, plots
from itemrec.experiments import grocery as g
from itemrec.experiments.results_io import save_results

pd.set_option("display.precision", 3)
out = Path(OUT_DIR)
out.mkdir(parents=True, exist_ok=True)


def run_config(name, loss, **loss_args):
    """A run of the parameters cell as it is *now*, in a folder named by its swept values and training hash."""
    config = g.grocery_config(
        name, out / "runs", loss=loss, backbone=BACKBONE, weights=WEIGHTS, input_size=INPUT_SIZE,
        embedding_dim=EMBEDDING_DIM, optimizer=OPTIMIZER, epochs=FROZEN_EPOCHS, lr=FROZEN_LR,
        finetune_epochs=FINETUNE_EPOCHS, finetune_layers=FINETUNE_LAYERS, finetune_lr=FINETUNE_LR, p=P, k=K,
        data_root=g.grocery_root(DATA_ROOT, SUBSET, out, SEED), cmc_draws=CMC_DRAWS, seed=SEED, **loss_args)
    where = {"lam": "loss.config.lam", "finetune_lam": "train.finetune_lam", "alpha": "loss.config.alpha",
             "margin": "loss.config.margin"}
    return g.keyed(config, swept=[where[k] for k in where if k in loss_args])


# %% [markdown]
# ## The loss, in code
#
# The trainer builds this object from the run's config (`itemrec.training.builders.build_loss`):
# a softmax classifier over the training classes plus the centre term, one centre per class.
# On a toy batch of four 2-d embeddings of two classes, the centre term is half the mean
# squared distance to the (still zero) centres: (1 + 0.68 + 1 + 0.82) / 4 / 2 = 0.4375; one
# training step then moves each centre by α · (sum of its class's embeddings) / (1 + 2).

# %%
import numpy as np

center_loss = losses.CenterLoss(n_classes=2, alpha=ALPHA, lam=LAMBDA)
toy = np.array([[1.0, 0.0], [0.8, 0.2], [0.0, 1.0], [0.1, 0.9]], np.float32)
total, parts = center_loss.compute(toy, np.array([0, 0, 1, 1]), training=True)  # training: the centres move
display(pd.Series({"softmax ce": float(parts["ce"]), "centre term L_c": float(parts["center"]),
                   f"L = ce + {LAMBDA:g} L_c": float(total)}).to_frame("toy batch"))
pd.DataFrame(np.asarray(center_loss.centers), index=["centre 0", "centre 1"], columns=["x", "y"])

# %% [markdown]
# ## Training: frozen, then fine-tuned
#
# Phase 1 trains the head and the classifier on cached features of the frozen backbone;
# phase 2 also unfreezes the backbone's top layers at a small learning rate (BatchNorm stays
# in inference mode). A monitor draws the deep features of the held-out photos of
# `MONITOR_CLASSES` fixed training classes after every epoch, on one projection fitted at the
# first frame (so the frames compare), with a legend and λ in the title. The run folder is named after λ, α and a hash of everything that
# was trained, so a new λ gets a new folder and the earlier run stays.

# %% tags=["train"]
config = run_config("center", "center", lam=LAMBDA, finetune_lam=FINETUNE_LAMBDA, alpha=ALPHA,
                    feature_monitor=True, monitor_classes=MONITOR_CLASSES)
config.to_json(out / "center_config.json")  # the same run from the command line: itemrec train <that file>
center = g.run_or_load(config)
print(center.run_dir.name)
center.training["phases"]

# %% [markdown]
# ## CMC of every λ tried
#
# Each draw picks one test photo per unseen class and ranks the 40 catalogue images; the curve
# is the mean over the draws with its 95 % band. Every finished center-loss run in `OUT_DIR`
# that differs from this one only in λ is drawn too: change λ in the parameters cell, re-run the
# training cell and this one, and both curves are here.

# %% tags=["cmc"]
lambda_runs = g.sibling_runs(center.config, vary=("loss.config.lam", "train.finetune_lam"))


def lam_label(c):
    lam = c.loss.get("lam")
    lam2 = lam if c.train.finetune_lam is None else c.train.finetune_lam
    return f"λ={lam:g}" + ("" if lam2 == lam else f" then {lam2:g}")


lambda_cmcs = {lam_label(r.config): g.cmc_from_metrics(r.metrics) for r in lambda_runs.values()}
fig_lambda = plots.plot_cmc(lambda_cmcs, title=f"center loss: CMC over {CMC_DRAWS} draws, unseen classes",
                            path=out / "cmc_lambda.png")
fig_lambda

# %% [markdown]
# ## Softmax and center-loss curves
#
# `ce` is the softmax cross-entropy, `center` the centre term $L_c$ (before λ). Epochs count
# on across the phases: fine-tuning starts after epoch `FROZEN_EPOCHS`.

# %%
fig_curves = plots.plot_history(center.history, [["ce", "val_ce"], ["center", "val_center"],
                                                 ["accuracy", "val_accuracy"]],
                                title=f"center loss, {lam_label(center.config)}, α={ALPHA}",
                                path=out / "center_curves.png")
fig_curves

# %% [markdown]
# ## Deep features, epoch by epoch
#
# The frames of both phases joined into one animation: classes contract towards their
# centres as training goes on. The last frame is shown here, the animation below it.

# %%
gif, frames = g.feature_animation(center.run_dir, out / "deep_features.gif")
display(Image(filename=str(frames[-1])))
Image(filename=str(gif))

# %% [markdown]
# ## Baselines on the same split and schedule
#
# Plain softmax (λ = 0 in effect) and the triplet loss with a semi-hard miner, with the same
# backbone, head, phases and seed.

# %% tags=["train"]
runs = {"center": center}
runs["softmax"] = g.run_or_load(run_config("softmax", "softmax"))
runs["triplet"] = g.run_or_load(run_config("triplet", "triplet", margin=MARGIN, miner=MINER))
summary = g.summary_table(runs)
summary

# %% [markdown]
# ## CMC on the unseen classes
#
# The centre loss against its baselines, over the same query draws.

# %% tags=["cmc"]
cmcs = {name: g.cmc_from_metrics(res.metrics) for name, res in runs.items()}
fig_cmc = plots.plot_cmc(cmcs, title=f"CMC over {CMC_DRAWS} query draws, unseen classes (center: {lam_label(config)})",
                         path=out / "cmc.png")
fig_cmc

# %%
table = pd.DataFrame({name: {"rank1": c.at(1), "rank1_ci_low": c.ci_low[0], "rank1_ci_high": c.ci_high[0],
                             "rank5": c.at(min(5, len(c.ranks)))} for name, c in cmcs.items()}).T
save_results(out, {"quick": QUICK, "settings": presets.settings("02", globals()),
                   "runs": summary.to_dict(orient="index"), "cmc": table.to_dict(orient="index"),
                   "run_dirs": {name: res.run_dir for name, res in runs.items()},
                   "lambda_runs": {lam_label(r.config): r.run_dir for r in lambda_runs.values()},
                   "files": {"cmc": out / "cmc.png", "cmc_lambda": out / "cmc_lambda.png",
                             "curves": out / "center_curves.png", "gif": gif}})
table
