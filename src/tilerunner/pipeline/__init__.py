"""The in-worker streaming pipeline: read, batch, infer, keep what each tile owns."""

from tilerunner.pipeline.streaming import (
    STRIP_BYTES,
    PipelineStats,
    TilePipeline,
    default_batch_size,
)
from tilerunner.pipeline.work import RegionResult, RegionWork

__all__ = [
    "STRIP_BYTES",
    "PipelineStats",
    "RegionResult",
    "RegionWork",
    "TilePipeline",
    "default_batch_size",
]
