"""The index file on disk: durable replacement, and clean-up after crashed writers.

:func:`save_index_file` writes an index (:meth:`itemrec.gallery.index.FaissIndex.write`) to a
temporary file, fsyncs it and ``os.replace``-s it over the old one, so a crash leaves the old
file or the new one; :func:`remove_stale_temps` deletes the temporaries of dead processes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np


def save_index_file(
    index: Any, path: str | os.PathLike, extra: dict[str, Any], arrays: dict[str, np.ndarray] | None = None
) -> None:
    """Durably replace ``path`` with ``index``: write a temp file, fsync, ``os.replace``, fsync the folder.

    A crash at any moment leaves either the old file or the new one, never a mix.

    Args:
        index: a :class:`~itemrec.gallery.index.FaissIndex` (anything with ``write(fh, extra, arrays)``).
        path: the index file.
        extra: header keys (the gallery generation).
        arrays: named int64 arrays (the vector-id -> item map).

    Raises:
        OSError: the file cannot be written (the old one is left as it was).
    """
    path = Path(path)
    tmp = path.with_name(f"{path.name}.tmp.{os.getpid()}")
    with open(tmp, "wb") as fh:
        index.write(fh, extra, arrays)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def remove_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Delete ``path.tmp.PID`` files left by processes that no longer run.

    Args:
        path: the index file whose temporaries to look for.

    Returns:
        The files deleted.
    """
    path = Path(path)
    removed = []
    for tmp in path.parent.glob(f"{path.name}.tmp.*"):
        try:
            pid = int(tmp.name.rsplit(".", 1)[1])
        except ValueError:
            continue
        if pid != os.getpid() and _pid_alive(pid):
            continue
        if pid == os.getpid():
            continue
        tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
