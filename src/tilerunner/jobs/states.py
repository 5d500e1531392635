"""Job, image and region states and their allowed transitions, as data.

A job moves ``queued -> running -> aggregating -> succeeded | partial | failed``; it can be
cancelled from any non-terminal state (``cancelling`` while workers drain, then ``cancelled``).
The store only ever changes a state with a guarded update built from :data:`JOB_TRANSITIONS`
(``UPDATE ... WHERE status IN (allowed sources)``), so a slow writer can never move a finished job.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "JOB_TERMINAL",
    "JOB_TRANSITIONS",
    "ImageState",
    "JobState",
    "RegionState",
    "sources_of",
]


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    AGGREGATING = "aggregating"
    SUCCEEDED = "succeeded"
    PARTIAL = "partial"
    FAILED = "failed"
    CANCELLING = "cancelling"
    CANCELLED = "cancelled"


class ImageState(StrEnum):
    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"


class RegionState(StrEnum):
    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"


JOB_TERMINAL: frozenset[JobState] = frozenset(
    {JobState.SUCCEEDED, JobState.PARTIAL, JobState.FAILED, JobState.CANCELLED}
)

#: target state -> the states a job may be in to move there.
JOB_TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.QUEUED: frozenset(),
    JobState.RUNNING: frozenset({JobState.QUEUED}),
    JobState.AGGREGATING: frozenset({JobState.QUEUED, JobState.RUNNING}),
    JobState.SUCCEEDED: frozenset({JobState.AGGREGATING}),
    JobState.PARTIAL: frozenset({JobState.AGGREGATING}),
    JobState.FAILED: frozenset({JobState.QUEUED, JobState.RUNNING, JobState.AGGREGATING}),
    JobState.CANCELLING: frozenset({JobState.QUEUED, JobState.RUNNING}),
    JobState.CANCELLED: frozenset({JobState.CANCELLING, JobState.QUEUED, JobState.RUNNING}),
}


def sources_of(target: JobState) -> frozenset[JobState]:
    """The states from which a job may move to ``target``."""
    return JOB_TRANSITIONS[target]
