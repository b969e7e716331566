"""The gallery's source of truth: a SQLite database in WAL mode (tables: :mod:`itemrec.gallery.schema`).

Each write is one ``BEGIN IMMEDIATE`` transaction that bumps the ``generation``; readers in
other processes keep reading during it (WAL). ``synchronous="FULL"`` makes every acknowledged
write survive a power cut too.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from itemrec.gallery.schema import SCHEMA, SCHEMA_VERSION


def utc_now() -> str:
    """The current UTC time as ISO 8601 to the second (``2024-05-01T12:00:00+00:00``).

    Returns:
        The timestamp string.
    """
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class MetadataStore:
    """SQLite access for one gallery; thread-safe through one lock per store object.

    ``synchronous="FULL"`` (default) fsyncs the WAL at each commit, so an
    acknowledged enrolment survives power loss too; ``"NORMAL"`` survives a
    killed process but not a power cut, and is faster for bulk loads.

    Args:
        path: the ``gallery.sqlite`` file (created unless ``readonly``).
        readonly: open read-only (``mode=ro``): queries only, another process may write.
        synchronous: SQLite's ``synchronous`` pragma: ``"FULL"``, ``"NORMAL"`` or ``"EXTRA"``.

    Raises:
        FileNotFoundError: ``readonly`` and the file does not exist.
        RuntimeError: SQLite cannot switch the database to WAL mode.
        ValueError: another ``synchronous`` value.
    """

    def __init__(self, path: str | os.PathLike, readonly: bool = False, synchronous: str = "FULL") -> None:
        self.path = Path(path)
        self.readonly = readonly
        if readonly:
            if not self.path.is_file():
                raise FileNotFoundError(f"gallery database {self.path} does not exist")
            uri = f"file:{self.path}?mode=ro"
            self.conn = sqlite3.connect(uri, uri=True, timeout=30, isolation_level=None, check_same_thread=False)
        else:
            self.conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            mode = self.conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise RuntimeError(f"{self.path}: could not switch SQLite to WAL mode (got {mode})")
        if synchronous.upper() not in ("FULL", "NORMAL", "EXTRA"):
            raise ValueError(f"synchronous must be FULL, NORMAL or EXTRA, got {synchronous!r}")
        self.conn.execute(f"PRAGMA synchronous={synchronous.upper()}")
        self.conn.execute("PRAGMA busy_timeout=30000")
        self.lock = threading.RLock()

    def close(self) -> None:
        """Close the connection."""
        with self.lock:
            self.conn.close()

    # -- transactions ------------------------------------------------------------
    def create_schema(self, meta: dict[str, Any]) -> None:
        """Create the tables and write the first meta rows (``generation`` 0) in one transaction.

        Args:
            meta: the gallery's settings (JSON-serialisable values), stored as meta rows.

        Raises:
            FileExistsError: the database already holds a gallery.
        """
        with self.lock:
            self.conn.executescript(SCHEMA)
        with self.write() as cur:
            if cur.execute("SELECT COUNT(*) FROM meta").fetchone()[0]:
                raise FileExistsError(f"{self.path} already holds a gallery")
            rows = {"schema_version": SCHEMA_VERSION, "generation": 0, "created_at": utc_now(), **meta}
            cur.executemany("INSERT INTO meta(key, value) VALUES (?, ?)", [(k, _enc(v)) for k, v in rows.items()])

    @contextmanager
    def write(self) -> Iterator[sqlite3.Cursor]:
        """One ``BEGIN IMMEDIATE`` … ``COMMIT`` transaction (rolled back on any error).

        Returns:
            A context manager yielding the transaction's cursor.

        Raises:
            PermissionError: the store is open read-only.
        """
        if self.readonly:
            raise PermissionError(f"gallery {self.path} is open read-only")
        with self.lock:
            cur = self.conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                yield cur
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            cur.execute("COMMIT")

    @contextmanager
    def read(self) -> Iterator[sqlite3.Cursor]:
        """A consistent snapshot (one read transaction).

        Returns:
            A context manager yielding the transaction's cursor.
        """
        with self.lock:
            cur = self.conn.cursor()
            cur.execute("BEGIN")
            try:
                yield cur
            finally:
                cur.execute("COMMIT")

    # -- meta --------------------------------------------------------------------
    def meta(self, cur: sqlite3.Cursor | None = None) -> dict[str, Any]:
        """The meta rows, JSON-decoded.

        Args:
            cur: a cursor of an open transaction to read in (default: the connection).

        Returns:
            ``{key: value}``.
        """
        with self.lock:
            rows = (cur or self.conn).execute("SELECT key, value FROM meta").fetchall()
        return {k: _dec(v) for k, v in rows}

    def set_meta(self, cur: sqlite3.Cursor, **values: Any) -> None:
        """Insert or replace meta rows inside a write transaction.

        Args:
            cur: the cursor of a :meth:`write` transaction.
            **values: keys and JSON-serialisable values.
        """
        cur.executemany(
            "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [(k, _enc(v)) for k, v in values.items()],
        )

    def generation(self, cur: sqlite3.Cursor | None = None) -> int:
        """The store's generation, bumped by every write transaction.

        Args:
            cur: a cursor of an open transaction to read in (default: the connection).

        Returns:
            The generation.

        Raises:
            RuntimeError: the database has no ``generation`` meta row (not a gallery).
        """
        with self.lock:
            row = (cur or self.conn).execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        if row is None:
            raise RuntimeError(f"{self.path} is not an itemrec gallery (no generation in meta)")
        return int(row[0])

    def bump_generation(self, cur: sqlite3.Cursor) -> int:
        """Add one to the generation inside a write transaction.

        Args:
            cur: the cursor of a :meth:`write` transaction.

        Returns:
            The new generation.
        """
        gen = self.generation(cur) + 1
        cur.execute("UPDATE meta SET value = ? WHERE key = 'generation'", (str(gen),))
        return gen

    # -- items ---------------------------------------------------------------------
    def item_pk(self, cur: sqlite3.Cursor, item_id: str) -> int | None:
        """The row key of an item.

        Args:
            cur: a transaction's cursor.
            item_id: the user's item id.

        Returns:
            ``item_pk``, or None when the item is not enrolled.
        """
        row = cur.execute("SELECT item_pk FROM items WHERE item_id = ?", (item_id,)).fetchone()
        return None if row is None else int(row[0])

    def items_by_pk(self, pks: list[int]) -> dict[int, tuple[str, str, str]]:
        """Item ids, names and attributes by row key.

        Args:
            pks: item keys.

        Returns:
            ``{item_pk: (item_id, name, attributes JSON)}`` for the keys that exist.
        """
        out: dict[int, tuple[str, str, str]] = {}
        with self.lock:
            for start in range(0, len(pks), 900):
                chunk = pks[start : start + 900]
                marks = ",".join("?" * len(chunk))
                for pk, iid, name, attrs in self.conn.execute(
                    f"SELECT item_pk, item_id, name, attributes FROM items WHERE item_pk IN ({marks})", chunk
                ):
                    out[int(pk)] = (iid, name, attrs)
        return out

    # -- vectors -------------------------------------------------------------------
    @staticmethod
    def rows_to_arrays(rows: list[tuple[int, int, bytes]], dim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Arrays from ``(vector_id, item_pk, vec)`` rows.

        Args:
            rows: (N,) rows, ``vec`` a BLOB of ``dim`` float32 values.
            dim: the embedding dimension.

        Returns:
            ``(vector_ids (N,) int64, item_pks (N,) int64, vectors (N, dim) float32)``.
        """
        n = len(rows)
        ids = np.fromiter((r[0] for r in rows), np.int64, n)
        pks = np.fromiter((r[1] for r in rows), np.int64, n)
        vecs = np.frombuffer(b"".join(r[2] for r in rows), np.float32).reshape(n, dim) if n else np.zeros((0, dim), np.float32)
        return ids, pks, vecs

    def indexed_since(self, cur: sqlite3.Cursor, generation: int, dim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The indexed vectors written after ``generation``, by vector id.

        Args:
            cur: a transaction's cursor.
            generation: the generation already seen.
            dim: the embedding dimension.

        Returns:
            As :meth:`rows_to_arrays`.
        """
        rows = cur.execute(
            "SELECT vector_id, item_pk, vec FROM vectors WHERE indexed = 1 AND generation > ? ORDER BY vector_id",
            (generation,),
        ).fetchall()
        return self.rows_to_arrays(rows, dim)

    def removed_since(self, cur: sqlite3.Cursor, generation: int) -> tuple[np.ndarray, np.ndarray]:
        """The indexed vectors deleted after ``generation`` (the ``removals`` log).

        Args:
            cur: a transaction's cursor.
            generation: the generation already seen.

        Returns:
            ``(vector_ids (r,) int64, item_pks (r,) int64)``.
        """
        rows = cur.execute("SELECT vector_id, item_pk FROM removals WHERE generation > ?", (generation,)).fetchall()
        return np.array([r[0] for r in rows], np.int64), np.array([r[1] for r in rows], np.int64)

    def integrity(self) -> str:
        """SQLite's ``PRAGMA integrity_check``.

        Returns:
            ``"ok"``, or its messages joined by ``"; "``.
        """
        with self.lock:
            rows = self.conn.execute("PRAGMA integrity_check").fetchall()
        return "; ".join(str(r[0]) for r in rows)

    # -- counts ----------------------------------------------------------------------
    def count_items(self) -> int:
        """The number of enrolled items.

        Returns:
            The count.
        """
        with self.lock:
            return int(self.conn.execute("SELECT COUNT(*) FROM items").fetchone()[0])

    def count_indexed(self) -> int:
        """The number of ``indexed = 1`` vector rows (what the search index must hold).

        Returns:
            The count.
        """
        with self.lock:
            return int(self.conn.execute("SELECT COUNT(*) FROM vectors WHERE indexed = 1").fetchone()[0])

    def existing_item_ids(self, item_ids: list[str]) -> set[str]:
        """Which of ``item_ids`` are enrolled.

        Args:
            item_ids: user item ids (any number; queried 900 at a time).

        Returns:
            The enrolled ones.
        """
        uniq = sorted(set(item_ids))
        found: set[str] = set()
        with self.lock:
            for start in range(0, len(uniq), 900):
                chunk = uniq[start : start + 900]
                marks = ",".join("?" * len(chunk))
                found |= {r[0] for r in self.conn.execute(f"SELECT item_id FROM items WHERE item_id IN ({marks})", chunk)}
        return found

    def item_rows(self, indexed: bool) -> list[tuple[str, str, str, str, int]]:
        """Every item, in enrolment order, with its number of vectors.

        Args:
            indexed: count ``indexed = 1`` vectors (``"each"`` mode: the images) or ``indexed = 0``
                ones (``"mean"`` mode: the images behind the prototype).

        Returns:
            ``[(item_id, name, attributes JSON, created_at, n_vectors)]``.
        """
        with self.lock:
            return self.conn.execute(
                "SELECT i.item_id, i.name, i.attributes, i.created_at, "
                "(SELECT COUNT(*) FROM vectors v WHERE v.item_pk = i.item_pk AND v.indexed = ?) "
                "FROM items i ORDER BY i.item_pk",
                (int(indexed),),
            ).fetchall()

    def consistency_counts(self, dim: int) -> dict[str, Any]:
        """What an integrity check compares with the index, read in one snapshot.

        Args:
            dim: the embedding dimension (a vector BLOB must hold ``4 · dim`` bytes).

        Returns:
            ``{"generation", "n_items", "n_vectors", "vector_ids", "item_pks" (the indexed rows,
            by vector id, int64 arrays), "orphans" (vectors of no item), "empty_items" (items
            without vectors), "bad_length" (BLOBs of another size)}``.
        """
        with self.read() as cur:
            gen = self.generation(cur)
            n_items = cur.execute("SELECT COUNT(*) FROM items").fetchone()[0]
            n_vectors = cur.execute("SELECT COUNT(*) FROM vectors").fetchone()[0]
            rows = cur.execute("SELECT vector_id, item_pk FROM vectors WHERE indexed = 1 ORDER BY vector_id").fetchall()
            orphans = cur.execute(
                "SELECT COUNT(*) FROM vectors v LEFT JOIN items i ON v.item_pk = i.item_pk WHERE i.item_pk IS NULL"
            ).fetchone()[0]
            empty = cur.execute(
                "SELECT COUNT(*) FROM items i WHERE NOT EXISTS (SELECT 1 FROM vectors v WHERE v.item_pk = i.item_pk)"
            ).fetchone()[0]
            bad_len = cur.execute("SELECT COUNT(*) FROM vectors WHERE length(vec) != ?", (4 * dim,)).fetchone()[0]
        return {"generation": gen, "n_items": int(n_items), "n_vectors": int(n_vectors),
                "vector_ids": np.array([r[0] for r in rows], np.int64), "item_pks": np.array([r[1] for r in rows], np.int64),
                "orphans": int(orphans), "empty_items": int(empty), "bad_length": int(bad_len)}


def _enc(value: Any) -> str:
    return json.dumps(value)


def _dec(value: str) -> Any:
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value
