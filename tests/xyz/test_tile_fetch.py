"""The tile fetcher against a real loopback tile server: the on-disk cache, the checks that make
a tile fail alone, and assembling a window from a tile and its neighbours."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tr_tile_models import pixels

from tilerunner.testing.tile_server import TileServer
from tilerunner.tiling import Window
from tilerunner.xyz.fetch import FetchOptions, TileFetcher, TileFetchError
from tilerunner.xyz.reader import TileBatchReader
from tilerunner.xyz.tiles import Tile


def test_the_cache_keeps_tiles_that_decoded_and_never_fetches_them_again(
    tmp_path: Path, cogeo_tiles: dict[Tile, bytes]
) -> None:
    good, bad = sorted(cogeo_tiles)[:2]
    options = FetchOptions(cache_dir=tmp_path / "cache", retries=0)
    with TileServer(cogeo_tiles) as server:
        server.garbage.add(bad)
        for _ in range(2):  # a second worker with the same cache
            fetcher = TileFetcher(server.url_template, "abc", options)
            try:
                reader = TileBatchReader(fetcher, good.z, ((good.x, good.y), (bad.x, bad.y)), 0)
                tile = reader.read(Window(good.x * 256, good.y * 256, 256, 256))
                assert np.array_equal(tile, pixels(cogeo_tiles[good]))
                with pytest.raises(TileFetchError, match="not an image that decodes"):
                    reader.read(Window(bad.x * 256, bad.y * 256, 256, 256))
            finally:
                fetcher.close()
        assert server.requests[good] == 1  # the second time it came from the cache
        assert server.requests[bad] == 2  # garbage is never cached
    assert len(list((tmp_path / "cache").rglob("*"))) == 2  # one folder, one tile


def test_a_window_with_context_is_assembled_from_the_neighbours(
    cogeo_tiles: dict[Tile, bytes],
) -> None:
    tiles = sorted(cogeo_tiles)
    centre = tiles[5]  # an inner tile of the 4 x 4 block
    missing = Tile(centre.x + 1, centre.y + 1, centre.z)  # its south-east neighbour: a 404
    served = {t: b for t, b in cogeo_tiles.items() if t != missing}
    with TileServer(served) as server:
        fetcher = TileFetcher(server.url_template, "abc", FetchOptions(retries=0))
        try:
            reader = TileBatchReader(fetcher, centre.z, ((centre.x, centre.y),), 32)
            out = reader.read(Window(centre.x * 256 - 32, centre.y * 256 - 32, 320, 320))
        finally:
            fetcher.close()
    mosaic = np.zeros((768, 768, 3), dtype=np.uint8)
    for dx in (-1, 0, 1):
        for dy in (-1, 0, 1):
            tile = Tile(centre.x + dx, centre.y + dy, centre.z)
            if tile in served:
                mosaic[(dy + 1) * 256 : (dy + 2) * 256, (dx + 1) * 256 : (dx + 2) * 256] = pixels(
                    served[tile]
                )
    assert np.array_equal(out, mosaic[224:544, 224:544])
    assert not out[288:, 288:].any()  # the missing neighbour's corner reads as zeros
