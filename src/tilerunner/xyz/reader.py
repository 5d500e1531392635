"""The pixels of a tile job's windows, assembled from fetched tiles.

A work item's reader: it starts fetching every tile of its item (and, with context, their
neighbours) at once, and :meth:`TileBatchReader.read` assembles any window of the zoom level's
virtual raster from the tiles it overlaps. The tile a window is centred on must be there (its
failure is the tile's failure); a neighbour that is missing (404, off the north or south edge of
the world) reads as zeros, so one bad tile never fails its neighbours. Columns wrap around the
antimeridian, as the map does.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future

import numpy as np
from numpy.typing import NDArray

from tilerunner.errors import SourceError
from tilerunner.tiling import Window
from tilerunner.work.items import TileBatchItem
from tilerunner.xyz.fetch import FetchOptions, TileFetcher, decode_tile
from tilerunner.xyz.tiles import TILE_PX, Tile

__all__ = ["TileBatchReader", "TileReaders"]


class TileBatchReader:
    """Reads windows of zoom ``zoom`` for one work item, fetching its tiles ahead."""

    def __init__(
        self, fetcher: TileFetcher, zoom: int, tiles: tuple[tuple[int, int], ...], context: int
    ) -> None:
        self.fetcher = fetcher
        self.zoom = zoom
        self.context = context
        self._futures: dict[tuple[int, int], Future[bytes]] = {}
        self._lock = threading.Lock()
        for x, y in tiles:
            self._future(x, y)
        if context:
            for x, y in tiles:
                for dx in (-1, 0, 1):
                    for dy in (-1, 0, 1):
                        self._future(x + dx, y + dy)

    def _future(self, x: int, y: int) -> Future[bytes] | None:
        n = 1 << self.zoom
        if not 0 <= y < n:
            return None
        key = (x % n, y)
        with self._lock:
            future = self._futures.get(key)
            if future is None:
                future = self._futures[key] = self.fetcher.prefetch(Tile(key[0], y, self.zoom))
        return future

    def _tile(self, x: int, y: int) -> NDArray[np.uint8]:
        future = self._future(x, y)
        if future is None:
            raise SourceError(f"tile {x}-{y}-{self.zoom} is outside the world")
        data = future.result()  # TileFetchError: the tile failed
        tile = Tile(x % (1 << self.zoom), y, self.zoom)
        pixels = decode_tile(data, f"tile {tile}")
        self.fetcher.keep(tile, data)
        return pixels

    def read(self, window: Window) -> NDArray[np.uint8]:
        """Pixels of ``window`` (virtual-raster pixels) as ``uint8 [height, width, 3]``."""
        centre_x = (window.col_off + self.context) // TILE_PX
        centre_y = (window.row_off + self.context) // TILE_PX
        if window.width == TILE_PX and window.height == TILE_PX and not self.context:
            return self._tile(centre_x, centre_y)
        out = np.zeros((window.height, window.width, 3), dtype=np.uint8)
        for ty in range(window.row_off // TILE_PX, (window.row_end - 1) // TILE_PX + 1):
            for tx in range(window.col_off // TILE_PX, (window.col_end - 1) // TILE_PX + 1):
                try:
                    pixels = self._tile(tx, ty)
                except SourceError:
                    if (tx, ty) == (centre_x, centre_y):
                        raise
                    continue  # a missing neighbour is blank context
                part = Window(tx * TILE_PX, ty * TILE_PX, TILE_PX, TILE_PX).intersection(window)
                if part is None:
                    continue
                out[
                    part.row_off - window.row_off : part.row_end - window.row_off,
                    part.col_off - window.col_off : part.col_end - window.col_off,
                ] = pixels[
                    part.row_off - ty * TILE_PX : part.row_end - ty * TILE_PX,
                    part.col_off - tx * TILE_PX : part.col_end - tx * TILE_PX,
                ]
        return out

    def read_native(self, window: Window) -> NDArray[np.float32]:
        """The same pixels as float32 (a map tile has no other values than its 8-bit ones)."""
        return self.read(window).astype(np.float32)


class TileReaders:
    """The worker's tile fetchers, one per URL template (and subdomains), closed together."""

    def __init__(self, options: FetchOptions) -> None:
        self.options = options
        self._fetchers: dict[tuple[str, str], TileFetcher] = {}
        self._lock = threading.Lock()

    def reader(self, item: TileBatchItem) -> TileBatchReader:
        """A reader for ``item`` that starts fetching its tiles now."""
        key = (item.url, item.subdomains)
        with self._lock:
            fetcher = self._fetchers.get(key)
            if fetcher is None:
                fetcher = self._fetchers[key] = TileFetcher(item.url, item.subdomains, self.options)
        return TileBatchReader(fetcher, item.zoom, item.xy, item.context)

    def close(self) -> None:
        with self._lock:
            fetchers, self._fetchers = list(self._fetchers.values()), {}
        for fetcher in fetchers:
            fetcher.close()
