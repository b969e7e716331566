"""Datasets, splits, audits and the input pipeline.

``from itemrec.data import ImageDataset`` is cheap. The other public names
are imported on first use (``from itemrec.data import read_image``), so that
``import itemrec.data`` pulls in neither Pillow nor TensorFlow:

* :mod:`itemrec.data.images`: ``read_image``, ``decode_image``, ``read_fitted``, ``fit_image``, ``load_images``,
  ``BadImageError`` (the one decode path for training, embedding, gallery and service)
* :mod:`itemrec.data.probe`: ``probe_image``, ``validate_files`` (up-front checks)
* :mod:`itemrec.data.synthetic`: ``render_catalogue``, ``write_catalogue``
* :mod:`itemrec.data.loaders`: ``load_folder``, ``load_grocery``, ``load_fashion``, ``load_mnist``,
  ``load_packed_scenes``, ``load_shelf``, ``load_faces``, ``load_dataset``
* :mod:`itemrec.data.splits`: ``class_disjoint_split``, ``stratified_split``, ``grocery_open_set``, ``GROCERY_UNSEEN``
* :mod:`itemrec.data.audit`: ``audit``, ``AuditReport`` (import ``audit`` from the submodule:
  the package attribute ``itemrec.data.audit`` is the module)
* :mod:`itemrec.data.sampling`: ``PKSampler``, ``random_triplets``
* :mod:`itemrec.data.pipeline` (TensorFlow): ``make_dataset``, ``make_pk_dataset``, ``AugmentConfig``
* :mod:`itemrec.data.fetch`: ``fetch`` (likewise, from the submodule)
"""

from __future__ import annotations

from itemrec._lazy import lazy_attributes
from itemrec.data.records import ImageDataset

_LAZY = {
    "images": ("read_image", "decode_image", "read_fitted", "fit_image", "load_images", "BadImageError"),
    "probe": ("probe_image", "validate_files"),
    "synthetic": ("render_catalogue", "write_catalogue", "SyntheticCatalogue"),
    "loaders": ("load_folder", "load_grocery", "load_fashion", "load_mnist", "load_packed_scenes", "load_shelf",
                "load_faces", "load_dataset"),
    "splits": ("class_disjoint_split", "stratified_split", "grocery_open_set", "GROCERY_UNSEEN"),
    "audit": ("AuditReport",),
    "sampling": ("PKSampler", "random_triplets"),
    "pipeline": ("make_dataset", "make_pk_dataset", "AugmentConfig"),
}
_WHERE = {name: module for module, names in _LAZY.items() for name in names}

__all__ = ["ImageDataset", *_WHERE]


__getattr__, __dir__ = lazy_attributes(__name__, _WHERE, globals())
