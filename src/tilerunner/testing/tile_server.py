"""A loopback XYZ tile server with missing, stalled and garbage tiles, latency and counters.

Tile jobs fetch thousands of small images from a tile service; their tests and benchmarks need
a real HTTP server that answers like one (PNG bodies, ``image/png``, 404 for a tile it does not
have), can misbehave on chosen tiles, adds a settable latency per request and counts what it
was asked for::

    tiles = cut_tiles("scene.tif", zoom=18)          # {Tile: PNG bytes}, from a raster
    with TileServer(tiles, latency_ms=50) as server:
        server.url_template                          # http://127.0.0.1:PORT/{z}/{x}/{y}.png
        server.stall.add(Tile(3, 4, 18))             # never answers (until the server closes)
        server.garbage.add(Tile(5, 4, 18))           # 200 image/png with bytes that are not one
        server.requests[Tile(3, 4, 18)]              # how often a tile was asked for

``scheme="tms"`` serves the same tiles with rows counted from the south (``{-y}`` templates),
so a client that mixes the two up gets other tiles or 404s. The server is a
:class:`~http.server.ThreadingHTTPServer` (one thread per connection, so requests overlap); a
stalled request holds its thread until :meth:`TileServer.close`, which releases it.
"""

from __future__ import annotations

import io
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal

import numpy as np

from tilerunner.xyz.tiles import TILE_PX, Tile

__all__ = ["TileServer", "cut_tiles", "png_bytes"]


def png_bytes(pixels: np.ndarray[Any, Any]) -> bytes:
    """``uint8 [H, W, 3]`` pixels as PNG bytes."""
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8)).save(out, format="PNG")
    return out.getvalue()


def cut_tiles(path: str | Path, zoom: int) -> dict[Tile, bytes]:
    """Every tile of ``zoom`` that meets the raster at ``path`` (its first three bands), as
    PNG bytes; areas outside the raster are black. Any CRS: each tile is warped into place."""
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.transform import from_origin
    from rasterio.warp import reproject, transform_bounds

    from tilerunner.xyz.cover import cover_bbox
    from tilerunner.xyz.grid import HALF_WORLD

    size = 2 * HALF_WORLD / (1 << zoom)
    tiles: dict[Tile, bytes] = {}
    with rasterio.open(path) as src:
        west, south, east, north = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
        for tile in cover_bbox((west, south, east, north), zoom):
            out = np.zeros((3, TILE_PX, TILE_PX), dtype=np.uint8)
            reproject(
                source=rasterio.band(src, [1, 2, 3]), destination=out,
                dst_transform=from_origin(-HALF_WORLD + tile.x * size,
                                          HALF_WORLD - tile.y * size,
                                          size / TILE_PX, size / TILE_PX),
                dst_crs="EPSG:3857", resampling=Resampling.nearest,
            )  # fmt: skip
            tiles[tile] = png_bytes(np.moveaxis(out, 0, -1))
    return tiles


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        del format, args

    def do_GET(self) -> None:
        owner = self.server.owner
        tile = owner.tile_of(self.path)
        owner.begin(tile)
        try:
            if owner.latency_ms:
                time.sleep(owner.latency_ms / 1000)
            if tile is not None and tile in owner.stall:
                owner.closing.wait()
                return
            body = None if tile is None else owner.tiles.get(tile)
            if tile is not None and tile in owner.garbage:
                body = b"\x89PNG but not really a tile" * 8
            if body is None:
                self._send(404, b"no such tile", "text/plain")
            else:
                self._send(200, body, "image/png")
        finally:
            owner.end()

    def _send(self, status: int, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: TileServer


class TileServer:
    """Serves ``tiles`` over HTTP on loopback at ``/{z}/{x}/{y}.png``."""

    def __init__(
        self,
        tiles: Mapping[Tile, bytes],
        *,
        scheme: Literal["xyz", "tms"] = "xyz",
        latency_ms: float = 0.0,
        host: str = "127.0.0.1",
    ) -> None:
        self.tiles = dict(tiles)
        self.scheme = scheme
        self.latency_ms = latency_ms
        self.stall: set[Tile] = set()
        self.garbage: set[Tile] = set()
        self.requests: Counter[Tile] = Counter()
        self.max_in_flight = 0
        self.closing = threading.Event()
        self._in_flight = 0
        self._lock = threading.Lock()
        self._server = _Server((host, 0), _Handler)
        self._server.owner = self
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url_template(self) -> str:
        """The template a client uses: ``{y}`` for XYZ, ``{-y}`` for TMS."""
        host, port = self._server.server_address[:2]
        y = "{-y}" if self.scheme == "tms" else "{y}"
        return f"http://{host!s}:{port}/{{z}}/{{x}}/{y}.png"

    def tile_of(self, path: str) -> Tile | None:
        """The (XYZ) tile a request path names, or None."""
        parts = path.split("?")[0].strip("/").removesuffix(".png").split("/")
        try:
            z, x, y = (int(p) for p in parts)
        except ValueError:
            return None
        if self.scheme == "tms":
            y = (1 << z) - 1 - y
        return Tile(x, y, z)

    def begin(self, tile: Tile | None) -> None:
        with self._lock:
            if tile is not None:
                self.requests[tile] += 1
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)

    def end(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def stalled_waiting(self) -> int:
        """Requests of stalled tiles received so far."""
        with self._lock:
            return sum(self.requests[t] for t in self.stall)

    def __iter__(self) -> Iterator[Tile]:
        return iter(self.tiles)

    def close(self) -> None:
        self.closing.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> TileServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
