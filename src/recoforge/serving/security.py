"""API keys, request limits and error answers of the HTTP service.

- Write endpoints need a key of scope ``write`` or ``admin``, admin endpoints (model
  activation, experiments) a key of scope ``admin``, sent in the ``X-API-Key`` header;
  read endpoints are public unless the settings say ``read_requires_key``. Keys are
  verified against their salted SHA-256 hashes in the store (plaintext is never stored).
- Every error answer is JSON ``{"error": message, "field": name or null}``; validation
  errors add ``detail``, one entry per offending field. A request body over the size
  limit is refused with 413 before it is parsed.
- An unexpected exception is logged with its traceback and answered with a generic 500
  carrying a request id: no stack trace ever reaches a client.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from recoforge.errors import (
    ArtifactError,
    ConfigError,
    DataError,
    NotFittedError,
    NotSupportedError,
    RecoforgeError,
    UnknownIdError,
)

_log = logging.getLogger(__name__)

SCOPES = ("read", "write", "admin")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False,
                        description="An API key made with `recoforge api-key create`")


class ApiError(HTTPException):
    """An HTTP error whose answer names the offending field."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(status_code=status, detail=message)
        self.field = field


def _error(status: int, message: str, field: str | None = None, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, "field": field, **extra}, status_code=status)


def check_key(request: Request, key: str | None, scope: str) -> str:
    """The scope of a valid key of at least ``scope``; raises 401 / 403 otherwise."""
    if not key:
        raise ApiError(401, f"this endpoint needs an API key of scope {scope!r} in the "
                            f"X-API-Key header (create one with `recoforge api-key create`)",
                       "X-API-Key")
    granted = request.app.state.store.verify_api_key(key)
    if granted is None:
        raise ApiError(401, "the API key is not valid (unknown or revoked)", "X-API-Key")
    if SCOPES.index(granted) < SCOPES.index(scope):
        raise ApiError(403, f"this endpoint needs scope {scope!r}; the key has {granted!r}",
                       "X-API-Key")
    return granted


def require(scope: str) -> Any:
    """A dependency admitting requests with a key of at least ``scope``."""

    def dependency(request: Request, key: str | None = Depends(_api_key)) -> str:
        return check_key(request, key, scope)

    return Depends(dependency)


def read_access() -> Any:
    """A dependency for read endpoints: open unless ``read_requires_key``."""

    async def dependency(request: Request, key: str | None = Depends(_api_key)
                         ) -> str | None:
        # async: an open read endpoint pays no thread-pool hop for this check
        if request.app.state.settings.read_requires_key:
            return await run_in_threadpool(check_key, request, key, "read")
        return None

    return Depends(dependency)


# ---------------------------------------------------------------------- errors
def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    return ".".join(str(part) for part in loc)


def _validation(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    detail: list[dict[str, Any]] = [{"field": _field(err.get("loc", ())),
               "loc": [p if isinstance(p, int) else str(p) for p in err.get("loc", ())],
               "msg": str(err.get("msg", "")), "type": str(err.get("type", ""))}
              for err in exc.errors()]  # FastAPI's ValidationError shape, plus "field"
    first: dict[str, Any] = detail[0] if detail else {"field": None, "msg": "invalid request"}
    return _error(422, f"{first['field']}: {first['msg']}", first["field"], detail=detail)


def _http(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    field = getattr(exc, "field", None)
    if field is None and exc.status_code == 400 and "parsing the body" in str(exc.detail):
        field = "body"  # FastAPI's answer to a body json cannot read (e.g. nested too deep)
    response = _error(exc.status_code, str(exc.detail), field)
    for name, value in (exc.headers or {}).items():
        response.headers[name] = value
    return response


def _recoforge(_: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, UnknownIdError):
        return _error(404, str(exc))
    if isinstance(exc, NotSupportedError):
        return _error(409, str(exc))
    if isinstance(exc, (DataError, ConfigError)):
        return _error(400, str(exc))
    if isinstance(exc, (NotFittedError, ArtifactError)):
        _log.error("model unavailable: %s", exc)
        return _error(503, "the model is not available; see the server log")
    return _error(400, str(exc))


def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    request_id = uuid.uuid4().hex
    _log.error("unhandled error in %s %s (request %s)", request.method, request.url.path,
               request_id, exc_info=exc)
    return _error(500, "internal error; the server log has the details", None,
                  request_id=request_id)


def install_error_handlers(app: FastAPI) -> None:
    """JSON error answers naming fields; a generic 500 for anything unexpected."""
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(RecoforgeError, _recoforge)
    app.add_exception_handler(Exception, _unexpected)


# ---------------------------------------------------------------------- body size
class BodyLimit:
    """ASGI middleware refusing request bodies over ``max_bytes`` with 413.

    The body is read (at most ``max_bytes + 1`` bytes held) before the app sees it and
    replayed to it, so an over-long chunked body is refused too. Memory: O(max_bytes).
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await self._refuse(scope, receive, send)
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = _error(413, f"the request body exceeds the limit of {self.max_bytes} "
                               f"bytes", "body")
        await response(scope, receive, send)
