"""Job documents, job/image/region states and their transitions (pure: no I/O)."""

from tilerunner.jobs.messages import RegionMessage, queue_name
from tilerunner.jobs.spec import (
    CallbackSpec,
    JobSpec,
    MergeSpec,
    OutputSpec,
    SourceSpec,
    StageSpec,
    TilingSpec,
    parse_job,
)
from tilerunner.jobs.states import (
    JOB_REOPENABLE,
    JOB_TERMINAL,
    JOB_TRANSITIONS,
    ImageState,
    JobState,
    RegionState,
)

__all__ = [
    "JOB_REOPENABLE",
    "JOB_TERMINAL",
    "JOB_TRANSITIONS",
    "CallbackSpec",
    "ImageState",
    "JobSpec",
    "JobState",
    "MergeSpec",
    "OutputSpec",
    "RegionMessage",
    "RegionState",
    "SourceSpec",
    "StageSpec",
    "TilingSpec",
    "parse_job",
    "queue_name",
]
