"""What flows through the in-worker pipeline: regions in, per-region results out.

A tile that cannot be read, or that the model rejects, fails alone: its region's result holds
the owned features of every other tile plus a :class:`~tilerunner.jobs.features.TileFailure`
per failed tile.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from tilerunner.errors import TilerunnerError
from tilerunner.jobs.features import FeatureRows, TileFailure
from tilerunner.merging.segment import SegmentCanvas
from tilerunner.tiling import TileRef, Window

__all__ = ["PixelReader", "RegionResult", "RegionState", "RegionWork", "TileItem"]


class PixelReader(Protocol):
    """Reads a window of an image (a raster, or a zoom level of a tile service)."""

    def read(self, window: Window) -> NDArray[np.uint8]: ...

    def read_native(self, window: Window) -> NDArray[np.float32]: ...


@dataclass(frozen=True, slots=True)
class RegionWork:
    """One leased region: where to read, which tiles, and how to keep what each tile owns."""

    key: Hashable
    reader: PixelReader
    tiles: tuple[TileRef, ...]
    image_width: int
    image_height: int
    min_score: float = 0.0
    canvas: SegmentCanvas | None = None
    """Set for segmentation: tiles fill the region's core instead of yielding features."""


@dataclass(frozen=True, slots=True)
class RegionResult:
    """The owned features of a region's good tiles and the failures of the others."""

    key: Hashable
    rows: FeatureRows
    n_tiles: int
    tile_failures: tuple[TileFailure, ...] = ()
    canvas: SegmentCanvas | None = None

    @property
    def all_failed(self) -> bool:
        """Every tile failed (the whole worker may be at fault, not the tiles)."""
        return self.n_tiles > 0 and len(self.tile_failures) >= self.n_tiles


@dataclass(slots=True)
class RegionState:
    """Progress of one region inside the pipeline (touched by the post-processing thread)."""

    work: RegionWork
    parts: list[FeatureRows] = field(default_factory=list)
    failures: list[TileFailure] = field(default_factory=list)
    seen: int = 0


@dataclass(slots=True)
class TileItem:
    """One tile on its way through the pipeline (pixels set by a reader, or an error)."""

    state: RegionState
    tile: TileRef
    pixels: NDArray[np.uint8] | NDArray[np.float32] | None = None
    error: TilerunnerError | None = None
