"""The recognition service's request logic, independent of HTTP: a gallery, its embedder, the policy.

Everything here is synchronous and thread-safe; the ASGI app (:mod:`itemrec.service.app`)
calls it from worker threads, never on the event loop. Uploads are decoded by
:func:`itemrec.data.images.decode_image` (the pixels training and the gallery see) in
the request's thread; forward passes of concurrent requests are batched together by
:class:`~itemrec.service.batching.EmbedBatcher`; gallery access is serialised by a lock.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_MAX_UPLOAD = 10 * 1024 * 1024
DEFAULT_MAX_PIXELS = 25_000_000
DEFAULT_MAX_IMAGES = 16
THUMBNAIL_PX = 160


class HTTPError(Exception):
    """An answer other than 200: ``status`` and a message for the client (and extra headers).

    Args:
        status: the HTTP status code (400, 401, 403, 404, 413, 415, 422, ...).
        message: what went wrong, for a person; also the exception's message.
        headers: extra response headers (e.g. ``WWW-Authenticate`` with a 401).
    """

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


@dataclass
class ServiceConfig:
    """The service's policy.

    Attributes:
        token: bearer token for writes (and reads with ``auth_reads``); None disables writes.
        auth_reads: require the token for reads too.
        max_upload_bytes: largest request body (413 above it, before it is read).
        max_pixels: largest image, ``width * height`` from the header (413 above it).
        max_images: most images in one request (413 above it).
        default_k, max_k: matches returned by ``/recognize`` (``k`` outside ``1..max_k``: 400).
        max_batch: most images in one batched forward pass.
    """

    token: str | None = None
    auth_reads: bool = False
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_images: int = DEFAULT_MAX_IMAGES
    default_k: int = 5
    max_k: int = 100
    max_batch: int = 32


class RecognitionService:
    """The request logic over ``gallery`` and ``embedder`` (see the module docstring).

    Args:
        gallery: an open :class:`~itemrec.gallery.Gallery` (attached to ``embedder`` here if not yet).
        embedder: the :class:`~itemrec.embedder.ImageEmbedder` the gallery was built with.
        config: the policy (defaults: :class:`ServiceConfig`).

    Raises:
        GalleryMismatchError: the embedder is not the gallery's model.
    """

    def __init__(self, gallery: Any, embedder: Any, config: ServiceConfig | None = None) -> None:
        from itemrec.service.batching import EmbedBatcher

        self.gallery = gallery
        self.embedder = embedder
        self.config = config or ServiceConfig()
        embedder.max_pixels = self.config.max_pixels
        if gallery.embedder is None:
            gallery.attach(embedder)  # refuses a model that does not match the gallery
        self.lock = threading.Lock()  # one gallery access at a time (index mutation vs search)
        self.thumb_dir = Path(gallery.path) / "thumbnails"
        self.batcher = EmbedBatcher(embedder._predict, self.config.max_batch)
        self.batcher.embed(np.zeros((1, *embedder.image_size, 3), np.uint8))  # build the predict function once

    def close(self) -> None:
        """Stop the batching thread (the gallery is closed by its owner)."""
        self.batcher.close()

    # -- auth ---------------------------------------------------------------------
    def authorize(self, header: str | None, write: bool) -> None:
        """Check an ``Authorization`` header for a read or a write.

        Reads pass without a token unless ``config.auth_reads``. The token is compared in
        constant time (``hmac.compare_digest``).

        Args:
            header: the request's ``Authorization`` header, or ``None``.
            write: whether the request changes the gallery.

        Raises:
            HTTPError: 401 with ``WWW-Authenticate: Bearer`` when no bearer token was sent;
                403 when it is wrong, or when no token is configured (writes disabled).
        """
        token = self.config.token
        if not write and not self.config.auth_reads:
            return
        if token is None:
            raise HTTPError(403, "writes are disabled: the server was started without --token")
        if not header or not header.startswith("Bearer "):
            raise HTTPError(401, "missing bearer token (send 'Authorization: Bearer TOKEN')", {"WWW-Authenticate": "Bearer"})
        if not hmac.compare_digest(header[len("Bearer ") :].strip().encode(), token.encode()):
            raise HTTPError(403, "invalid token")

    # -- images -------------------------------------------------------------------
    def decode_uploads(self, files: list[tuple[str, bytes]]) -> np.ndarray:
        """Decode and fit uploads to the embedder's input, ``(N, H, W, 3)`` uint8.

        Decoded by :func:`itemrec.data.images.decode_image` (EXIF orientation applied, at most
        ``config.max_pixels`` pixels) and fitted to the embedder's ``image_size`` with its
        ``resize_mode``: the pixels training and the gallery see.

        Args:
            files: ``[(name, encoded bytes)]``; the name appears in error messages.

        Returns:
            The stacked images, (N, H, W, 3) uint8 with (H, W) the embedder's image size.

        Raises:
            HTTPError: 400 for no files or an empty one; 413 for more than ``config.max_images``
                files, too many pixels or a decompression bomb; 415 for data that is not an image;
                422 for an image that does not decode.
        """
        from itemrec.data.images import BadImageError, decode_image, fit_image

        if not files:
            raise HTTPError(400, "no image in the request")
        if len(files) > self.config.max_images:
            raise HTTPError(413, f"{len(files)} images in one request; the limit is {self.config.max_images}")
        out = []
        for name, data in files:
            if not data:
                raise HTTPError(400, f"{name}: empty upload")
            try:
                img = decode_image(data, name, max_pixels=self.config.max_pixels)
            except BadImageError as exc:
                reason = exc.reason
                if reason.startswith("too many pixels") or reason.startswith("decompression bomb"):
                    raise HTTPError(413, f"{name}: {reason}") from exc
                if reason.startswith("not an image"):
                    raise HTTPError(415, f"{name}: {reason}; send a JPEG, PNG, GIF, BMP, TIFF or WebP") from exc
                raise HTTPError(422, f"{name}: {reason}") from exc
            out.append(fit_image(img, self.embedder.image_size, self.embedder.resize_mode))
        return np.stack(out)

    def embed_uploads(self, files: list[tuple[str, bytes]]) -> np.ndarray:
        """Embeddings of uploads: decoded here, the forward pass batched with other requests.

        Args:
            files: ``[(name, encoded bytes)]``.

        Returns:
            (N, D) float32 embeddings, one row per file.

        Raises:
            HTTPError: as :meth:`decode_uploads`.
        """
        return self.batcher.embed(self.decode_uploads(files))

    # -- routes ---------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        """``GET /health``: status, the gallery's summary and the model's fingerprint id.

        Returns:
            ``{"status": "ok", "gallery": gallery.describe(), "model": fingerprint_id}``.
        """
        with self.lock:
            return {"status": "ok", "gallery": self.gallery.describe(), "model": self.embedder.fingerprint_id}

    def list_items(self) -> dict[str, Any]:
        """``GET /items``: every enrolled item.

        Returns:
            ``{"items": [{item_id, name, attributes, created_at, n_vectors}, ...]}``.
        """
        with self.lock:
            frame = self.gallery.items()
        return {"items": json.loads(frame.to_json(orient="records"))}

    def recognize(self, files: list[tuple[str, bytes]], k: int) -> dict[str, Any]:
        """``POST /recognize``: the top-``k`` items of each image and whether it is unknown.

        Args:
            files: ``[(name, encoded bytes)]``, one or more images.
            k: matches per image (the route has checked 1 ≤ k ≤ ``config.max_k``).

        Returns:
            ``{"results": [result, ...]}``; with one image its result's fields
            (``item_id``, ``unknown``, ``threshold``, ``matches``) at the top level too.

        Raises:
            HTTPError: 400/413/415/422 from :meth:`decode_uploads`.
        """
        emb = self.embed_uploads(files)
        with self.lock:
            results = self.gallery.query(vectors=emb, k=k)
        out = [r.to_dict() for r in results]
        return {"results": out, **out[0]} if len(out) == 1 else {"results": out}

    def enroll(self, item_id: str, name: str | None, attributes: dict | None, files: list[tuple[str, bytes]]) -> dict[str, Any]:
        """``POST /items``: enrol photos of an item (or add them to it) in one transaction.

        The first photo becomes the item's thumbnail when it has none yet.

        Args:
            item_id: the item's id (required, non-empty).
            name: its display name (``None``: keep the current one, or the id for a new item).
            attributes: free-form JSON attributes (``None``: keep the current ones).
            files: ``[(name, encoded bytes)]``, the photos.

        Returns:
            ``{"item_id", "n_vectors", "generation"}`` of the committed enrolment.

        Raises:
            HTTPError: 400 when ``item_id`` is empty; 400/413/415/422 from :meth:`decode_uploads`.
            itemrec.gallery.GalleryError: the gallery refused the write (answered 400 by the app).
        """
        if not item_id:
            raise HTTPError(400, "item_id is required")
        images = self.decode_uploads(files)
        emb = self.batcher.embed(images)
        with self.lock:
            res = self.gallery.enroll(item_id, name, vectors=emb, attributes=attributes)
        if not self._thumb_path(item_id).is_file():
            self._write_thumbnail(item_id, files[0][1])
        return {"item_id": res.item_id, "n_vectors": res.n_vectors, "generation": res.generation}

    def remove(self, item_id: str) -> dict[str, Any]:
        """``DELETE /items/{id}``: remove an item and its thumbnail.

        Args:
            item_id: the item to remove.

        Returns:
            ``{"item_id", "removed_vectors"}``.

        Raises:
            HTTPError: 404 when the item is not enrolled.
        """
        from itemrec.gallery import ItemNotFoundError

        with self.lock:
            try:
                n = self.gallery.remove(item_id)
            except ItemNotFoundError as exc:
                raise HTTPError(404, str(exc)) from exc
        self._thumb_path(item_id).unlink(missing_ok=True)
        return {"item_id": item_id, "removed_vectors": n}

    # -- thumbnails -------------------------------------------------------------------
    def thumbnail(self, item_id: str) -> bytes:
        """A JPEG thumbnail (at most 160 × 160 pixels) of an item's photo.

        The first photo enrolled through the service, else the first enrolled file (of up to 8)
        still on disk and decodable; written once under ``<gallery>/thumbnails`` and then served
        from there.

        Args:
            item_id: the item.

        Returns:
            The JPEG's bytes.

        Raises:
            HTTPError: 404 when the item is not enrolled or has no photo on record.
        """
        path = self._thumb_path(item_id)
        if path.is_file():
            return path.read_bytes()
        with self.lock:
            with self.gallery.store.read() as cur:
                known = cur.execute("SELECT 1 FROM items WHERE item_id = ?", (item_id,)).fetchone()
                sources = [r[0] for r in cur.execute(
                    "SELECT v.source FROM vectors v JOIN items i ON i.item_pk = v.item_pk "
                    "WHERE i.item_id = ? AND v.source IS NOT NULL ORDER BY v.vector_id LIMIT 8", (item_id,))]
        if not known:
            raise HTTPError(404, f"item {item_id!r} is not enrolled")
        for src in sources:
            try:
                data = Path(src).read_bytes()
            except OSError:
                continue
            if self._write_thumbnail(item_id, data):
                return path.read_bytes()
        raise HTTPError(404, f"item {item_id!r} has no photo on record")

    def _thumb_path(self, item_id: str) -> Path:
        return self.thumb_dir / (hashlib.sha256(item_id.encode()).hexdigest()[:32] + ".jpg")

    def _write_thumbnail(self, item_id: str, data: bytes) -> bool:
        """Write the item's thumbnail (atomically) from an encoded photo; False if it does not decode."""
        from PIL import Image

        from itemrec.data.images import BadImageError, decode_image

        try:
            img = Image.fromarray(decode_image(data, item_id, max_pixels=self.config.max_pixels))
        except BadImageError:
            return False
        img.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=85)
        self.thumb_dir.mkdir(exist_ok=True)
        path = self._thumb_path(item_id)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_bytes(buf.getvalue())
        os.replace(tmp, path)
        return True
