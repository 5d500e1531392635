"""Pure grid math: pixel windows, the global tile grid of an image, cores and regions.

Nothing here does I/O. See :mod:`tilerunner.tiling.grid` for the tiling formula and
:mod:`tilerunner.tiling.regions` for why regions are blocks of whole tiles.
"""

from tilerunner.tiling.grid import AxisOrigins, TileGrid, axis_origins
from tilerunner.tiling.regions import Region, RegionGrid, TileRef
from tilerunner.tiling.window import Window

__all__ = [
    "AxisOrigins",
    "Region",
    "RegionGrid",
    "TileGrid",
    "TileRef",
    "Window",
    "axis_origins",
]
