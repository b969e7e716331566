"""Dynamic batching of forward passes: concurrent requests share one model call.

Request threads hand their decoded images to :meth:`EmbedBatcher.embed` and wait; one
worker thread takes whatever has queued up (up to ``max_batch`` images), runs a single
forward pass and hands each request its rows. Under load this turns many batch-1
calls into a few larger ones (cheaper per image on a CPU), and only one thread ever
drives the model, so concurrent requests do not oversubscribe the cores.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future

import numpy as np


class EmbedBatcher:
    """Batch concurrent ``embed`` calls into single calls of ``forward``.

    Starts its daemon worker thread at once.

    Args:
        forward: ``(N, H, W, 3) uint8 -> (N, D) float32`` (e.g. ``ImageEmbedder._predict``).
        max_batch: most images per forward call (a request larger than this runs alone;
            default 32).

    Raises:
        ValueError: ``max_batch`` < 1.
    """

    def __init__(self, forward: Callable[[np.ndarray], np.ndarray], max_batch: int = 32) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.forward = forward
        self.max_batch = int(max_batch)
        self._queue: queue.Queue = queue.Queue()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="itemrec-embed", daemon=True)
        self._thread.start()

    def embed(self, images: np.ndarray) -> np.ndarray:
        """Embeddings ``(N, D)`` of ``images`` ``(N, H, W, 3)``; blocks until computed.

        Args:
            images: (N, H, W, 3) images, as ``forward`` takes them.

        Returns:
            This request's N rows of ``forward``'s output.

        Raises:
            RuntimeError: the batcher is closed. Whatever ``forward`` raised for the batch this
                request was in is raised here too.
        """
        if self._closed:
            raise RuntimeError("the embedding worker has stopped")
        fut: Future = Future()
        self._queue.put((images, fut))
        return fut.result()

    def close(self, timeout: float = 30.0) -> None:
        """Finish the queued work and stop the worker thread.

        Idempotent. Requests queued before the call are still served.

        Args:
            timeout: seconds to wait for the thread to finish (default 30).
        """
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._thread.join(timeout)

    def _take(self, first: tuple) -> tuple[list[tuple], bool]:
        """``first`` plus whatever else is queued, up to ``max_batch`` images; and whether to stop."""
        jobs, n = [first], len(first[0])
        while n < self.max_batch:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:
                return jobs, True
            jobs.append(job)
            n += len(job[0])
        return jobs, False

    def _run(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is None:
                break
            jobs, stop = self._take(first)
            try:
                out = self.forward(np.concatenate([j[0] for j in jobs]))
            except BaseException as exc:  # noqa: BLE001 - handed to every waiting request
                for _, fut in jobs:
                    fut.set_exception(exc)
                continue
            start = 0
            for images, fut in jobs:
                fut.set_result(out[start : start + len(images)])
                start += len(images)
