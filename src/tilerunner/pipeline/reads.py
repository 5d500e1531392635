"""How a reader thread turns a region into tiles: block-aligned strips, cut in memory.

A region's tiles overlap, and object storage answers each request after tens of milliseconds,
so reading tile by tile fetches shared blocks again and waits once per tile. A reader thread
therefore reads a region as the few strips of :func:`tilerunner.tiling.strips.plan_strips`
(each fetch one large window that GDAL turns into parallel range requests, see
:mod:`tilerunner.imagery.reader`), carries the rows the next strip shares, and cuts every tile
from its strip: the same pixels a per-tile read returns, including zero padding at the image
edges, since nodata, masks and scaling are applied per pixel.

Failures stay as small as before. A strip whose read fails transiently is tried again like a
tile (``retries`` times, doubling back-off); a strip that still fails is given up, and each of
its tiles is read on its own, with its own tries, so a tile whose read fails fails alone and
carries its own error. Memory per reader thread is one strip being assembled plus the rows
carried from the previous one: about twice the strip budget at most.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tilerunner.errors import RetryableError, TilerunnerError
from tilerunner.imagery import RasterReader
from tilerunner.pipeline.work import PixelReader, RegionState, TileItem
from tilerunner.tiling.strips import Strip
from tilerunner.tiling.window import Window

__all__ = ["StripBuffer", "TileReads"]

log = logging.getLogger(__name__)


Pixels = NDArray[np.uint8] | NDArray[np.float32]


class StripBuffer:
    """The pixels of the strip in hand, ``[rows, cols, channels]``, and its window.

    ``uint8``, or ``float32`` for models that take the source's own values (whose reads put
    ``NaN`` where ``uint8`` reads put 0, past the image edge too).
    """

    def __init__(self) -> None:
        self.window: Window | None = None
        self._pixels: NDArray[Any] | None = None

    def load(self, strip: Strip, read: Callable[[Window], Pixels]) -> None:
        """Hold ``strip``: carry the rows already held, ``read`` the rest.

        When the rows to carry are not held (the previous strip failed), the whole strip is read.
        """
        window = strip.window
        fetch = strip.fetch
        carry_end = window.row_end if fetch is None else fetch.row_off
        held, pixels = self.window, self._pixels
        self.window = self._pixels = None
        if carry_end > window.row_off and not _holds(held, window, carry_end):
            fetch, carry_end = window, window.row_off
        if carry_end == window.row_off:  # nothing carried: the read is the strip
            assert fetch is not None
            self._pixels = read(fetch)
            self.window = window
            return
        assert held is not None and pixels is not None
        first = window.row_off - held.row_off
        carried = pixels[first : first + carry_end - window.row_off].copy()
        del pixels
        if fetch is None:
            self._pixels = carried
        else:
            self._pixels = np.concatenate([carried, read(fetch)], axis=0)
        self.window = window

    def cut(self, window: Window, channels: int) -> Pixels:
        """The pixels of ``window``; outside the strip (the image) 0, or NaN for ``float32``."""
        if self.window is None or self._pixels is None:
            raise ValueError("no strip is held")
        inside = window.intersection(self.window)
        if inside == window:  # the usual case: one copy, no fill
            return self._pixels[
                window.row_off - self.window.row_off : window.row_end - self.window.row_off,
                window.col_off - self.window.col_off : window.col_end - self.window.col_off,
            ].copy()
        dtype = self._pixels.dtype
        fill = np.nan if dtype.kind == "f" else 0
        out: NDArray[Any] = np.full((window.height, window.width, channels), fill, dtype=dtype)
        if inside is not None:
            out[
                inside.row_off - window.row_off : inside.row_end - window.row_off,
                inside.col_off - window.col_off : inside.col_end - window.col_off,
            ] = self._pixels[
                inside.row_off - self.window.row_off : inside.row_end - self.window.row_off,
                inside.col_off - self.window.col_off : inside.col_end - self.window.col_off,
            ]
        return out

    def clear(self) -> None:
        self.window = self._pixels = None


def _holds(held: Window | None, window: Window, carry_end: int) -> bool:
    return (
        held is not None
        and held.col_off == window.col_off
        and held.width == window.width
        and held.row_off <= window.row_off
        and held.row_end >= carry_end
    )


class TileReads:
    """Reads tiles for the pipeline's reader threads, with tries again of transient failures.

    ``strip_bytes`` is the budget of one strip; ``0`` reads every tile on its own (the design
    before strips, kept for comparison). ``native`` reads the source's own values
    (:meth:`~tilerunner.imagery.RasterReader.read_native`) instead of ``uint8``. ``on_retry``
    is told of every try again (the pipeline counts them).
    """

    def __init__(
        self,
        *,
        strip_bytes: int,
        retries: int,
        backoff: float,
        on_retry: Callable[[], None],
        native: bool = False,
    ) -> None:
        self.strip_bytes = strip_bytes
        self.native = native
        self.retries = retries
        self.backoff = backoff
        self._on_retry = on_retry

    def tile(self, item: TileItem) -> TileItem:
        """Read ``item``'s pixels, or record why they cannot be read."""
        window = item.tile.window
        try:
            item.pixels = self._tried(self._read_of(item.state.work.reader), window)
        except TilerunnerError as error:
            item.error = error
        except Exception as error:  # boundary: a reader bug fails the tile, not the worker
            log.exception("reading %s failed", window)
            item.error = TilerunnerError(f"reading {window} failed: {error!r}")
        return item

    def region(self, state: RegionState) -> Iterator[TileItem]:
        """Every tile of ``state``'s region, strip by strip, each with pixels or an error
        (tile by tile when its reader is not a raster: map tiles share no blocks)."""
        tiles = state.work.tiles
        reader = state.work.reader
        if not isinstance(reader, RasterReader):
            yield from (self.tile(TileItem(state, tile)) for tile in tiles)
            return
        strips = reader.strips([t.window for t in tiles], self.strip_bytes, native=self.native)
        buffer = StripBuffer()
        in_strips: set[int] = set()
        for strip in strips:
            in_strips.update(strip.tiles)
            if not self._load(buffer, strip, reader):
                for index in strip.tiles:  # each tile on its own: a bad one fails alone
                    yield self.tile(TileItem(state, tiles[index]))
                continue
            for index in strip.tiles:
                pixels = buffer.cut(tiles[index].window, reader.channels)
                yield TileItem(state, tiles[index], pixels=pixels)
        buffer.clear()
        for index, tile in enumerate(tiles):
            if index not in in_strips:  # wholly outside the image: zeros, no I/O
                yield self.tile(TileItem(state, tile))

    def _load(self, buffer: StripBuffer, strip: Strip, reader: RasterReader) -> bool:
        try:
            read = self._read_of(reader)
            buffer.load(strip, lambda window: self._tried(read, window))
        except Exception as error:  # boundary: the tiles are read one by one instead
            log.info("reading strip %s failed (%s); reading its tiles one by one", strip, error)
            buffer.clear()
            return False
        return True

    def _read_of(self, reader: PixelReader) -> Callable[[Window], Pixels]:
        return reader.read_native if self.native else reader.read

    def _tried(self, read: Callable[[Window], Pixels], window: Window) -> Pixels:
        """``read(window)``; transient failures are tried again with a doubling back-off."""
        for attempt in range(self.retries + 1):
            try:
                return read(window)
            except RetryableError as error:
                if attempt >= self.retries:
                    raise
                log.info("reading %s failed (%s); trying again", window, error)
                self._on_retry()
                time.sleep(self.backoff * 2**attempt)
        raise AssertionError("unreachable")  # the loop returns or raises
