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
    """Pure ASGI middleware enforcing ``max_bytes`` per request body."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _error(self) -> BodyTooLargeError:
        return BodyTooLargeError(
            f"request body over {self.max_bytes} bytes; send a smaller body or raise "
            "TILERUNNER_MAX_BODY_BYTES on the server"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await error_response(self._error())(scope, receive, send)
            return
        received = 0
        refused = False

        async def counted_receive() -> Message:
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request" and not refused:
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    refused = True
                    await error_response(self._error())(scope, receive, send)
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
