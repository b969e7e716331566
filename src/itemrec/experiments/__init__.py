"""Small drivers behind the notebooks: each step a notebook shows, as a tested function.

* :mod:`.packed_scenes` (notebook 04): cleaning the corrupted packed-scenes
  crops, a duplicate-safe split, cosine-softmax heads on frozen features and a
  scale (λ) sweep against a plain-softmax baseline.
* :mod:`.digits` (notebook 05): MNIST splits, a triplet network with a small
  CNN and a margin sweep, a softmax classifier on the embeddings and Gini
  rejection of non-digit glyphs (the impurity, and the original's coefficient).
* :mod:`.face_retrieval` (notebook 05): face crops embedded with a frozen
  ImageNet backbone, leave-one-out retrieval and clustering.
* :mod:`.presets`: each notebook's sizes per mode (quick / full / gpu) and
  what a run used; :mod:`.reporting`: small README PNGs;
  :mod:`.results_io`: the ``results.json`` every notebook writes.

Every model these drivers train is an :class:`itemrec.training.ExperimentConfig`
trained by :func:`itemrec.training.run_experiment` (through
:func:`itemrec.training.runs.run_or_load`); they add data preparation,
scoring and plots around it.

The other modules here drive the other notebooks (see each module's docstring).

Importing this package is cheap; the modules import TensorFlow/Keras inside
their functions.
"""
