"""The ``tiles`` section of a job document: which XYZ tiles to run and where to fetch them.

Pure validation (no I/O): what the worker needs to fetch a tile is the URL template; which
tiles are named inline, by a tile-list file (streamed at planning, never stored in the
document) or by a bounding box and a zoom level. Credentials never travel in the document: a
template writes ``{token}`` and every worker fills it from ``TILERUNNER_XYZ_TOKEN``; extra
request headers come from ``TILERUNNER_XYZ_HEADERS`` the same way.
"""

from __future__ import annotations

import math
import re
from typing import Literal
from urllib.parse import parse_qsl, urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tilerunner.errors import InvalidRequestError
from tilerunner.xyz.tiles import parse_tile

__all__ = ["MAX_BBOX_TILES", "SECRET_PARAMS", "TileSetSpec", "bbox_tile_count"]

MAX_BBOX_TILES = 50_000_000
"""Most tiles one ``bbox`` may cover (a tile list has no limit: it is streamed)."""

#: Query parameters that carry a credential: only ``{token}`` may stand as their value.
SECRET_PARAMS = frozenset(
    {"token", "access_token", "api_key", "apikey", "key", "secret", "signature", "sig"}
)
_FIELDS = re.compile(r"\{([^{}]*)\}")
_KNOWN = {"z", "x", "y", "-y", "s", "token"}


class TileSetSpec(BaseModel):
    """XYZ tiles to run: a URL template plus a tile list, a tile-list file or a bbox and zoom."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url_template: str = Field(
        min_length=1,
        description="e.g. https://{s}.host/{z}/{x}/{y}.png; {-y} counts rows from the south "
        "(TMS); {token} is filled from the worker's TILERUNNER_XYZ_TOKEN.",
    )
    subdomains: str = Field(default="abc", min_length=1, max_length=16)
    ids: list[str] | None = Field(default=None, description="Inline tile ids, x-y-z.")
    file: str | None = Field(default=None, description="A tile list, one x-y-z a line.")
    bbox: tuple[float, float, float, float] | None = None
    zoom: int | None = Field(default=None, ge=0, le=22)
    per_item: int = Field(default=256, ge=1, le=4096, description="Tiles per work item.")
    context: int = Field(
        default=0,
        ge=0,
        le=256,
        description="Pixels of the neighbouring tiles read around each tile (detectors).",
    )

    @field_validator("url_template")
    @classmethod
    def _template(cls, value: str) -> str:
        names = set(_FIELDS.findall(value))
        if unknown := names - _KNOWN:
            raise ValueError(
                f"unknown placeholder(s) {sorted(unknown)} in the URL template; "
                "use {z}, {x}, {y} (or {-y} for TMS), {s} and {token}"
            )
        if not {"z", "x"} <= names or not names & {"y", "-y"}:
            raise ValueError(
                "the URL template must hold {z}, {x} and {y} (or {-y}), "
                "e.g. https://host/{z}/{x}/{y}.png"
            )
        if "{y}" in value and "{-y}" in value:
            raise ValueError("the URL template holds both {y} and {-y}; keep one")
        for name, param in parse_qsl(urlsplit(value).query, keep_blank_values=True):
            if name.lower() in SECRET_PARAMS and param != "{token}":
                raise ValueError(
                    f"the URL template carries a credential in '{name}='; write "
                    f"'{name}={{token}}' and set TILERUNNER_XYZ_TOKEN where workers run"
                )
        return value

    @field_validator("ids")
    @classmethod
    def _tile_ids(cls, value: list[str] | None) -> list[str] | None:
        for index, text in enumerate(value or ()):
            try:
                parse_tile(text, f"ids[{index}]")
            except InvalidRequestError as error:
                raise ValueError(str(error)) from None
        return value

    @model_validator(mode="after")
    def _one_tile_set(self) -> TileSetSpec:
        given = [self.ids is not None, self.file is not None, self.bbox is not None]
        if sum(given) != 1:
            raise ValueError("name the tiles once: 'ids', 'file' or 'bbox' with 'zoom'")
        if (self.bbox is None) != (self.zoom is None):
            raise ValueError("'bbox' and 'zoom' go together (tiles of one zoom level)")
        if self.ids is not None and not self.ids:
            raise ValueError("'ids' is empty; list at least one x-y-z tile")
        if self.bbox is not None and self.zoom is not None:
            count = bbox_tile_count(self.bbox, self.zoom)
            if count > MAX_BBOX_TILES:
                raise ValueError(
                    f"the bbox holds about {count:,} tiles at zoom {self.zoom}, over "
                    f"{MAX_BBOX_TILES:,}; use a lower zoom, a smaller bbox or several jobs"
                )
        return self

    @property
    def scheme(self) -> Literal["xyz", "tms"]:
        """``tms`` when rows count from the south (``{-y}``), else ``xyz``."""
        return "tms" if "{-y}" in self.url_template else "xyz"


def bbox_tile_count(bbox: tuple[float, float, float, float], zoom: int) -> int:
    """About how many tiles of ``zoom`` cover ``bbox`` (W, S, E, N degrees), cheaply."""
    west, south, east, north = bbox
    n = 1 << zoom

    def col(lon: float) -> int:
        return min(n - 1, max(0, int((lon + 180.0) / 360.0 * n)))

    def row(lat: float) -> int:
        lat = max(-85.0511287798, min(85.0511287798, lat))
        y = (1.0 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2.0
        return min(n - 1, max(0, int(y * n)))

    cols = col(east) - col(west) + 1 if east >= west else n - col(west) + col(east) + 1
    return cols * max(1, row(south) - row(north) + 1)
