"""Test helpers for the ``nats://`` engine: where the server is, and tidying up after tests.

The server is the development machine's NATS (JetStream enabled) at ``TILERUNNER_TEST_NATS_URL``
or ``nats://127.0.0.1:4222``. Tests make queues with unique names; the conformance fixture purges
them, and :func:`drop_stale_test_streams` deletes the streams of test queues that are more than a
few minutes old (so a concurrent run's live queues are never touched).
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import time
from datetime import UTC, datetime
from urllib.parse import urlsplit

NATS_URL = os.environ.get("TILERUNNER_TEST_NATS_URL", "nats://127.0.0.1:4222")
_TEST_STREAM = re.compile(r"tilerunner_(q|lease|dl)_t-[0-9a-f]{12}")
_STALE_AFTER_S = 300.0
_dropped_once = False


def nats_address(url: str = NATS_URL) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 4222


def nats_reachable(url: str = NATS_URL, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections at the NATS address."""
    try:
        with socket.create_connection(nats_address(url), timeout=timeout):
            return True
    except OSError:
        return False


def wait_until_reachable(url: str = NATS_URL, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if nats_reachable(url):
            return True
        time.sleep(0.1)
    return False


def skip_reason(url: str = NATS_URL) -> str:
    host, port = nats_address(url)
    return (
        f"NATS is not reachable at {host}:{port}; start it with: start-stop-daemon --start "
        "--oknodo --background --exec /usr/sbin/nats-server -- -a 127.0.0.1 -p 4222 -js "
        "-sd /var/lib/nats-server -l /var/log/nats-server.log"
    )


def drop_stale_test_streams() -> None:
    """Once per process: delete the streams of test queues older than a few minutes."""
    global _dropped_once
    if _dropped_once or not nats_reachable():
        return
    _dropped_once = True
    asyncio.run(_drop_stale())


async def _drop_stale() -> None:
    import nats

    nc = await nats.connect(NATS_URL, max_reconnect_attempts=0, connect_timeout=2)
    try:
        js = nc.jetstream()
        now = datetime.now(UTC)
        for info in await js.streams_info():
            name = info.config.name or ""
            created = getattr(info, "created", None)
            if not _TEST_STREAM.fullmatch(name) or not isinstance(created, datetime):
                continue
            if (now - created).total_seconds() > _STALE_AFTER_S:
                await js.delete_stream(name)
    finally:
        await nc.close()
