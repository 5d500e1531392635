"""The work items of photo jobs: a group of whole photos, and a batch of crops for a later stage.

A photo is a member of a work item, not an item of its own, so a million photos are some
thousands of queue messages. Both kinds carry everything the worker needs (where each photo is,
how to fit it to the model, which box to crop), described by the work service from the store at
lease time; they are registered in :data:`tilerunner.work.items.ITEM_KINDS`.

A crop that fails in a later stage fails alone: it is a failure record of its item whose
message starts with ``crop <key> of <url>:`` (:func:`crop_failure`), so a retry redoes just the
failed crops (:func:`failed_crop_key` reads the key back) and the photo's record shows the error
under the detection it came from.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from tilerunner.jobs.features import TileFailure
from tilerunner.tiling.window import Window

__all__ = [
    "Crop",
    "CropItem",
    "PhotoGroupItem",
    "PhotoMember",
    "crop_failure",
    "crop_photo",
    "failed_crop_key",
]

_CROP_FAILURE = re.compile(r"crop (\S+) of ")


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


def crop_failure(key: str, url: str, window: Window, code: str, message: str) -> TileFailure:
    """The failure record of one crop: its window in the photo, the error's code and a message
    naming the detection (``key``) and the photo."""
    return TileFailure.of(window, code, f"crop {key} of {url}: {message}")


def failed_crop_key(message: str) -> str | None:
    """The detection key a crop's failure message names (None for another message)."""
    found = _CROP_FAILURE.match(message)
    return found.group(1) if found else None


def crop_photo(key: str) -> int | None:
    """The image index of the photo a detection key belongs to (None for another string).

    A first-stage detection is ``0.<image>.<n>``; a later stage prefixes its own index (at
    least 1) to the key of the crop it came from, so the photo follows the first ``0``.
    """
    parts = key.split(".")
    if "0" not in parts:
        return None
    at = parts.index("0") + 1
    return int(parts[at]) if at < len(parts) and parts[at].isdigit() else None
