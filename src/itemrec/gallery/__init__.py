"""A persistent item gallery: SQLite store (source of truth) + FAISS search index (cache).

>>> from itemrec.gallery import Gallery
>>> g = Gallery.create("shop.gallery", embedder)                 # doctest: +SKIP
>>> g.enroll("sku-1", "oat milk", paths=["a.jpg", "b.jpg"])       # doctest: +SKIP
>>> g.query(paths=["query.jpg"], k=5)[0].item_id                   # doctest: +SKIP

FAISS is imported on first use, so importing this package stays cheap.
"""

from itemrec.gallery.errors import GalleryError, GalleryMismatchError, ItemNotFoundError
from itemrec.gallery.gallery import PROTOTYPES, Gallery, fingerprint_of, normalize_rows
from itemrec.gallery.index import INDEX_KINDS, FaissIndex, SearchIndex
from itemrec.gallery.results import (
    Calibration,
    EnrollResult,
    IntegrityReport,
    Match,
    QueryResult,
    choose_threshold,
)
from itemrec.gallery.store import MetadataStore

__all__ = [
    "Gallery",
    "GalleryError",
    "GalleryMismatchError",
    "ItemNotFoundError",
    "FaissIndex",
    "SearchIndex",
    "MetadataStore",
    "Match",
    "QueryResult",
    "EnrollResult",
    "Calibration",
    "IntegrityReport",
    "choose_threshold",
    "fingerprint_of",
    "normalize_rows",
    "INDEX_KINDS",
    "PROTOTYPES",
]
