"""Tile ids and tile lists: ``x-y-z`` lines, read as a stream with the line number of any error.

A tile list can hold a million lines, so it is never read into memory: :func:`read_tiles`
yields one :class:`Tile` at a time. A malformed line raises :class:`InvalidRequestError` naming
the file and the line, and :func:`check_tile_file` reads the whole file once up front, so a
typo on line 900,000 is reported before any work starts.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from tilerunner.errors import InvalidRequestError

__all__ = ["MAX_ZOOM", "TILE_PX", "Tile", "check_tile_file", "parse_tile", "read_tiles"]

TILE_PX = 256
"""Edge of a map tile in pixels."""
MAX_ZOOM = 22
"""Deepest zoom accepted: its virtual raster (2**22 * 256 px a side) still fits 32-bit ints."""
_TILE_ID = re.compile(r"([0-9]{1,7})-([0-9]{1,7})-([0-9]{1,2})")


class Tile(NamedTuple):
    """One XYZ tile (``y`` counted from the north, as in OpenStreetMap's scheme)."""

    x: int
    y: int
    z: int

    def __str__(self) -> str:
        return f"{self.x}-{self.y}-{self.z}"


def parse_tile(text: str, where: str = "tile") -> Tile:
    """``'x-y-z'`` as a :class:`Tile`; InvalidRequestError naming ``where`` otherwise."""
    found = _TILE_ID.fullmatch(text.strip())
    if found is None:
        raise InvalidRequestError(
            f"{where}: {text.strip()!r} is not a tile id; write x-y-z, e.g. 65535-43567-17"
        )
    x, y, z = int(found[1]), int(found[2]), int(found[3])
    if not 0 <= z <= MAX_ZOOM:
        raise InvalidRequestError(f"{where}: zoom {z} is outside 0..{MAX_ZOOM}")
    if not (0 <= x < 2**z and 0 <= y < 2**z):
        raise InvalidRequestError(
            f"{where}: tile {text.strip()} is outside zoom {z} (x and y are 0..{2**z - 1})"
        )
    return Tile(x, y, z)


def read_tiles(path: str | Path) -> Iterator[Tile]:
    """The tiles of a ``tiles.txt`` (one ``x-y-z`` a line; blank lines and ``#`` comments are
    skipped), streamed; an error names the file and line number."""
    try:
        with Path(path).open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                found = _TILE_ID.fullmatch(line.rstrip("\n"))
                if found is not None:  # the common case, checked inline for speed
                    x, y, z = int(found[1]), int(found[2]), int(found[3])
                    if z <= MAX_ZOOM and x < 1 << z and y < 1 << z:
                        yield Tile(x, y, z)
                        continue
                text = line.strip()
                if text and not text.startswith("#"):
                    yield parse_tile(text, f"{path} line {number}")
    except OSError as error:
        raise InvalidRequestError(
            f"cannot read tile list {str(path)!r}: {error.strerror}; check the path"
        ) from None


def check_tile_file(path: str | Path) -> int:
    """Read the whole tile list once (streamed); returns its tile count, or raises the first
    malformed line's error. An empty list is an error too."""
    count = sum(1 for _ in read_tiles(path))
    if not count:
        raise InvalidRequestError(f"tile list {str(path)!r} holds no tiles; one x-y-z a line")
    return count
