"""Photo collections: folders, globs, URL lists and manifests resolved into photos.

Files, folders, globs and URLs resolve exactly as raster sources do
(:func:`tilerunner.imagery.expand_sources`). A source ending in ``.csv``, ``.jsonl`` or
``.ndjson`` is a manifest: one photo per row with ``url`` and optional ``id``, ``event`` (or
``group``), ``lon`` and ``lat``; the event and location travel with every result of the photo.
A relative ``url`` in a manifest is resolved from the manifest's folder. A row without a url is
not a reason to refuse the job: it becomes a photo that failed with that error, and the rest
runs.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from tilerunner.errors import SourceError
from tilerunner.imagery import expand_sources

__all__ = ["MANIFEST_SUFFIXES", "PhotoRef", "expand_photos", "is_manifest"]

MANIFEST_SUFFIXES = (".csv", ".jsonl", ".ndjson")


@dataclass(frozen=True, slots=True)
class PhotoRef:
    """One photo: its id, where to read it, its event (group) and location, or why not."""

    id: str
    url: str
    event: str | None = None
    lon: float | None = None
    lat: float | None = None
    error: str | None = None

    def meta(self) -> dict[str, Any]:
        """What the store keeps beside the photo (kept on every result)."""
        return {"event": self.event, "lon": self.lon, "lat": self.lat}


def is_manifest(source: str) -> bool:
    return source.lower().endswith(MANIFEST_SUFFIXES) and "://" not in source


def expand_photos(sources: Sequence[str | tuple[str, str]]) -> list[PhotoRef]:
    """Every photo of the sources, in order; SourceError for a missing path or a duplicate id."""
    photos: list[PhotoRef] = []
    plain: list[str | tuple[str, str]] = []

    def flush() -> None:
        photos.extend(PhotoRef(ref.id, ref.url) for ref in expand_sources(plain))
        plain.clear()

    for source in sources:
        if isinstance(source, str) and is_manifest(source):
            flush()
            photos.extend(_manifest(source))
        else:
            plain.append(source)
    flush()
    seen: set[str] = set()
    for photo in photos:
        if photo.id in seen:
            raise SourceError(
                f"photo id {photo.id!r} appears more than once; give every photo a unique id"
            )
        seen.add(photo.id)
    return photos


def _manifest(path: str) -> list[PhotoRef]:
    if not os.path.isfile(path):
        raise SourceError(f"manifest {path!r} does not exist; check the path")
    folder = os.path.dirname(os.path.abspath(path))
    rows = list(_rows(path))
    if not rows:
        raise SourceError(f"manifest {path!r} lists no photos; add rows with a url column")
    return [_photo(path, folder, line, row) for line, row in rows]


def _rows(path: str) -> Iterator[tuple[int, dict[str, Any]]]:
    with open(path, newline="", encoding="utf-8") as handle:
        if path.lower().endswith(".csv"):
            reader = csv.DictReader(handle)
            if reader.fieldnames is None or "url" not in reader.fieldnames:
                raise SourceError(
                    f"manifest {path!r} has no url column; its header must name at least url "
                    "(and optionally id, event, lon, lat)"
                )
            for line, row in enumerate(reader, start=2):
                yield line, {k: v for k, v in row.items() if k is not None}
            return
        for line, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                row = json.loads(text)
            except json.JSONDecodeError as error:
                raise SourceError(
                    f"{path}:{line} is not JSON ({error.msg}); fix the line"
                ) from None
            if not isinstance(row, dict):
                raise SourceError(f"{path}:{line} must be a JSON object with a url")
            yield line, row


def _photo(path: str, folder: str, line: int, row: dict[str, Any]) -> PhotoRef:
    url = str(row.get("url") or "").strip()
    photo_id = str(row.get("id") or "").strip() or url or f"{path}:{line}"
    event = row.get("event", row.get("group"))
    event = None if event in (None, "") else str(event)
    try:
        lon, lat = _number(row.get("lon")), _number(row.get("lat"))
    except ValueError:
        return PhotoRef(photo_id, url, event, error=f"{path}:{line}: lon/lat must be numbers")
    if not url:
        return PhotoRef(photo_id, "", event, lon, lat, error=f"{path}:{line}: the row has no url")
    if "://" not in url and not url.startswith("/vsi") and not os.path.isabs(url):
        url = os.path.join(folder, url)
    return PhotoRef(photo_id, url, event, lon, lat)


def _number(value: Any) -> float | None:
    if value in (None, ""):
        return None
    return float(value)
