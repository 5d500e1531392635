"""Job, image and region states and their allowed transitions, as data.

A job moves ``planning -> queued -> running -> aggregating -> succeeded | partial | failed``.
It is accepted in ``planning`` (stored with its document, no images yet) and a coordinator opens
its images off the caller's request; planning that fails moves it to ``failed``. It can be
cancelled from any non-terminal state but ``aggregating`` (``cancelling`` while workers drain,
then ``cancelled``).
A retry of what failed reopens a ``partial`` or ``failed`` job (:data:`JOB_REOPENABLE`); no
other move leaves a terminal state. The store only ever changes a state with a guarded update
built from :data:`JOB_TRANSITIONS` (``UPDATE ... WHERE status IN (allowed sources)``), so a slow
writer can never move a finished job.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "JOB_REOPENABLE",
    "JOB_TERMINAL",
    "JOB_TRANSITIONS",
    "ImageState",
    "JobState",
    "RegionState",
    "sources_of",
]


class JobState(StrEnum):
    PLANNING = "planning"
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

#: A retry (``queue requeue``, ``POST /v1/jobs/{id}/retry``) reopens a job that ended with
#: failures, ``partial | failed -> running``; nothing else ever leaves a terminal state.
JOB_REOPENABLE: frozenset[JobState] = frozenset({JobState.PARTIAL, JobState.FAILED})

#: target state -> the states a job may be in to move there.
JOB_TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.PLANNING: frozenset(),
    JobState.QUEUED: frozenset({JobState.PLANNING}),
    JobState.RUNNING: frozenset({JobState.QUEUED}) | JOB_REOPENABLE,
    JobState.AGGREGATING: frozenset({JobState.QUEUED, JobState.RUNNING}),
    JobState.SUCCEEDED: frozenset({JobState.AGGREGATING}),
    JobState.PARTIAL: frozenset({JobState.AGGREGATING}),
    JobState.FAILED: frozenset(
        {JobState.PLANNING, JobState.QUEUED, JobState.RUNNING, JobState.AGGREGATING}
    ),
    JobState.CANCELLING: frozenset({JobState.PLANNING, JobState.QUEUED, JobState.RUNNING}),
    JobState.CANCELLED: frozenset(
        {JobState.CANCELLING, JobState.PLANNING, JobState.QUEUED, JobState.RUNNING}
    ),
}


def sources_of(target: JobState) -> frozenset[JobState]:
    """The states from which a job may move to ``target``."""
    return JOB_TRANSITIONS[target]
