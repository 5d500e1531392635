"""Error -> HTTP status, in one place.

Every error body reads ``{"error": {"code": ..., "message": ...}}``: tilerunner errors, request
validation errors and the body-size limit alike. A 401 carries ``WWW-Authenticate: Bearer``.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from tilerunner.errors import (
    AuthenticationError,
    InvalidRequestError,
    ModelError,
    PermissionDeniedError,
    QueueError,
    RetryableError,
    StoreError,
    TilerunnerError,
    UnknownNameError,
)

__all__ = ["STATUS", "BodyTooLargeError", "error_response", "install_error_handlers", "status_for"]


class BodyTooLargeError(InvalidRequestError):
    """A request body over ``max_body_bytes`` (HTTP 413)."""

    code = "body_too_large"


# Most specific first: the first matching class decides.
STATUS: list[tuple[type[TilerunnerError], int]] = [
    (AuthenticationError, 401),
    (PermissionDeniedError, 403),
    (BodyTooLargeError, 413),
    (UnknownNameError, 404),
    (InvalidRequestError, 422),
    (RetryableError, 503),
    (StoreError, 503),
    (QueueError, 503),
    (ModelError, 502),
    (TilerunnerError, 500),
]

#: Extra response headers by status.
HEADERS: dict[int, dict[str, str]] = {401: {"WWW-Authenticate": "Bearer"}}


def status_for(error: TilerunnerError) -> int:
    return next(code for cls, code in STATUS if isinstance(error, cls))


def error_response(error: TilerunnerError) -> JSONResponse:
    """The JSON response for ``error``, with its status and headers."""
    status = status_for(error)
    return JSONResponse(
        {"error": {"code": error.code, "message": str(error)}},
        status_code=status,
        headers=HEADERS.get(status),
    )


def _validation_message(error: RequestValidationError) -> str:
    parts = []
    for problem in error.errors():
        where = ".".join(str(p) for p in problem.get("loc", ()))
        parts.append(f"{where}: {problem.get('msg', 'invalid')}")
    return "invalid request: " + "; ".join(parts)


def install_error_handlers(app: FastAPI) -> None:
    async def handle(_request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, TilerunnerError)
        return error_response(error)

    async def handle_validation(_request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError)
        return error_response(InvalidRequestError(_validation_message(error)))

    app.add_exception_handler(TilerunnerError, handle)
    app.add_exception_handler(RequestValidationError, handle_validation)
