"""Lease tokens: a broker lease as one opaque, URL-safe string.

A token carries the queue's lease (message id, receipt, attempt, expiry, body) and the model
whose queue it came from, so any process of the service can extend, complete or fail it: the
HTTP pull protocol may land each call on a different ``serve`` process, or on one restarted
since the lease. Tokens are not secret-signed; what proves possession is the broker's random
receipt inside, which ``extend``, ``ack`` and ``nack`` check (see :mod:`tilerunner.broker`).
"""

from __future__ import annotations

import base64
import binascii
import json

from tilerunner.broker import Lease
from tilerunner.errors import InvalidRequestError
from tilerunner.jobs.messages import RegionMessage

__all__ = ["decode_token", "encode_token"]


def encode_token(model: str, lease: Lease) -> str:
    payload = {
        "m": model,
        "i": lease.message_id,
        "r": lease.receipt,
        "a": lease.attempt,
        "e": lease.expires_at,
        "b": base64.b64encode(lease.body).decode("ascii"),
    }
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_token(token: str) -> tuple[str, Lease]:
    """(model, lease) from a token; InvalidRequestError for anything that is not one."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        payload = json.loads(raw)
        lease = Lease(
            message_id=str(payload["i"]),
            body=base64.b64decode(payload["b"]),
            receipt=str(payload["r"]),
            attempt=int(payload["a"]),
            expires_at=float(payload["e"]),
        )
        RegionMessage.decode(lease.body)  # what the service reads from it must parse
        return str(payload["m"]), lease
    except (binascii.Error, ValueError, KeyError, TypeError, AttributeError) as error:
        raise InvalidRequestError(f"malformed lease token: {error}") from None
