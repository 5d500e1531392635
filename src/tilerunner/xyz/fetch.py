"""Fetching XYZ tiles over HTTP: bounded concurrency per host, timeouts, retries, checks, cache.

A worker's pipeline reads one tile per reader thread, which would fetch a handful of tiles at a
time; a tile service answers in tens of milliseconds, so throughput would be set by latency, not
by the model. :class:`TileFetcher` therefore fetches ahead: a work item's tiles are all
requested when the item starts (:meth:`TileFetcher.prefetch`) on a thread pool, at most
``per_host`` at a time per host (httpx's pool limit alone would queue requests but not bound a
slow host's share), and a read waits only for its own tile.

Each request has a timeout; a timeout, a connection error or a 429/5xx is tried again
``retries`` times with a doubling back-off. A 404 (or any other 4xx), a body that is not an
image (by its content type) or bytes that do not decode make the tile fail alone with a
:class:`~tilerunner.errors.SourceError` that names the tile, its URL (token blanked) and why;
a tile still failing after its retries fails the same way, so the pipeline does not retry it
once more. Headers and the token come from the worker's settings, never from the job.

The optional on-disk cache keeps the raw bytes of each tile that decoded under a hash of its URL
(token excluded), written atomically; a cached tile is never fetched again.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from tilerunner.errors import SourceError
from tilerunner.xyz.tiles import TILE_PX, Tile
from tilerunner.xyz.urls import fill_template, host_of, redact

__all__ = ["FetchOptions", "TileFetchError", "TileFetcher", "decode_tile"]

log = logging.getLogger(__name__)

_RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class FetchOptions:
    """How a worker fetches tiles (from its settings: ``TILERUNNER_XYZ_*``)."""

    per_host: int = 16
    timeout_seconds: float = 10.0
    retries: int = 2
    backoff_seconds: float = 0.2
    headers: dict[str, str] = field(default_factory=dict)
    token: str | None = field(default=None, repr=False)
    cache_dir: Path | None = None


class TileFetchError(SourceError):
    """A tile that could not be fetched or decoded (it fails alone)."""


def decode_tile(data: bytes, where: str) -> NDArray[np.uint8]:
    """PNG/JPEG/WebP bytes as ``uint8 [256, 256, 3]`` (palette, grey and alpha made RGB)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError):
        raise TileFetchError(
            f"{where}: the {len(data)} bytes received are not an image that decodes "
            f"(they start {data[:12]!r})"
        ) from None
    if rgb.shape[:2] != (TILE_PX, TILE_PX):
        raise TileFetchError(
            f"{where}: tile is {rgb.shape[1]} x {rgb.shape[0]} px, not {TILE_PX} x {TILE_PX}"
        )
    return rgb


class TileFetcher:
    """Fetches the tiles of one URL template; shared by every item of it a worker runs."""

    def __init__(self, template: str, subdomains: str, options: FetchOptions) -> None:
        import httpx

        self.template = template
        self.subdomains = subdomains
        self.options = options
        self._client = httpx.Client(
            timeout=options.timeout_seconds,
            headers=options.headers,
            follow_redirects=True,
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=64),
        )
        hosts = {host_of(fill_template(template, Tile(0, 0, 0), s, "t")) for s in subdomains}
        self._pool = ThreadPoolExecutor(
            max_workers=options.per_host * len(hosts), thread_name_prefix="tile-fetch"
        )
        self._slots: dict[str, threading.BoundedSemaphore] = {}
        self._lock = threading.Lock()
        self.fetched = 0
        self.cached = 0

    def prefetch(self, tile: Tile) -> Future[bytes]:
        """Start fetching ``tile``; the future holds its raw bytes or a TileFetchError."""
        return self._pool.submit(self.fetch, tile)

    def fetch(self, tile: Tile) -> bytes:
        """The raw bytes of ``tile`` (from the cache if there), checked to be an image."""
        url = fill_template(self.template, tile, self.subdomains, self.options.token)
        shown = redact(url, self.options.token)
        cached = self._cache_path(tile)
        if cached is not None and cached.is_file():
            with self._lock:
                self.cached += 1
            return cached.read_bytes()
        data = self._get(url, f"tile {tile} ({shown})")
        with self._lock:
            self.fetched += 1
        return data

    def keep(self, tile: Tile, data: bytes) -> None:
        """Cache the bytes of a tile that decoded (a no-op without a cache, or if cached)."""
        path = self._cache_path(tile)
        if path is not None and not path.is_file():
            self._cache_write(path, data)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._client.close()

    # ------------------------------------------------------------ internals
    def _slot(self, url: str) -> threading.BoundedSemaphore:
        host = host_of(url)
        with self._lock:
            slot = self._slots.get(host)
            if slot is None:
                slot = self._slots[host] = threading.BoundedSemaphore(self.options.per_host)
        return slot

    def _get(self, url: str, where: str) -> bytes:
        import httpx

        problem = ""
        for attempt in range(self.options.retries + 1):
            if attempt:
                time.sleep(self.options.backoff_seconds * 2 ** (attempt - 1))
            try:
                with self._slot(url):
                    response = self._client.get(url)
            except httpx.TimeoutException:
                problem = f"timed out after {self.options.timeout_seconds:g} s"
                continue
            except httpx.HTTPError as error:
                problem = f"request failed ({type(error).__name__})"
                continue
            if response.status_code in _RETRY_STATUS:
                problem = f"HTTP {response.status_code}"
                continue
            if response.status_code != 200:
                raise TileFetchError(f"{where}: HTTP {response.status_code}")
            kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
            if kind and not kind.startswith("image/") and kind != "application/octet-stream":
                raise TileFetchError(f"{where}: content type {kind!r} is not an image")
            return response.content
        tries = self.options.retries + 1
        raise TileFetchError(f"{where}: {problem} ({tries} tr{'y' if tries == 1 else 'ies'})")

    def _cache_path(self, tile: Tile) -> Path | None:
        if self.options.cache_dir is None:
            return None
        url = fill_template(self.template, tile, self.subdomains, "")
        digest = hashlib.sha256(url.encode()).hexdigest()
        return self.options.cache_dir / digest[:2] / digest

    @staticmethod
    def _cache_write(path: Path, data: bytes) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            temp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
            temp.write_bytes(data)
            os.replace(temp, path)
        except OSError as error:  # a full or read-only cache slows tiles down, never fails them
            log.warning("cannot cache a tile at %s: %s", path, error)
