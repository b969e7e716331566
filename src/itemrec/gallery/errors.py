"""Errors raised by the gallery."""

from __future__ import annotations


class GalleryError(Exception):
    """A gallery operation that cannot be done as asked (the message says why and what to do)."""


class GalleryMismatchError(GalleryError):
    """Vectors or an embedding model that do not match the gallery's recorded fingerprint or dimension."""


class ItemNotFoundError(GalleryError, KeyError):
    """An item id that is not enrolled in the gallery."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else "item not found"
