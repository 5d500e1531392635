"""What flows through the in-worker pipeline: regions in, per-region results out."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from tilerunner.errors import TilerunnerError
from tilerunner.imagery import RasterReader
from tilerunner.jobs.features import FeatureRows
from tilerunner.tiling import TileRef

__all__ = ["RegionResult", "RegionState", "RegionWork", "TileItem"]


@dataclass(frozen=True, slots=True)
class RegionWork:
    """One leased region: where to read, which tiles, and how to keep what each tile owns."""

    key: Hashable
    reader: RasterReader
    tiles: tuple[TileRef, ...]
    image_width: int
    image_height: int
    min_score: float = 0.0


@dataclass(frozen=True, slots=True)
class RegionResult:
    """All owned features of a region, or the error that failed it."""

    key: Hashable
    rows: FeatureRows
    n_tiles: int
    error: TilerunnerError | None = None


@dataclass(slots=True)
class RegionState:
    """Progress of one region inside the pipeline (touched by the post-processing thread)."""

    work: RegionWork
    parts: list[FeatureRows] = field(default_factory=list)
    seen: int = 0
    error: TilerunnerError | None = None


@dataclass(slots=True)
class TileItem:
    """One tile on its way through the pipeline (pixels set by a reader, or an error)."""

    state: RegionState
    tile: TileRef
    pixels: NDArray[np.uint8] | None = None
    error: TilerunnerError | None = None
