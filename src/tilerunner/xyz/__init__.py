"""XYZ map tiles: tile lists, covers, the tile service's URLs, fetching and thresholded results.

A zoom level of a Web Mercator tile service is treated as one virtual raster in EPSG:3857 of
``2**z * 256`` pixels a side with a known affine transform: tile ``(x, y)`` is the window
``(x*256, y*256, 256, 256)``. Everything downstream of planning (ownership, merging across
neighbouring tiles, georeferencing by one affine, outputs) is then the raster path unchanged;
what is particular to tiles lives here: reading and covering tile lists
(:mod:`~tilerunner.xyz.tiles`, :mod:`~tilerunner.xyz.cover`), filling URL templates
(:mod:`~tilerunner.xyz.urls`) and fetching tiles (:mod:`~tilerunner.xyz.fetch`).
"""

from tilerunner.xyz.tiles import MAX_ZOOM, TILE_PX, Tile, parse_tile, read_tiles

__all__ = ["MAX_ZOOM", "TILE_PX", "Tile", "parse_tile", "read_tiles"]
