"""Datasets, splits, audits and the input pipeline.

``from itemrec.data import ImageDataset`` is cheap; the tf.data pipeline lives
in :mod:`itemrec.data.pipeline` and imports TensorFlow on use.
"""

from itemrec.data.records import ImageDataset

__all__ = ["ImageDataset"]
