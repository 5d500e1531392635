"""The work items of photo jobs: a group of whole photos, and a batch of crops for a later stage.

A photo is a member of a work item, not an item of its own, so a million photos are some
thousands of queue messages. Both kinds carry everything the worker needs (where each photo is,
how to fit it to the model, which box to crop), described by the work service from the store at
lease time; they are registered in :data:`tilerunner.work.items.ITEM_KINDS`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Crop", "CropItem", "PhotoGroupItem", "PhotoMember"]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PhotoMember(_Frozen):
    """One photo of a group: its image index in the job and where to read it."""

    image_idx: int = Field(ge=0)
    url: str


class Crop(_Frozen):
    """One detection of an earlier stage to crop: its key, its photo and its box (photo px)."""

    key: str
    image_idx: int = Field(ge=0)
    url: str
    box: tuple[float, float, float, float]


class _PhotoItem(_Frozen):
    id: str = Field(description="Deterministic id of the item (its queue message id).")
    job_id: str
    leader: int = Field(ge=0, description="Image index of the group's first photo.")
    stage: int = Field(ge=0, description="Index of the pipeline stage this item runs.")
    input_size: int | None = Field(default=None, description="Model input edge (px).")
    resize: Literal["letterbox", "resize"] = "letterbox"
    min_score: float = 0.0


class PhotoGroupItem(_PhotoItem):
    """Whole photos for the first stage of a photo job."""

    kind: Literal["photos"] = "photos"
    members: tuple[PhotoMember, ...] = Field(min_length=1, max_length=1024)


class CropItem(_PhotoItem):
    """The crops of one group's detections (of stage ``crops_of``) for a later stage."""

    kind: Literal["crops"] = "crops"
    padding: float = 0.0
    crops: tuple[Crop, ...] = Field(min_length=1, max_length=100_000)
