"""HTTP recognition service over a gallery: FastAPI on uvicorn, a web page at ``/``.

Routes (JSON in and out; errors are ``{"error": {"status", "message"}}``; OpenAPI at ``/docs``):

=================================  ================================================
``GET /``                          the web page: drop a photo, see the top-k items
``GET /health``                    status and gallery summary
``GET /items``                     enrolled items
``GET /items/{id}/thumbnail``      a JPEG of the item's catalogue photo
``POST /recognize?k=5``            one image as the raw body (``image/*`` or
                                   ``application/octet-stream``) or multipart file
                                   field(s); answers top-k matches and ``unknown``
``POST /items``                    enrol: multipart (``item_id``, ``name``,
                                   ``attributes`` JSON, image files) or JSON
                                   ``{"item_id", "name", "attributes", "images": [base64]}``
``DELETE /items/{id}``             remove an item
=================================  ================================================

Writes need ``Authorization: Bearer TOKEN`` (401 without, 403 wrong; with no token
configured, writes are disabled); reads too when ``auth_reads``. Limits: bodies over
``max_upload_bytes`` get 413 before they are read (the rest of the body is discarded,
so the client sees the 413), more than ``max_images`` images 413, images over
``max_pixels`` 413, undecodable images 422, non-images 415, malformed requests 400
(a negative ``Content-Length`` too). Connections must deliver a request within the
read timeout (408). It binds 127.0.0.1 by default and refuses a non-loopback address
without a token; put a TLS reverse proxy in front of it beyond a trusted network.

Modules: :mod:`~itemrec.service.core` (request logic), :mod:`~itemrec.service.app`
(routes, models), :mod:`~itemrec.service.limits` (body limits),
:mod:`~itemrec.service.batching` (forward passes of concurrent requests batched),
:mod:`~itemrec.service.server` (uvicorn, timeouts, shutdown).
"""

from itemrec.service.core import HTTPError, RecognitionService, ServiceConfig

__all__ = ["HTTPError", "RecognitionService", "ServiceConfig"]
