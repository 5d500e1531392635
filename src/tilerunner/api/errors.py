"""Error -> HTTP status, in one place."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from tilerunner.errors import (
    InvalidRequestError,
    ModelError,
    QueueError,
    RetryableError,
    StoreError,
    TilerunnerError,
    UnknownNameError,
)

__all__ = ["STATUS", "install_error_handlers"]

# Most specific first: the first matching class decides.
STATUS: list[tuple[type[TilerunnerError], int]] = [
    (UnknownNameError, 404),
    (InvalidRequestError, 422),
    (RetryableError, 503),
    (StoreError, 503),
    (QueueError, 503),
    (ModelError, 502),
    (TilerunnerError, 500),
]


def status_for(error: TilerunnerError) -> int:
    return next(code for cls, code in STATUS if isinstance(error, cls))


def install_error_handlers(app: FastAPI) -> None:
    async def handle(_request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, TilerunnerError)
        return JSONResponse(
            {"error": {"code": error.code, "message": str(error)}}, status_code=status_for(error)
        )

    app.add_exception_handler(TilerunnerError, handle)
