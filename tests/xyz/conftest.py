"""Tiles cut from tests/data/cogeo.tif (Web Mercator, about 4 x 4 tiles at zoom 18)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tilerunner.testing.tile_server import cut_tiles
from tilerunner.xyz.tiles import Tile

ZOOM = 18


@pytest.fixture(scope="session")
def cogeo_tiles(data_dir: Path) -> dict[Tile, bytes]:
    tiles = cut_tiles(data_dir / "cogeo.tif", ZOOM)
    assert len(tiles) == 16
    return tiles
