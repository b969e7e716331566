"""The FastAPI app: routes, request/response models, error shape, the web page.

Every error answers ``{"error": {"status", "message"}}`` with the HTTP status (also for
unknown routes, wrong methods and malformed parameters). Request bodies are read on the
event loop (bounded by :class:`~itemrec.service.limits.BodyLimitMiddleware`); decoding,
embedding and gallery access run in worker threads.
"""

from __future__ import annotations

import base64
import binascii
import json
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from itemrec.service.core import HTTPError, RecognitionService
from itemrec.service.limits import BodyLimitMiddleware, error_body


# -- request and response models ----------------------------------------------------
class ErrorDetail(BaseModel):
    """The body of every error answer.

    Attributes:
        status: the HTTP status code (400, 401, 403, 404, 405, 408, 413, 415, 422, 500).
        message: what went wrong, for a person.
    """

    status: int
    message: str


class ErrorResponse(BaseModel):
    """Every error answers ``{"error": {"status", "message"}}``.

    Attributes:
        error: the :class:`ErrorDetail`.
    """

    error: ErrorDetail


class Match(BaseModel):
    """One gallery item among a query's top-k.

    Attributes:
        item_id: the enrolled item's id.
        name: its display name.
        similarity: cosine similarity of the query to the item, in [-1, 1].
        attributes: the item's free-form JSON attributes.
    """

    item_id: str
    name: str
    similarity: float = Field(description="cosine similarity, -1..1")
    attributes: dict[str, Any]


class QueryResult(BaseModel):
    """What one query image matched.

    Attributes:
        item_id: the best match, or ``None`` when unknown.
        unknown: the best similarity is below the threshold (or there was no match).
        threshold: the similarity threshold applied (``None``: the gallery has none, nothing
            is unknown unless the gallery is empty).
        matches: the top-k items, most similar first.
    """

    item_id: str | None = Field(description="the best match, or null when unknown")
    unknown: bool = Field(description="best similarity below the gallery's threshold")
    threshold: float | None
    matches: list[Match]


class RecognizeResponse(BaseModel):
    """One image: the fields of its result at the top level too; several: ``results`` only.

    Attributes:
        results: one :class:`QueryResult` per uploaded image, in upload order.
        item_id: the single image's best match (unset for several images).
        unknown: the single image's unknown flag.
        threshold: the single image's threshold.
        matches: the single image's top-k.
    """

    results: list[QueryResult]
    item_id: str | None = None
    unknown: bool | None = None
    threshold: float | None = None
    matches: list[Match] | None = None


class EnrollJSON(BaseModel):
    """A JSON body: images as base64 (``/recognize`` reads only ``images``; ``/items`` needs ``item_id``).

    Attributes:
        item_id: the item to enrol (or add images to).
        name: its display name (default: the item id).
        attributes: free-form JSON attributes kept with the item.
        images: one base64-encoded image file, or a list of them.
    """

    item_id: str | None = None
    name: str | None = None
    attributes: dict[str, Any] | None = None
    images: list[str] | str = Field(description="base64-encoded image files")


class EnrollResponse(BaseModel):
    """An acknowledged (committed) enrolment.

    Attributes:
        item_id: the item enrolled.
        n_vectors: how many vectors (images) this request added.
        generation: the gallery's generation after the write (increases with every write).
    """

    item_id: str
    n_vectors: int
    generation: int


class RemoveResponse(BaseModel):
    """A removed item.

    Attributes:
        item_id: the item removed.
        removed_vectors: how many of its vectors left the index.
    """

    item_id: str
    removed_vectors: int


class Item(BaseModel):
    """One enrolled item, as ``GET /items`` lists it.

    Attributes:
        item_id: its id.
        name: its display name.
        attributes: its free-form JSON attributes.
        created_at: when it was first enrolled (UTC, ISO 8601).
        n_vectors: how many vectors (images) it has in the gallery.
    """

    item_id: str
    name: str
    attributes: dict[str, Any]
    created_at: str
    n_vectors: int


class ItemsResponse(BaseModel):
    """``GET /items``.

    Attributes:
        items: every enrolled item.
    """

    items: list[Item]


class HealthResponse(BaseModel):
    """``GET /health``.

    Attributes:
        status: ``"ok"``.
        gallery: the gallery's summary (``path``, ``items``, ``vectors``, ``dim``, ``index``,
            ``prototype``, ``fingerprint_id``, ``threshold``, ``hubness``, ``generation``).
        model: the embedding model's fingerprint id.
    """

    status: str
    gallery: dict[str, Any]
    model: str


_ERRORS = {s: {"model": ErrorResponse} for s in (400, 401, 403, 413, 415, 422)}
_UPLOAD_BODY = {
    "requestBody": {"required": True, "content": {
        "image/*": {"schema": {"type": "string", "format": "binary"}},
        "multipart/form-data": {"schema": {"type": "object", "properties": {
            "image": {"type": "array", "items": {"type": "string", "format": "binary"}},
            "item_id": {"type": "string"}, "name": {"type": "string"},
            "attributes": {"type": "string", "description": "a JSON object"}}}},
        "application/json": {"schema": EnrollJSON.model_json_schema()},
    }}
}


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(error_body(status, message), status, headers=headers, media_type="application/json")


async def _uploads(request: Request, service: RecognitionService) -> tuple[dict[str, str], list[tuple[str, bytes]]]:
    """``(text fields, [(filename, bytes)])`` of a raw image, multipart or JSON body."""
    ctype = request.headers.get("content-type", "")
    main = ctype.split(";")[0].strip().lower()
    limit = service.config.max_images
    if main == "multipart/form-data":
        try:
            form = await request.form(max_files=limit, max_fields=16)
        except StarletteHTTPException as exc:
            if "Too many files" in str(exc.detail):
                raise HTTPError(413, f"more than {limit} images in one request; the limit is {limit}") from exc
            raise HTTPError(400, f"malformed multipart body ({exc.detail})") from exc
        fields: dict[str, str] = {}
        files: list[tuple[str, bytes]] = []
        for name, value in form.multi_items():
            if isinstance(value, str):
                fields[name] = value
            else:
                files.append((value.filename or name, await value.read()))
        await form.close()
        return fields, files
    body = await request.body()
    if main == "application/json":
        try:
            doc = EnrollJSON.model_validate_json(body or b"{}") if body.strip() else None
        except ValidationError as exc:
            raise HTTPError(400, f"bad JSON body ({exc.errors()[0]['msg']}); expected {{'item_id', 'images': [base64, ...]}}") from exc
        if doc is None:
            raise HTTPError(400, "empty JSON body")
        images = [doc.images] if isinstance(doc.images, str) else doc.images
        if len(images) > limit:
            raise HTTPError(413, f"{len(images)} images in one request; the limit is {limit}")
        try:
            files = [(f"images[{i}]", base64.b64decode(s, validate=True)) for i, s in enumerate(images)]
        except (binascii.Error, ValueError) as exc:
            raise HTTPError(400, f"bad base64 in images ({exc})") from exc
        fields = {k: v for k, v in (("item_id", doc.item_id), ("name", doc.name)) if v is not None}
        if doc.attributes is not None:
            fields["attributes"] = json.dumps(doc.attributes)
        return fields, files
    if main.startswith("image/") or main in ("application/octet-stream", ""):
        return {}, [("body", body)]
    raise HTTPError(415, f"unsupported Content-Type {ctype!r}; send an image, multipart/form-data or JSON")


def _k(raw: str | None, service: RecognitionService) -> int:
    cfg = service.config
    if raw is None:
        return cfg.default_k
    try:
        k = int(raw)
    except ValueError as exc:
        raise HTTPError(400, f"k must be an integer, got {raw!r}") from exc
    if not 1 <= k <= cfg.max_k:
        raise HTTPError(400, f"k must lie in 1..{cfg.max_k}, got {k}")
    return k


def _attributes(fields: dict[str, str]) -> dict | None:
    if "attributes" not in fields or not fields["attributes"].strip():
        return None
    try:
        attrs = json.loads(fields["attributes"])
    except json.JSONDecodeError as exc:
        raise HTTPError(400, f"attributes must be JSON ({exc})") from exc
    if not isinstance(attrs, dict):
        raise HTTPError(400, "attributes must be a JSON object")
    return attrs


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(HTTPError)
    async def _http_error(request: Request, exc: HTTPError) -> Response:
        return _error(exc.status, exc.message, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _starlette(request: Request, exc: StarletteHTTPException) -> Response:
        path = request.url.path
        message = {404: f"no route {path}", 405: f"{request.method} not allowed on {path}"}.get(exc.status_code, str(exc.detail))
        return _error(exc.status_code, message, getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        return _error(400, f"{'.'.join(str(p) for p in first.get('loc', ()))}: {first.get('msg')}")

    @app.exception_handler(ClientDisconnect)
    async def _gone(request: Request, exc: ClientDisconnect) -> Response:
        return Response(status_code=400)  # never sent: the client left (or timed out) mid-body

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        from itemrec.gallery import GalleryError

        status = 400 if isinstance(exc, (GalleryError, ValueError)) else 500
        return _error(status, f"{type(exc).__name__}: {exc}")


def create_app(service: RecognitionService) -> FastAPI:
    """The ASGI app serving ``service``; the OpenAPI page is at ``/docs``, the web page at ``/``.

    Routes, limits and the error shape are those of the :mod:`itemrec.service` docstring:
    :class:`~itemrec.service.core.HTTPError` answers with its status, gallery errors and
    ``ValueError`` with 400, anything else with 500, always as ``{"error": {...}}``.

    Args:
        service: the :class:`~itemrec.service.core.RecognitionService` whose methods the
            routes call (in worker threads); its config's ``max_upload_bytes`` is read per
            request by the body-limit middleware.

    Returns:
        The ``FastAPI`` app (run it with :func:`itemrec.service.server.make_server`).
    """
    app = FastAPI(title="itemrec recognition service", version="1", description=__doc__.split("\n\n")[0],
                  responses={500: {"model": ErrorResponse}})
    app.add_middleware(BodyLimitMiddleware, get_limit=lambda: service.config.max_upload_bytes)
    _install_error_handlers(app)
    static = resources.files("itemrec.service") / "static"
    app.mount("/static", StaticFiles(directory=str(static)), name="static")

    def auth(request: Request, write: bool) -> None:
        service.authorize(request.headers.get("authorization"), write)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse((static / "index.html").read_text(encoding="utf-8"))

    @app.get("/health", response_model=HealthResponse, responses=_ERRORS)
    async def health(request: Request) -> Any:
        """Status, gallery summary and model fingerprint."""
        auth(request, write=False)
        return await run_in_threadpool(service.health)

    @app.get("/items", response_model=ItemsResponse, responses=_ERRORS)
    async def list_items(request: Request) -> Any:
        """Every enrolled item."""
        auth(request, write=False)
        return await run_in_threadpool(service.list_items)

    @app.get("/items/{item_id}/thumbnail", responses={200: {"content": {"image/jpeg": {}}}, 404: {"model": ErrorResponse}})
    async def thumbnail(item_id: str, request: Request) -> Response:
        """A JPEG thumbnail of an item's catalogue photo."""
        auth(request, write=False)
        data = await run_in_threadpool(service.thumbnail, item_id)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "no-cache"})

    @app.post("/recognize", response_model=RecognizeResponse, response_model_exclude_unset=True,
              responses=_ERRORS, openapi_extra=_UPLOAD_BODY)
    async def recognize(request: Request, k: str | None = None) -> Any:
        """Top-``k`` matches of each uploaded image and whether it is unknown."""
        auth(request, write=False)
        kk = _k(k, service)
        _, files = await _uploads(request, service)
        return await run_in_threadpool(service.recognize, files, kk)

    @app.post("/items", response_model=EnrollResponse, responses=_ERRORS, openapi_extra=_UPLOAD_BODY)
    async def enroll(request: Request) -> Any:
        """Enrol photos of an item (bearer token)."""
        auth(request, write=True)
        fields, files = await _uploads(request, service)
        attrs = _attributes(fields)
        return await run_in_threadpool(service.enroll, fields.get("item_id", ""), fields.get("name"), attrs, files)

    @app.delete("/items/{item_id}", response_model=RemoveResponse, responses={**_ERRORS, 404: {"model": ErrorResponse}})
    async def remove(item_id: str, request: Request) -> Any:
        """Remove an item (bearer token)."""
        auth(request, write=True)
        return await run_in_threadpool(service.remove, item_id)

    return app
