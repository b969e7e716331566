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
# # 03 · Fashion article types by transfer learning
#
# A closed-set classifier: which of the fashion set's **article types** (T-shirt, watch,
# sandal...) does a product photo show? We benchmark a small CNN trained from scratch against
# two ImageNet architectures, MobileNetV2 and VGG16, each with two heads (a plain
# fully-connected head, and one with BatchNorm and dropout), trained the transfer-learning way:
# backbone **frozen** first, then its top layers **fine-tuned**. The original also swept
# backbone × learning rate × optimiser × head and compared the models by weighted F1.
#
# *VGG16 weights:* offline, only randomly initialised VGG16 weights are available
# (`VGG16_WEIGHTS = None`), so its frozen features are random projections and its numbers are
# a floor; with internet, set `VGG16_WEIGHTS = "imagenet"` and Keras downloads the ImageNet
# weights. MobileNetV2 uses the local ImageNet weights file.

# %% [markdown]
# ## Parameters
#
# Everything the notebook trains is set here, and only here. `QUICK = True` takes the smoke-run
# sizes; `QUICK = False` the full sizes, with the original's whole sweep (both backbones and
# heads), at 224 px when TensorFlow sees a GPU. The sizes live in `itemrec.experiments.presets`.

# %% tags=["parameters"]
from itemrec.experiments import presets

QUICK = True
DATA_ROOT = None  # folder holding fashion-products/; None: $ITEMREC_DATA
OUT_DIR = "outputs/03_fashion"
SEED = 0
LABEL_COLUMN = "articleType"
BACKBONES = ["mobilenet_v2", "vgg16"]
HEADS = ["fc", "bn_dropout"]
VGG16_WEIGHTS = None  # "imagenet" with internet
FINETUNE_LAYERS = {"mobilenet_v2": 20, "vgg16": 4}  # top weighted layers unfrozen in phase 2
FINETUNE_LR = 1e-5
BATCH_SIZE = 32
N_EXAMPLES = 6
# the sizes of the mode (itemrec.experiments.presets)
SIZES = presets.sizes("03", QUICK)
MIN_COUNT = SIZES["MIN_COUNT"]  # drop classes rarer than this
MAX_PER_CLASS = SIZES["MAX_PER_CLASS"]  # cap per class (None: all images)
INPUT_SIZE = SIZES["INPUT_SIZE"]
FROZEN_EPOCHS = SIZES["FROZEN_EPOCHS"]
FINETUNE_EPOCHS = SIZES["FINETUNE_EPOCHS"]
CNN_EPOCHS = SIZES["CNN_EPOCHS"]
SWEEP_EPOCHS = SIZES["SWEEP_EPOCHS"]
LEARNING_RATES = SIZES["LEARNING_RATES"]
OPTIMIZERS = SIZES["OPTIMIZERS"]
SWEEP_BACKBONES = SIZES["SWEEP_BACKBONES"]
SWEEP_HEADS = SIZES["SWEEP_HEADS"]

# %%
# %matplotlib inline
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import pandas as pd
from IPython.display import display

from itemrec import plots
from itemrec.experiments import fashion as f
from itemrec.experiments.results_io import save_results
from itemrec.training.runs import keyed

pd.set_option("display.precision", 3)
out = Path(OUT_DIR)
out.mkdir(parents=True, exist_ok=True)
cache = out / "feature_cache"


def weights_of(backbone):
    return {"mobilenet_v2": "local", "vgg16": VGG16_WEIGHTS}.get(backbone, "imagenet")


def classifier_config(name, backbone, head, **schedule):
    """A run of the parameters cell as it is *now*, named by its backbone, head and training hash."""
    config = f.fashion_config(name, out / "runs", backbone=backbone, weights=schedule.pop("weights", weights_of(backbone)),
                              head=head, root=Path(DATA_ROOT) / "fashion-products" if DATA_ROOT else None,
                              label_column=LABEL_COLUMN, min_count=MIN_COUNT, max_per_class=MAX_PER_CLASS,
                              input_size=INPUT_SIZE, batch_size=BATCH_SIZE, feature_cache_dir=cache, seed=SEED,
                              **schedule)
    return keyed(config, swept=("model.backbone", "train.optimizer", "train.frozen_lr"))


# %% [markdown]
# ## Data
#
# Article types with fewer than `MIN_COUNT` photos are dropped; the rest are split 70/15/15,
# stratified by class and seeded, so every class is in every part.

# %%
splits = f.fashion_splits(Path(DATA_ROOT) / "fashion-products" if DATA_ROOT else None, LABEL_COLUMN, MIN_COUNT,
                          MAX_PER_CLASS, seed=SEED)
names = list(splits.train.class_names)
pd.DataFrame({p: getattr(splits, p).class_counts() for p in ("train", "val", "test")})

# %% [markdown]
# ## Backbone × head × learning rate × optimiser, chosen on validation loss
#
# A short sweep trains each head on each backbone's frozen features for each learning rate and
# optimiser; the optimiser and rate with the lowest validation loss are used for every model
# below.

# %% tags=["train"]
sweeps = []
for backbone in SWEEP_BACKBONES:
    for head in SWEEP_HEADS:
        configs = {(opt, lr): classifier_config(f"sweep_{head}", backbone, head, optimizer=opt, lr=lr,
                                                frozen_epochs=SWEEP_EPOCHS, finetune_epochs=0)
                   for opt in OPTIMIZERS for lr in LEARNING_RATES}
        sweeps.append(f.sweep_head(configs).assign(backbone=backbone, head=head))
sweep = pd.concat(sweeps).sort_values("best_val_loss", kind="stable").reset_index(drop=True)
chosen_optimizer, chosen_lr = sweep.loc[0, "optimizer"], float(sweep.loc[0, "lr"])
print(f"chosen: {chosen_optimizer}, lr={chosen_lr}")
sweep

# %% [markdown]
# ## The benchmark
#
# Each model is an `ExperimentConfig` trained by the one trainer (`itemrec.training.run_experiment`),
# its run kept in `OUT_DIR/runs`. The small CNN trains from scratch; each ImageNet backbone trains
# frozen (head and classifier only, on cached features: `frozen_on_cached_features`) and is then
# fine-tuned (`finetuned_backbone_params` weights of the backbone train). Each phase keeps its epoch of lowest validation loss; `best_val_loss_frozen` and
# `best_val_loss_finetuned` show what fine-tuning changed. Test scores are those of the final,
# fine-tuned model.

# %% tags=["train"]
schedule = dict(optimizer=chosen_optimizer, lr=chosen_lr, frozen_epochs=FROZEN_EPOCHS,
                finetune_epochs=FINETUNE_EPOCHS, finetune_lr=FINETUNE_LR)
small_cnn = classifier_config("small_cnn", "small_cnn", "fc", weights=None, optimizer=chosen_optimizer,
                              frozen_epochs=0, finetune_epochs=CNN_EPOCHS, finetune_lr=chosen_lr, finetune_layers="all")
models = {"small_cnn": f.run_classifier(small_cnn)}
for backbone in BACKBONES:
    for head in HEADS:
        config = classifier_config(f"{head}", backbone, head, finetune_layers=FINETUNE_LAYERS.get(backbone, 20),
                                   **schedule)
        models[f"{backbone}+{head}"] = f.run_classifier(config)
summary = pd.DataFrame({name: {**m.metrics(), **m.frozen_check} for name, m in models.items()}).T
summary

# %% [markdown]
# ## Curves of the best model
#
# Chosen by weighted F1 on the test split (phase 1: frozen; phase 2: fine-tuned).

# %%
best = summary["f1_weighted"].astype(float).idxmax()
top = models[best]
fig_curves = plots.plot_history(top.history[["loss", "val_loss", "accuracy", "val_accuracy"]], title=best,
                                path=out / "best_curves.png")
fig_curves

# %% [markdown]
# ## Per-class report and confusion matrix

# %%
display(top.report.per_class.sort_values("f1"))
fig_confusion = plots.plot_confusion_matrix(top.report.confusion, names, normalize=True,
                                            title=f"{best}, test split (row-normalised)", path=out / "confusion.png")
fig_confusion

# %% [markdown]
# ## Predictions on single images
#
# Test photos the model has not trained on, with the predicted article type and its
# probability (green when right).

# %%
test = splits.test
pick = test.frame.sample(N_EXAMPLES, random_state=SEED).index
pred = f.predict_images(top.model, list(test.paths[pick]), INPUT_SIZE, names)  # the run's classifier
display(f.plot_predictions(pred, list(test.frame.loc[pick, "class_name"]), path=out / "predictions.png"))
pred[["predicted", "probability", "top"]]

# %%
save_results(out, {"quick": QUICK, "settings": presets.settings("03", globals()), "optimizer": chosen_optimizer,
                   "lr": chosen_lr, "best_model": best, "n_classes": len(names),
                   "n_images": {p: len(getattr(splits, p)) for p in ("train", "val", "test")},
                   "run_dirs": {name: m.run.run_dir for name, m in models.items()},
                   "sweep": sweep.to_dict(orient="records"), "models": summary.to_dict(orient="index"),
                   "files": {"confusion": out / "confusion.png", "predictions": out / "predictions.png",
                             "curves": out / "best_curves.png"}})
