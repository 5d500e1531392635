"""Which waiting objects form a job now, and the job's deterministic id.

Without rolling, every object is a job of its own. A rolling job gathers objects in the order
they were recorded:

- ``every=N``: a job per N objects, as soon as N are waiting;
- ``seconds=S``: a job of everything waiting once the oldest waiting object has waited S seconds
  (so a job covers at most about S seconds of arrivals);
- both: whichever comes first; a burst of arrivals still makes jobs of at most N objects.

Waiting objects are recorded in the store, so a batch that is half full when the watcher stops
is completed after its restart. A job's id is a hash of the watch and its members' keys and
versions: making the same job twice gives the same id, which the store refuses to insert again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from tilerunner.errors import InvalidRequestError
from tilerunner.store.watched import WatchedObject

__all__ = ["RollingPolicy", "job_id_for"]


@dataclass(frozen=True, slots=True)
class RollingPolicy:
    every: int | None = None
    seconds: float | None = None

    def __post_init__(self) -> None:
        if self.every is not None and self.every < 1:
            raise InvalidRequestError(f"--rolling {self.every}: give 1 or more objects per job")
        if self.seconds is not None and self.seconds <= 0:
            raise InvalidRequestError(
                f"--rolling-seconds {self.seconds:g}: give a positive number of seconds"
            )

    @property
    def rolling(self) -> bool:
        return self.every is not None or self.seconds is not None

    def batches(self, waiting: Sequence[WatchedObject], now: float) -> list[list[WatchedObject]]:
        """The jobs to make now from ``waiting`` (oldest first); the rest keeps waiting."""
        if not self.rolling:
            return [[obj] for obj in waiting]
        size = self.every or max(len(waiting), 1)
        chunks = [list(waiting[i : i + size]) for i in range(0, len(waiting), size)]
        if chunks and (self.every is None or len(chunks[-1]) < self.every):
            last = chunks.pop()  # not full: it goes once its oldest member waited long enough
            if self.seconds is not None and now - last[0].seen_at >= self.seconds:
                chunks.append(last)
        return chunks


def job_id_for(watch: str, members: Sequence[WatchedObject]) -> str:
    """``job-w`` and 15 hex digits of a hash over the watch and its members' identities."""
    digest = hashlib.sha256(watch.encode("utf-8"))
    for key, version in sorted(m.identity for m in members):
        digest.update(b"\0" + key.encode("utf-8") + b"\0" + version.encode("utf-8"))
    return f"job-w{digest.hexdigest()[:15]}"
