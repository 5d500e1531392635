"""The worker's side of photo items: every photo or crop through the shared tile pipeline.

Each member of an item (a whole photo, or one crop) goes into the model's
:class:`~tilerunner.pipeline.TilePipeline` as a one-tile piece of work whose reader decodes
the photo and fits it to the model input, so photos of any size, and crops of many items, share
batches with each other. :class:`PhotoItems` gathers the members' results back into one result
per item, maps boxes from model pixels to photo pixels, keys every detection (a later stage's
result names the detection it came from) and records the stage, task, model name and version
on every feature.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tilerunner.imagery import GdalEnv
from tilerunner.jobs.features import FeatureRows
from tilerunner.models import ZOO, LoadedModel
from tilerunner.photos.items import CropItem, PhotoGroupItem, crop_failure
from tilerunner.photos.pixels import Fit, FitMode, PhotoDecoder, crop_box, fit
from tilerunner.pipeline import RegionResult, RegionWork, TilePipeline
from tilerunner.tiling import TileRef, Window
from tilerunner.work.results import MemberOutcome, WorkResult

__all__ = ["PhotoItems", "model_version"]

_DEFAULT_INPUT = 640


def model_version(model: LoadedModel) -> str:
    """What names the model's exact weights: its own ``version``, the pinned package of a
    zoo model's weights, else its spec."""
    version = getattr(model.impl, "version", None)
    if version:
        return str(version)
    entry = ZOO.get(model.spec.removeprefix("zoo:")) if model.spec.startswith("zoo:") else None
    return entry.asset.source if entry is not None else model.spec


class _PhotoReader:
    """Reads a whole photo fitted to the model input; remembers how, for the boxes."""

    def __init__(self, decoder: PhotoDecoder, size: int, mode: FitMode) -> None:
        self.decoder, self.size, self.mode = decoder, size, mode
        self.fit: Fit | None = None
        self.window: Window | None = None

    def read(self, window: Window) -> NDArray[np.uint8]:
        photo = self.decoder.get()
        self.window = Window(0, 0, photo.width, photo.height)
        pixels, self.fit = fit(photo.pixels, self.size, self.mode)
        return pixels

    def read_native(self, window: Window) -> NDArray[np.float32]:
        """The same pixels as float32 (a photo's own values are its 8-bit ones)."""
        return self.read(window).astype(np.float32)


class _CropReader(_PhotoReader):
    """Reads one detection's crop (widened by ``padding``) fitted to the model input."""

    def __init__(
        self,
        decoder: PhotoDecoder,
        box: tuple[float, float, float, float],
        padding: float,
        size: int,
        mode: FitMode,
    ) -> None:
        super().__init__(decoder, size, mode)
        self.box, self.padding = box, padding

    def read(self, window: Window) -> NDArray[np.uint8]:
        photo = self.decoder.get()
        w = crop_box(self.box, self.padding, photo.width, photo.height)
        self.window = w
        crop = photo.pixels[w.row_off : w.row_end, w.col_off : w.col_end]
        pixels, self.fit = fit(np.ascontiguousarray(crop), self.size, self.mode)
        return pixels


@dataclass(slots=True)
class _Pending:
    item: PhotoGroupItem | CropItem
    model_name: str
    model: LoadedModel
    readers: list[_PhotoReader]
    results: dict[int, RegionResult] = field(default_factory=dict)


class PhotoItems:
    """Submits photo items' members to a pipeline and gathers their results per item."""

    def __init__(self, env: GdalEnv | None = None) -> None:
        self._env = env
        self._pending: dict[str, _Pending] = {}
        self._lock = threading.Lock()

    def submit(
        self,
        item: PhotoGroupItem | CropItem,
        model_name: str,
        model: LoadedModel,
        pipeline: TilePipeline,
    ) -> None:
        size = item.input_size or model.tile_size or _DEFAULT_INPUT
        readers: list[_PhotoReader]
        if isinstance(item, PhotoGroupItem):
            readers = [
                _PhotoReader(PhotoDecoder(m.url, self._env), size, item.resize)
                for m in item.members
            ]
        else:
            decoders: dict[int, PhotoDecoder] = {}
            readers = []
            for crop in item.crops:  # crops of one photo share one decoding
                decoder = decoders.setdefault(crop.image_idx, PhotoDecoder(crop.url, self._env))
                readers.append(_CropReader(decoder, crop.box, item.padding, size, item.resize))
        with self._lock:
            self._pending[item.id] = _Pending(item, model_name, model, readers)
        whole = Window(0, 0, size, size)
        tile = TileRef(0, 0, whole, whole)
        min_score = item.min_score if isinstance(item, PhotoGroupItem) else 0.0
        for index, reader in enumerate(readers):
            pipeline.submit(
                RegionWork((item.id, index), reader, (tile,), size, size, min_score=min_score)
            )

    def collect(self, result: RegionResult) -> tuple[str, WorkResult] | None:
        """The item's result once its last member is in (None before); a photo or crop that
        failed is a member outcome or failure record in it, not a failed item."""
        key: tuple[str, int] = result.key  # type: ignore[assignment]
        item_id, index = key
        with self._lock:
            pending = self._pending[item_id]
            pending.results[index] = result
            if len(pending.results) < len(pending.readers):
                return None
            del self._pending[item_id]
        if isinstance(pending.item, PhotoGroupItem):
            return item_id, _photos_result(pending)
        return item_id, _crops_result(pending)


def _photos_result(pending: _Pending) -> WorkResult:
    assert isinstance(pending.item, PhotoGroupItem)
    parts, members = [], []
    for index, member in enumerate(pending.item.members):
        result, reader = pending.results[index], pending.readers[index]
        if result.tile_failures or reader.fit is None or reader.window is None:
            first = result.tile_failures[0] if result.tile_failures else None
            message = first.message if first else "the photo could not be read"
            members.append(
                MemberOutcome(
                    member.image_idx,
                    error_code=first.code if first else "source_error",
                    error=f"{member.url}: {message}",
                )
            )
            continue
        photo = reader.decoder.get()
        members.append(MemberOutcome(member.image_idx, photo.width, photo.height, photo.location))
        rows = _to_source(result.rows, reader.fit, reader.window)
        keys = [f"{pending.item.stage}.{member.image_idx}.{n}" for n in range(len(rows))]
        parts.append(_stamp(rows, pending, [member.image_idx] * len(rows), keys, None))
    return WorkResult(FeatureRows.concat(parts), len(pending.readers), members=tuple(members))


def _crops_result(pending: _Pending) -> WorkResult:
    """Every crop's results; a crop that could not be read or classified fails alone, as a
    failure record naming it (:func:`crop_failure`), and the item's other crops count."""
    assert isinstance(pending.item, CropItem)
    parts, failures = [], []
    for index, crop in enumerate(pending.item.crops):
        result, reader = pending.results[index], pending.readers[index]
        if result.tile_failures or reader.fit is None or reader.window is None:
            first = result.tile_failures[0] if result.tile_failures else None
            window = reader.window or Window(int(crop.box[0]), int(crop.box[1]), 1, 1)
            failures.append(
                crop_failure(
                    crop.key,
                    crop.url,
                    window,
                    first.code if first else "source_error",
                    first.message if first else "the crop could not be read",
                )
            )
            continue
        rows = result.rows
        if pending.model.task == "classify":
            rows.boxes = np.array([crop.box] * len(rows), dtype=np.float64).reshape(-1, 4)
            keys = [f"{pending.item.stage}.{crop.key}"] * len(rows)
        else:
            rows = _to_source(rows, reader.fit, reader.window)
            keys = [f"{pending.item.stage}.{crop.key}.{n}" for n in range(len(rows))]
        parts.append(_stamp(rows, pending, [crop.image_idx] * len(rows), keys, crop.key))
    cropped = tuple(crop.key for crop in pending.item.crops)
    return WorkResult(
        FeatureRows.concat(parts), len(pending.readers), tuple(failures), crops=cropped
    )


def _to_source(rows: FeatureRows, fitted: Fit, window: Window) -> FeatureRows:
    """Boxes in model pixels -> photo pixels (``window``: the crop's place in the photo)."""
    if not len(rows):
        return rows
    boxes = fitted.to_source(rows.boxes, window.width, window.height)
    boxes[:, [0, 2]] += window.col_off
    boxes[:, [1, 3]] += window.row_off
    rows.boxes = boxes
    return rows


def _stamp(
    rows: FeatureRows,
    pending: _Pending,
    images: list[int],
    keys: list[str],
    parent: str | None,
) -> FeatureRows:
    """Every feature says which photo, which detection it is, what it came from and who said so."""
    stamp: dict[str, Any] = {
        "stage": pending.item.stage,
        "task": pending.model.task,
        "model": pending.model_name,
        "model_version": model_version(pending.model),
        "parent": parent,
    }
    old = rows.extra or [None] * len(rows)
    rows.extra = [
        {**_top(e, pending.model), **stamp, "image": image, "key": key}
        for e, image, key in zip(old, images, keys, strict=True)
    ]
    return rows


def _top(extra: dict[str, Any] | None, model: LoadedModel, n: int = 5) -> dict[str, Any]:
    """A classification keeps its ``n`` best classes, not every score (1000 for ImageNet)."""
    if not extra or "scores" not in extra:
        return dict(extra or {})
    scores = extra["scores"]
    best = sorted(range(len(scores)), key=lambda i: -scores[i])[:n]
    rest = {k: v for k, v in extra.items() if k != "scores"}
    return {**rest, "top": [[model.label(i), scores[i]] for i in best]}
