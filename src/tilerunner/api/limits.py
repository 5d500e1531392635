"""The request body limit: bodies over ``Settings.max_body_bytes`` get 413 before parsing.

A declared ``Content-Length`` over the limit is refused before a byte of the body is read. A
body without one (chunked) is counted as it arrives and refused as soon as it passes the limit;
the route sees a disconnected client and whatever it answers is dropped, so memory never holds
more than the limit.
"""

from __future__ import annotations

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tilerunner.api.errors import BodyTooLargeError, error_response

__all__ = ["BodyLimit"]


class BodyLimit:
    """Pure ASGI middleware enforcing ``max_bytes`` per request body; paths under a prefix of
    ``prefixes`` get that prefix's own limit (a worker's results are larger than a job)."""

    def __init__(
        self, app: ASGIApp, max_bytes: int, prefixes: dict[str, tuple[int, str]] | None = None
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.prefixes = prefixes or {}

    def _limit(self, path: str) -> tuple[int, str]:
        for prefix, limit in self.prefixes.items():
            if path.startswith(prefix):
                return limit
        return self.max_bytes, "TILERUNNER_MAX_BODY_BYTES"

    @staticmethod
    def _error(limit: tuple[int, str]) -> BodyTooLargeError:
        return BodyTooLargeError(
            f"request body over {limit[0]} bytes; send a smaller body or raise {limit[1]} "
            "on the server"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._limit(str(scope.get("path", "")))
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit[0]:
            await error_response(self._error(limit))(scope, receive, send)
            return
        received = 0
        refused = False

        async def counted_receive() -> Message:
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request" and not refused:
                received += len(message.get("body", b""))
                if received > limit[0]:
                    refused = True
                    await error_response(self._error(limit))(scope, receive, send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if not refused:
                await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except ClientDisconnect:
            if not refused:
                raise
