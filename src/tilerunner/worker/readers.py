"""Open raster readers kept while a worker serves an image's work items."""

from __future__ import annotations

import threading

from tilerunner.imagery import BandSpec, GdalEnv, RasterReader

__all__ = ["ReaderCache"]


class ReaderCache:
    """One :class:`RasterReader` per (url, bands, scale), the least recently opened closed first."""

    def __init__(self, env: GdalEnv | None = None, max_readers: int = 32) -> None:
        self._env = env
        self._max = max_readers
        self._readers: dict[tuple[str, BandSpec], RasterReader] = {}
        self._lock = threading.Lock()

    def get(self, url: str, bands: BandSpec) -> RasterReader:
        key = (url, bands)
        with self._lock:
            found = self._readers.get(key)
        if found is not None:
            return found
        reader = RasterReader(url, bands, env=self._env)  # SourceError if it cannot be opened
        with self._lock:
            if key in self._readers:  # another thread opened it meanwhile
                reader.close()
                return self._readers[key]
            evicted = self._make_room()
            self._readers[key] = reader
        if evicted is not None:
            evicted.close()
        return reader

    def adopt(self, reader: RasterReader, bands: BandSpec) -> None:
        """Serve ``reader`` (opened elsewhere, e.g. reading ahead) for its url and ``bands``;
        closed with the cache, or once ``max_readers`` newer ones are open."""
        key = (reader.url, bands)
        with self._lock:
            earlier = self._readers.pop(key, None)
            evicted = self._make_room()
            self._readers[key] = reader
        for old in (earlier, evicted):
            if old is not None and old is not reader:
                old.close()

    def _make_room(self) -> RasterReader | None:
        """Take out the least recently opened reader when the cache is full (lock held)."""
        if len(self._readers) < self._max:
            return None
        return self._readers.pop(next(iter(self._readers)))

    def close(self) -> None:
        with self._lock:
            for reader in self._readers.values():
                reader.close()
            self._readers.clear()
