"""The tables of a gallery's SQLite store (:class:`~itemrec.gallery.store.MetadataStore`).

Tables
------
``meta(key, value)``
    embedding fingerprint (id and JSON), ``dim``, index type and parameters,
    prototype mode, ``generation`` (bumped by every write transaction),
    threshold and calibration.
``items(item_pk, item_id, name, attributes, created_at)``
    one row per enrolled item; ``item_id`` is the user's id (unique text).
``vectors(vector_id, item_pk, source, indexed, generation, vec)``
    L2-normalised float32 embeddings as BLOBs. ``indexed = 1`` rows are what the
    search index holds (every image in ``"each"`` mode, one mean prototype per item
    in ``"mean"`` mode); ``generation`` is the write that added the row.
``removals(vector_id, item_pk, generation)``
    log of indexed rows deleted, so a process holding an index at generation
    ``g`` catches up by adding ``vectors`` rows with ``generation > g`` and
    removing ``removals`` rows with ``generation > g``.

``vector_id`` uses ``AUTOINCREMENT`` so ids are never reused. The ``background`` table of
:mod:`itemrec.gallery.background` is created when a background is first set.
"""

from __future__ import annotations

SCHEMA_VERSION = "1"

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    item_pk INTEGER PRIMARY KEY AUTOINCREMENT,
    item_id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    attributes TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS vectors (
    vector_id INTEGER PRIMARY KEY AUTOINCREMENT,
    item_pk INTEGER NOT NULL REFERENCES items(item_pk),
    source TEXT,
    indexed INTEGER NOT NULL,
    generation INTEGER NOT NULL,
    vec BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS vectors_item ON vectors(item_pk);
CREATE INDEX IF NOT EXISTS vectors_gen ON vectors(indexed, generation);
CREATE TABLE IF NOT EXISTS removals (
    vector_id INTEGER PRIMARY KEY,
    item_pk INTEGER NOT NULL,
    generation INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS removals_gen ON removals(generation);
"""
