"""Job documents, job/image/region states and their transitions (pure: no I/O)."""

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
from tilerunner.jobs.states import JOB_TERMINAL, JOB_TRANSITIONS, ImageState, JobState, RegionState

__all__ = [
    "JOB_TERMINAL",
    "JOB_TRANSITIONS",
    "CallbackSpec",
    "ImageState",
    "JobSpec",
    "JobState",
    "MergeSpec",
    "OutputSpec",
    "RegionState",
    "SourceSpec",
    "StageSpec",
    "TilingSpec",
    "parse_job",
]
