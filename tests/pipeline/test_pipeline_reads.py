"""Regions read in strips: exact pixels, no block fetched twice, the budget kept, overlap in time.

Pixels are compared with a plain rasterio read of each tile window (zero-padded past the image)
and with the per-tile reader; what is fetched is counted by a real range server on loopback.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from numpy.typing import NDArray
from rasterio.windows import Window as RioWindow

from tilerunner.imagery import BandSpec, GdalEnv, RasterReader
from tilerunner.pipeline.reads import TileReads
from tilerunner.pipeline.work import RegionState, RegionWork, TileItem
from tilerunner.testing.range_server import RangeServer
from tilerunner.tiling import RegionGrid, TileGrid, Window

BLOCK = 128
pytestmark = pytest.mark.filterwarnings(  # rasterio's boundless reads still use '*' on affines
    "ignore:Use `@` matmul:PendingDeprecationWarning"
)


def _write(path: Path, width: int, height: int, *, dtype: str = "uint8", count: int = 3,
           nodata: float | None = None) -> Path:  # fmt: skip
    rng = np.random.default_rng(width * 7 + height)
    top = 255 if dtype == "uint8" else 4000
    pixels = rng.integers(0, top, size=(count, height, width)).astype(dtype)
    if nodata is not None:
        pixels[:, : height // 3, : width // 4] = nodata
    profile: dict[str, Any] = {
        "driver": "GTiff", "width": width, "height": height, "count": count, "dtype": dtype,
        "tiled": True, "blockxsize": BLOCK, "blockysize": BLOCK, "compress": "deflate",
        "crs": "EPSG:32633", "transform": rasterio.transform.from_origin(5e5, 6e6, 10, 10),
        "nodata": nodata,
    }  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(pixels)
    return path


class Recorder(RasterReader):
    """A real reader that records the window of every read."""

    def __init__(self, url: str, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        self.windows: list[Window] = []

    def read(self, window: Window) -> NDArray[np.uint8]:
        self.windows.append(window)
        return super().read(window)


def _read_regions(
    reader: RasterReader,
    grid: TileGrid,
    region_tiles: int,
    strip_bytes: int,
    only: int = -1,
    native: bool = False,
) -> dict[Window, NDArray[Any]]:
    """Every tile of every region (or of region ``only``) as the reader threads read them."""
    reads = TileReads(
        strip_bytes=strip_bytes, retries=0, backoff=0.0, on_retry=lambda: None, native=native
    )
    regions = RegionGrid(grid, region_tiles)
    got: dict[Window, NDArray[Any]] = {}
    for region in regions.regions():
        if only >= 0 and region.index != only:
            continue
        work = RegionWork(region.index, reader, tuple(regions.tiles(region)), grid.width,
                          grid.height)  # fmt: skip
        state = RegionState(work)
        items = (
            reads.region(state)
            if strip_bytes
            else (reads.tile(TileItem(state, t)) for t in work.tiles)
        )
        for item in items:
            assert item.error is None and item.pixels is not None
            assert item.tile.window not in got
            got[item.tile.window] = item.pixels
    assert only >= 0 or len(got) == grid.n_tiles
    return got


def _assert_plain(path: Path, got: dict[Window, NDArray[Any]]) -> None:
    """Each tile equals a plain rasterio read of its window, zero-padded past the image."""
    with rasterio.open(path) as src:
        for window, pixels in got.items():
            rio = RioWindow(window.col_off, window.row_off, window.width, window.height)
            data = src.read([1, 2, 3], window=rio, boundless=True, fill_value=0)
            np.testing.assert_array_equal(pixels, data.transpose(1, 2, 0), err_msg=str(window))


@pytest.mark.parametrize(
    ("width", "height", "tile", "overlap", "region_tiles", "strip_bytes"),
    [
        (700, 450, 64, 16, 3, 64 * 2**20),  # one strip per region
        (700, 450, 100, 30, 4, 1),  # one tile row per strip, rows carried between strips
        (530, 390, 256, 0, 2, 1),  # no overlap
        (300, 200, 512, 64, 1, 1),  # an image smaller than a tile: padded
    ],
)
def test_strips_give_the_pixels_of_a_plain_rasterio_read_of_each_tile(
    tmp_path: Path, width: int, height: int, tile: int, overlap: int, region_tiles: int,
    strip_bytes: int,
) -> None:  # fmt: skip
    tif = _write(tmp_path / "scene.tif", width, height)
    grid = TileGrid(width, height, tile, overlap)
    with Recorder(str(tif)) as reader:
        got = _read_regions(reader, grid, region_tiles, strip_bytes)
        budget_rows = max(strip_bytes // (reader.bytes_per_pixel * width), 1)
        windows = reader.windows
    _assert_plain(tif, got)
    # strips, not tiles: far fewer reads, and every read within the budget or one tile row
    assert len(windows) < grid.n_tiles or grid.n_tiles == 1
    assert all(w.height <= max(budget_rows, tile + BLOCK) for w in windows)


def test_nodata_bands_and_scaling_match_the_per_tile_reader(tmp_path: Path) -> None:
    tif = _write(tmp_path / "u16.tif", 610, 333, dtype="uint16", count=2, nodata=0)
    grid = TileGrid(610, 333, 96, 24)
    spec = BandSpec(bands=(2, 1, 2), scale=(100.0, 3000.0))
    with RasterReader(str(tif), spec) as reader:
        strips = _read_regions(reader, grid, 3, 1)
        tiles = _read_regions(reader, grid, 3, 0)
    assert strips.keys() == tiles.keys()
    for window, pixels in strips.items():
        np.testing.assert_array_equal(pixels, tiles[window], err_msg=str(window))
    assert any((p == 0).all(axis=2).any() for p in strips.values())  # nodata zeroed
    with RasterReader(str(tif), spec) as reader:  # the source's own values, NaN for no data
        native = _read_regions(reader, grid, 3, 1, native=True)
        native_tiles = _read_regions(reader, grid, 3, 0, native=True)
    for window, pixels in native.items():
        assert pixels.dtype == np.float32
        np.testing.assert_array_equal(pixels, native_tiles[window], err_msg=str(window))
    assert any(np.isnan(p).any() for p in native.values())


def _ranges(server: RangeServer) -> list[tuple[int, int]]:
    found = []
    for record in server.stats().records:
        if record.method == "GET" and record.range:
            for first, last in re.findall(r"(\d+)-(\d+)", record.range):
                found.append((int(first), int(last)))
    return sorted(found)


@pytest.mark.parametrize("latency_ms", [0.0, 30.0])
def test_a_region_over_http_fetches_no_block_twice(tmp_path: Path, latency_ms: float) -> None:
    tif = _write(tmp_path / "cog.tif", 900, 700)
    grid = TileGrid(900, 700, 160, 48)  # every block row is shared by two tile rows
    with rasterio.open(tif) as src:
        needed = sum(src.block_size(1, r, c) for r in range(6) for c in range(8))
    server = RangeServer(tmp_path, latency_ms=latency_ms)
    with server, RasterReader(server.url("cog.tif")) as reader:
        server.reset()  # what opening the file cost is not the region's
        got = _read_regions(reader, grid, 8, 1)  # one region; one tile row per strip
        ranges = _ranges(server)
    for (_, last), (first, _) in itertools.pairwise(ranges):
        assert first > last, f"a byte range was fetched twice: {ranges}"
    fetched = sum(last - first + 1 for first, last in ranges)
    # the region's blocks, about once each (what opening the file fetched is cached)
    assert needed * 0.95 <= fetched <= needed * 1.05
    _assert_plain(tif, got)


def test_strip_reads_keep_several_requests_in_flight(tmp_path: Path) -> None:
    _write(tmp_path / "cog.tif", 1024, 768)
    grid = TileGrid(1024, 768, 256, 32)  # regions of 2 x 2 tiles: 480 px, half the width
    with RangeServer(tmp_path, latency_ms=100) as server:
        with RasterReader(server.url("cog.tif"), env=GdalEnv.default()) as reader:
            server.reset()
            # one strip: 4 block rows, each a separate run of 4 consecutive blocks in the file
            _read_regions(reader, grid, 2, 2**30, only=0)
        stats = server.stats()
    # no wall time: the server saw requests overlap, which only concurrent fetching can cause
    assert stats.max_in_flight >= 3, stats


def test_s3_strips_match_local(tmp_path: Path, moto_server: str) -> None:
    import boto3

    tif = _write(tmp_path / "s3.tif", 640, 480)
    s3 = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    s3.create_bucket(Bucket="strips")
    s3.upload_file(str(tif), "strips", "s3.tif")
    env = GdalEnv.for_s3(endpoint_url=moto_server, region="us-east-1")
    grid = TileGrid(640, 480, 128, 32)
    with RasterReader("s3://strips/s3.tif", env=env) as reader:
        got = _read_regions(reader, grid, 3, 2**20)
    _assert_plain(tif, got)
