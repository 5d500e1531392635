"""Errors raised by tilerunner.

Every error derives from :class:`TilerunnerError` and says what the caller should change::

    TilerunnerError
     ├── InvalidRequestError      bad input; never retry (job document, CLI flags, paths)
     │    ├── SourceError         a source is missing, unreadable or not a raster
     │    ├── RefusedUrlError     a client-named URL, path or limit the server's policy refuses
     │    └── UnknownNameError    a model, queue engine or output format that does not exist
     ├── AuthenticationError      no API key, or an unknown or revoked one (HTTP 401)
     ├── PermissionDeniedError    a valid key without the scope a route needs (HTTP 403)
     ├── RetryableError           transient; the region is retried (lease lost, broker busy)
     │    └── LeaseLostError      a lease another holder has now: drop the result
     ├── ModelError               the model raised or returned malformed output
     ├── QueueError               the queue engine failed
     └── StoreError               the state database failed or is inconsistent
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "AuthenticationError",
    "InvalidRequestError",
    "LeaseLostError",
    "ModelError",
    "PermissionDeniedError",
    "QueueError",
    "RefusedUrlError",
    "RetryableError",
    "SourceError",
    "StoreError",
    "TilerunnerError",
    "UnknownNameError",
]


class TilerunnerError(Exception):
    """Root of every error tilerunner raises on purpose."""

    code: str = "error"


class InvalidRequestError(TilerunnerError, ValueError):
    """The request is wrong; retrying it unchanged will fail again."""

    code = "invalid_request"


class SourceError(InvalidRequestError):
    """A source cannot be opened or read."""

    code = "source_error"


class RefusedUrlError(InvalidRequestError):
    """A URL, path or limit in a client's job document that the server's policy refuses.

    ``field`` is the document path of the value (``sources[3].url``, ``callback.url``).
    """

    code = "refused_url"

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field


class UnknownNameError(InvalidRequestError, LookupError):
    """A name (model, engine, format) is not known; suggests the closest known names."""

    code = "unknown_name"

    def __init__(self, kind: str, name: str, known: Iterable[str], hint: str = "") -> None:
        known_list = sorted(known)
        close = difflib.get_close_matches(name, known_list, n=3)
        message = f"unknown {kind} {name!r}"
        if close:
            message += f"; did you mean {' or '.join(repr(c) for c in close)}?"
        elif known_list:
            message += f"; known: {', '.join(known_list)}"
        if hint:
            message += f" ({hint})"
        super().__init__(message)
        self.kind = kind
        self.name = name
        self.known = known_list


class AuthenticationError(TilerunnerError):
    """No API key, or a key that is unknown or revoked (HTTP 401)."""

    code = "unauthenticated"


class PermissionDeniedError(TilerunnerError):
    """A valid key without the scope a route needs (HTTP 403)."""

    code = "forbidden"


class RetryableError(TilerunnerError):
    """A transient failure; the work is retried."""

    code = "retryable"


class LeaseLostError(RetryableError):
    """The lease is no longer held: it expired and was redelivered, or was acked or dead-lettered.

    The holder must drop its result instead of acking it; the current holder (or the dead-letter
    set) owns the message now. Heartbeat more often or lease with a longer visibility if this
    happens to healthy workers.
    """

    code = "lease_lost"

    def __init__(self, queue: str, message_id: str) -> None:
        super().__init__(
            f"lease on message {message_id!r} of queue {queue!r} is no longer held (it expired and "
            "was redelivered, or was acked or dead-lettered); drop this result, and extend leases "
            "more often or lease with a longer visibility"
        )
        self.queue = queue
        self.message_id = message_id


class ModelError(TilerunnerError):
    """The model failed or returned output that does not match the model contract."""

    code = "model_error"


class QueueError(TilerunnerError):
    """The queue engine failed."""

    code = "queue_error"


class StoreError(TilerunnerError):
    """The state database failed."""

    code = "store_error"
