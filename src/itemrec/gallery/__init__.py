"""A persistent item gallery: SQLite store (source of truth) + FAISS search index (cache).

>>> from itemrec.gallery import Gallery
>>> g = Gallery.create("shop.gallery", embedder)                 # doctest: +SKIP
>>> g.enroll("sku-1", "oat milk", paths=["a.jpg", "b.jpg"])       # doctest: +SKIP
>>> g.query(paths=["query.jpg"], k=5)[0].item_id                   # doctest: +SKIP

A :class:`Gallery` composes a :class:`MetadataStore` (SQLite), a :class:`Synchroniser` (the
FAISS index kept in step with the store), :class:`VectorInputs` (the embedder), an
:class:`Enroller`, a :class:`HubnessCorrection` and a :class:`Recognizer`; each can be used alone.

FAISS is imported on first use, so importing this package stays cheap.
"""

from itemrec.gallery.background import HubnessCorrection
from itemrec.gallery.enrolment import PROTOTYPES, Enroller
from itemrec.gallery.errors import GalleryError, GalleryMismatchError, ItemNotFoundError
from itemrec.gallery.gallery import Gallery
from itemrec.gallery.index import INDEX_KINDS, FaissIndex
from itemrec.gallery.inputs import VectorInputs, fingerprint_of, normalize_rows
from itemrec.gallery.queries import Recognizer
from itemrec.gallery.search_index import SearchIndex
from itemrec.gallery.results import (
    Calibration,
    EnrollResult,
    IntegrityReport,
    Match,
    QueryResult,
    choose_threshold,
)
from itemrec.gallery.store import MetadataStore
from itemrec.gallery.sync import Synchroniser

__all__ = [
    "Gallery",
    "GalleryError",
    "GalleryMismatchError",
    "ItemNotFoundError",
    "FaissIndex",
    "SearchIndex",
    "MetadataStore",
    "Synchroniser",
    "VectorInputs",
    "Enroller",
    "HubnessCorrection",
    "Recognizer",
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
