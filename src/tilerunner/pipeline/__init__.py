"""The in-worker streaming pipeline: read, batch, infer, keep what each tile owns."""

from tilerunner.pipeline.streaming import PipelineStats, TilePipeline
from tilerunner.pipeline.work import RegionResult, RegionWork

__all__ = ["PipelineStats", "RegionResult", "RegionWork", "TilePipeline"]
