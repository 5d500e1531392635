"""What a one-worker ``run`` reads while it starts: the first strips of its image.

Before a ``run``'s worker can lease its first region, the run imports its libraries, loads
its settings, opens its state file, loads the model and plans the job: most of a second of one
thread holding Python's lock, while the other cores idle and, for a remote image, every
request's latency is still ahead. :class:`EarlyReads` opens the image in a thread of its own
as soon as the command line is checked, before the settings are loaded (their import is about
a tenth of a second, and opening a remote image is two requests' latency), and once the run
hands it the settings (:meth:`EarlyReads.use`) reads ahead
(:meth:`~tilerunner.imagery.RasterReader.read_ahead`) the strips the worker's reader threads
will ask for first: the first strip of each of the first regions in the order the planner
queues them, interleaved as the reader threads take them, within ``read_ahead_mb``. GDAL
decodes them without Python's lock, so that second now fetches and decodes imagery too.

When the worker starts, the reader is handed to it
(:meth:`~tilerunner.worker.Worker.adopt_reader`); strips nobody asks for (a region another
worker took, a read-ahead that guessed wrong) are dropped, and a read that failed is simply
read again by the worker, so the results are the same either way.

The image is opened with the S3 endpoint of the ``TILERUNNER_*`` variables as they stand
(:mod:`tilerunner.environ`); when the settings' GDAL options turn out to differ, or their
``read_ahead_mb`` is 0, the reader is closed unused.

Only the plain case is read ahead: one image named by a path or URL, a new state file, one
worker, a model that takes ``uint8`` pixels without rescaling. Anything else (a resumed run,
a folder, a tile or photo job, segmentation) starts as before.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from tilerunner.environ import tilerunner_variables

if TYPE_CHECKING:
    from tilerunner.imagery import RasterReader
    from tilerunner.models import LoadedModel
    from tilerunner.settings import Settings
    from tilerunner.tiling import Window
    from tilerunner.worker import Worker

__all__ = ["EarlyReads", "first_strips"]

log = logging.getLogger(__name__)

_GLOB = frozenset("*?[")
#: Longest wait of the run for the thread's imports (they take well under a second).
_IMPORT_WAIT = 10.0


class EarlyReads:
    """Opens ``source`` and reads ahead the first strips of its regions, in a thread."""

    def __init__(
        self,
        source: str,
        *,
        tile_size: int,
        overlap: int,
        region_size: int,
        bands: list[int] | None,
        readers: int,
    ) -> None:
        self._settings: Settings | None = None
        self._settled = threading.Event()  # the settings were given, or the run closed this
        self._bands = None if bands is None else tuple(bands)
        self._reader: RasterReader | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._imported = threading.Event()
        self._thread = threading.Thread(
            target=self._open,
            args=(source, tile_size, overlap, region_size, readers),
            name="early-reads",
            daemon=True,
        )
        self._thread.start()

    @classmethod
    def start(
        cls,
        sources: tuple[str, ...],
        state_path: Path,
        *,
        tile_size: int,
        overlap: int,
        region_size: int,
        bands: list[int] | None,
        readers: int,
    ) -> EarlyReads | None:
        """Start opening the image when the run is the plain case (see the module); else None."""
        if len(sources) != 1 or state_path.exists():
            return None
        source = sources[0]
        if "://" not in source and (_GLOB & set(source) or not Path(source).is_file()):
            return None  # a folder or a pattern: which image comes first is the planner's call
        early = cls(
            source,
            tile_size=tile_size,
            overlap=overlap,
            region_size=region_size,
            bands=bands,
            readers=readers,
        )
        # The run needs numpy and GDAL too: while the thread imports them, this one waits
        # instead of importing other modules beside it (both would hold Python's lock by turns,
        # and the first read would start later); then the thread opens and decodes without it.
        early._imported.wait(_IMPORT_WAIT)
        return early

    def use(self, settings: Settings) -> None:
        """The run's settings: read ahead what they say (nothing when ``read_ahead_mb`` is 0)."""
        self._settings = settings
        self._settled.set()

    def hand_over(self, worker: Worker, model: LoadedModel) -> bool:
        """Give the reader to ``worker`` when its reads are what ``model`` asks for; else close
        it. True when it was handed over."""
        from tilerunner.imagery import BandSpec

        self._thread.join()
        with self._lock:
            reader, self._reader = self._reader, None
        if reader is None:
            return False
        if model.task == "segment" or model.input_range is not None or model.native_input:
            # a segment region's tiles, rescaled or native pixels: not the reads it asks for
            reader.close()
            return False
        worker.adopt_reader(reader, BandSpec(bands=self._bands))
        return True

    def close(self) -> None:
        """Stop reading ahead and close the reader unless it was handed over."""
        with self._lock:
            self._closed = True
            reader, self._reader = self._reader, None
        self._settled.set()
        if reader is not None:
            reader.close()

    def _open(
        self, source: str, tile_size: int, overlap: int, region_size: int, readers: int
    ) -> None:
        try:
            from tilerunner.imagery import BandSpec, GdalEnv, RasterReader, expand_sources
        finally:
            self._imported.set()
        # the settings' GDAL options, as far as the environment says them before they load
        env = GdalEnv.for_s3(endpoint_url=tilerunner_variables().get("s3_endpoint_url") or None)
        try:
            (image,) = expand_sources([source])
            reader = RasterReader(image.url, BandSpec(bands=self._bands), env)
        except Exception as error:  # the planner reports it, with its own message
            log.debug("run: no early reads of %s: %s", source, error)
            return
        self._settled.wait()
        settings = self._settings
        if settings is None or settings.read_ahead_mb <= 0 or settings.gdal_env() != env:
            reader.close()  # the run closed this, reads nothing ahead, or reads otherwise
            return
        budget = settings.read_ahead_mb << 20
        try:
            windows = first_strips(
                reader, tile_size, overlap, region_size, readers,
                settings.read_strip_mb << 20, budget,
            )  # fmt: skip
        except Exception as error:  # bad tiling flags: the run's checks report them
            log.debug("run: no early reads of %s: %s", source, error)
            reader.close()
            return
        reader.read_ahead(windows, budget)
        with self._lock:
            if self._closed:
                reader.close()
                return
            self._reader = reader
        log.debug("run: reading ahead %d strip(s) of %s", len(windows), image.url)


def first_strips(
    reader: RasterReader,
    tile_size: int,
    overlap: int,
    region_size: int,
    readers: int,
    strip_bytes: int,
    budget_bytes: int,
) -> list[Window]:
    """The windows a worker's ``readers`` reader threads read first, as many as fill
    ``budget_bytes``: the first strip of each region, in the planner's order, as the threads
    take regions in turn (every strip of each region in turn when only one thread reads)."""
    from tilerunner.tiling import RegionGrid, TileGrid

    if strip_bytes <= 0:
        return []
    grid = TileGrid(reader.info.width, reader.info.height, tile_size, overlap)
    regions = RegionGrid.from_pixels(grid, region_size)
    windows: list[Window] = []
    used = 0
    for index in range(regions.n_regions):
        if used >= budget_bytes:
            break
        tiles = [t.window for t in regions.tiles(regions.region(index))]
        strips = reader.strips(tiles, strip_bytes)
        fetches = [s.fetch for s in strips if s.fetch is not None]
        for window in fetches if readers == 1 else fetches[:1]:
            windows.append(window)
            used += window.width * window.height * reader.channels
    return windows
