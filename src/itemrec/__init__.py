"""itemrec: open-set item recognition by embedding similarity against a gallery.

Submodules are imported on demand (``import itemrec.evaluation``) so that
``import itemrec`` stays cheap and does not pull in TensorFlow.
"""

__version__ = "0.1.0"
