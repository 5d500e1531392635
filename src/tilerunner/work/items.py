"""Work items: what a worker leases, described so that it needs nothing else to do the work.

A work item is the unit on the queue. Each kind is a pydantic model with a ``kind`` tag (it
crosses process boundaries: the broker, the HTTP pull protocol) and knows its own tiles, so the
worker loop and the pipeline never look anything up in the store. Kinds: the raster region
and the batch of XYZ tiles (:class:`TileBatchItem`); a group of photos or a batch of crops for a
later stage are further kinds registered in :data:`ITEM_KINDS`, each with the same two duties:
say which pixels to read and which tiles to cut.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tilerunner.errors import InvalidRequestError
from tilerunner.photos.items import CropItem, PhotoGroupItem
from tilerunner.tiling import RegionGrid, TileGrid, TileRef

__all__ = [
    "ITEM_KINDS",
    "AnyItem",
    "Assignment",
    "RegionItem",
    "SegmentTarget",
    "TileBatchItem",
    "WorkItem",
    "parse_item",
]


class _Item(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(description="Deterministic id of the item (its queue message id).")
    job_id: str


class SegmentTarget(BaseModel):
    """Where a segment region writes its core (see :mod:`tilerunner.outputs.cog`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    output: str = Field(description="The class-id COG the job writes; parts go beside it.")
    blend: Literal["none", "linear", "cosine"] = "none"
    probabilities: Literal["none", "uint8", "float32"] = "none"
    transform: tuple[float, ...] | None = None
    crs_wkt: str | None = None


class RegionItem(_Item):
    """A block of whole tiles of one raster image, with everything needed to read it."""

    kind: Literal["region"] = "region"
    image_idx: int = Field(ge=0)
    region_idx: int = Field(ge=0)
    url: str = Field(description="The image to read (a path or URL the worker can open).")
    width: int = Field(ge=1)
    height: int = Field(ge=1)
    tile_size: int = Field(ge=1)
    overlap: int = Field(ge=0)
    region_tiles: int = Field(ge=1, description="Tiles per region side on the global grid.")
    bands: tuple[int, ...] | None = None
    scale: tuple[float, float] | None = Field(
        default=None, description="Input range scaled to 0..255 (else the model card's range)."
    )
    min_score: float = 0.0
    only_tiles: tuple[tuple[int, int], ...] | None = Field(
        default=None,
        max_length=100_000,
        description="Redo just these tiles of the region, each named by the pixel offsets "
        "(col_off, row_off) of its read window (the window a tile failure records); "
        "null: every tile.",
    )
    segment: SegmentTarget | None = Field(
        default=None, description="Set for a segment stage: the region writes its core part."
    )

    def tiles(self) -> tuple[TileRef, ...]:
        """The tiles of this region on the image's global tile grid (``only_tiles`` if set)."""
        grid = TileGrid(self.width, self.height, self.tile_size, self.overlap)
        regions = RegionGrid(grid, self.region_tiles)
        tiles = regions.tiles(regions.region(self.region_idx))
        if self.only_tiles is None:
            return tuple(tiles)
        wanted = set(self.only_tiles)
        return tuple(t for t in tiles if (t.window.col_off, t.window.row_off) in wanted)


class TileBatchItem(_Item):
    """A batch of XYZ tiles of one zoom level, fetched from a tile service's URL template.

    The zoom level is a virtual raster (:mod:`tilerunner.xyz.grid`): the item's tiles are
    tiles of its global grid, so ownership and merging are those of regions.
    """

    kind: Literal["xyz"] = "xyz"
    image_idx: int = Field(ge=0)
    region_idx: int = Field(ge=0)
    url: str = Field(description="The URL template of the tile service.")
    subdomains: str = "abc"
    zoom: int = Field(ge=0, le=22)
    xy: tuple[tuple[int, int], ...] = Field(min_length=1, max_length=4096)
    context: int = Field(default=0, ge=0, le=256)
    min_score: float = 0.0

    @property
    def width(self) -> int:
        """Edge of the zoom level's virtual raster in pixels."""
        return (1 << self.zoom) * 256

    @property
    def height(self) -> int:
        return self.width

    def tiles(self) -> tuple[TileRef, ...]:
        """The item's tiles on the zoom level's grid, each reading ``context`` px around it."""
        from tilerunner.xyz.grid import tile_ref

        return tuple(tile_ref(x, y, self.zoom, self.context) for x, y in self.xy)


WorkItem = RegionItem | TileBatchItem | PhotoGroupItem | CropItem
"""Every kind of work item (a union of the kinds as they are added)."""

AnyItem = Annotated[WorkItem, Field(discriminator="kind")]
"""A work item in a pydantic body, told apart by its ``kind``."""

ITEM_KINDS: dict[str, type[WorkItem]] = {
    "region": RegionItem,
    "xyz": TileBatchItem,
    "photos": PhotoGroupItem,
    "crops": CropItem,
}


def parse_item(data: dict[str, Any]) -> WorkItem:
    """A work item from its JSON form, by its ``kind``."""
    kind = str(data.get("kind", ""))
    cls = ITEM_KINDS.get(kind)
    if cls is None:
        raise InvalidRequestError(
            f"unknown work item kind {kind!r}; this worker knows {sorted(ITEM_KINDS)} "
            "(upgrade the worker)"
        )
    try:
        return cls.model_validate(data)
    except ValidationError as error:
        raise InvalidRequestError(f"malformed {kind} work item: {error}") from None


@dataclass(frozen=True, slots=True)
class Assignment:
    """One leased work item: the opaque lease token, the model to run and the item itself."""

    token: str
    model: str
    attempt: int
    expires_at: float
    item: WorkItem
