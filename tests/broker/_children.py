"""Code the conformance suite runs in spawned child processes (importable by module name)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from tilerunner.broker import open_queue


def lease_until_empty(url: str, name: str, barrier: Any, out: str) -> None:
    """Lease and ack in small batches until nothing is visible; write the ids leased."""
    queue = open_queue(url, name)
    barrier.wait(timeout=60)
    seen: list[str] = []
    while batch := queue.lease(2, visibility=120.0):
        for lease in batch:
            seen.append(lease.message_id)
            queue.ack(lease)
    queue.close()
    Path(out).write_text(json.dumps(seen))


def lease_one_and_hang(url: str, name: str, visibility: float, leases: Any) -> None:
    """Lease one message, report the lease, then hang until the parent kills us."""
    queue = open_queue(url, name)
    leases.put(queue.lease(1, visibility=visibility))
    time.sleep(120)
