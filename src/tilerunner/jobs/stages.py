"""Rules that tie the stages of a pipeline together, checked when a job document is parsed.

A raster job runs one stage. A photo job may chain stages: each later stage runs on the crops
of an earlier detect stage's detections (``crops_of``), so its input must exist before it and
must be detections; the first stage runs on whole photos.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tilerunner.jobs.spec import StageSpec

__all__ = ["check_stages", "consumers"]


def check_stages(pipeline: Sequence[StageSpec], *, photos: bool) -> None:
    """ValueError saying what to change when the stages do not form a valid chain."""
    if len(pipeline) > 1 and not photos:
        raise ValueError(
            "pipelines with more than one stage run on photo collections; add "
            '"photos": {} to run on whole photos, or submit one job per stage'
        )
    first = pipeline[0] if pipeline else None
    if first is not None and first.crops_of is not None:
        raise ValueError("pipeline[0] runs on whole photos: remove its crops_of")
    for index, stage in enumerate(pipeline[1:], start=1):
        if stage.crops_of is None:
            raise ValueError(
                f"pipeline[{index}] needs crops_of: the index of the earlier detect stage "
                "whose detections it consumes, e.g. 0"
            )
        if stage.crops_of >= index:
            raise ValueError(
                f"pipeline[{index}].crops_of is {stage.crops_of}; it must name an earlier "
                f"stage (0..{index - 1})"
            )
        if pipeline[stage.crops_of].task != "detect":
            raise ValueError(
                f"pipeline[{index}] consumes stage {stage.crops_of}, a "
                f"{pipeline[stage.crops_of].task} stage; crops come from a detect stage"
            )
        if stage.task == "segment":
            raise ValueError(f"pipeline[{index}]: a later stage detects or classifies crops")


def consumers(pipeline: Sequence[StageSpec], stage: int) -> list[int]:
    """The indexes of the stages that run on the detections of ``stage``."""
    return [i for i, s in enumerate(pipeline) if s.crops_of == stage]
