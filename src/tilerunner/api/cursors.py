"""Page cursors: a JSON value the server chose, carried by the client as URL-safe base64.

A cursor is opaque to the client; the server decodes it and checks its shape, so a cursor it
did not make is refused with a clear error rather than a server error.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

__all__ = ["pack_cursor", "unpack_cursor"]

#: What :func:`unpack_cursor` returns for a cursor that is not base64 of JSON.
UNREADABLE = object()


def pack_cursor(value: object) -> str:
    """``value`` (JSON-serialisable) as a cursor."""
    raw = json.dumps(value, separators=(",", ":")).encode("utf-8")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def unpack_cursor(cursor: str) -> Any:
    """The JSON value a cursor holds, or :data:`UNREADABLE` when it holds none; the caller
    checks the value's shape."""
    try:
        return json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError):
        return UNREADABLE
