"""A photo job's results over HTTP: records per photo, a page at a time.

A photo job's results are the records its outputs hold (one per photo: id, event, location,
status and its detections with every later stage's result), as JSON Lines (the default), CSV
or GeoJSON. Pages follow the photos' order in the job: ``limit`` photos, and an opaque cursor
for the next page in the ``X-Tilerunner-Next-Cursor`` header (absent on the last page). The
filters of raster results apply per photo: ``min_score`` and ``label`` keep the detections that
pass (a photo stays, with fewer detections), ``bbox`` keeps the photos located inside it, so a
filtered page may hold fewer than ``limit`` photos while more follow.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from fastapi.responses import StreamingResponse
from starlette.responses import Response

from tilerunner.api.cursors import pack_cursor, unpack_cursor
from tilerunner.api.results import ResultFilter, ResultFormat, file_response
from tilerunner.errors import InvalidRequestError
from tilerunner.photos.results import indexed_photo_records, write_photo_records
from tilerunner.store import Store

__all__ = ["NEXT_CURSOR_HEADER", "decode_photo_cursor", "encode_photo_cursor", "photo_results"]

NEXT_CURSOR_HEADER = "X-Tilerunner-Next-Cursor"

_MEDIA = {
    ResultFormat.JSONL: ("application/x-ndjson", ".jsonl"),
    ResultFormat.CSV: ("text/csv; charset=utf-8", ".csv"),
    ResultFormat.GEOJSON: ("application/geo+json", ".geojson"),
}


def encode_photo_cursor(after: int) -> str:
    return pack_cursor({"photo": after})


def decode_photo_cursor(cursor: str) -> int:
    """The last photo index a cursor encodes; a clear error for a cursor we did not make."""
    value = unpack_cursor(cursor)
    after = value.get("photo") if isinstance(value, dict) else None
    if isinstance(after, int) and after >= 0:
        return after
    raise InvalidRequestError(
        f"invalid cursor {cursor!r}; pass the {NEXT_CURSOR_HEADER} header of the previous page "
        "unchanged"
    )


def photo_results(
    store: Store,
    job_id: str,
    fmt: ResultFormat | None,
    where: ResultFilter,
    limit: int,
    cursor: str | None,
) -> Response:
    """One page of the photo job's records in ``fmt``, with the next page's cursor header."""
    fmt = fmt or ResultFormat.JSONL
    if fmt not in _MEDIA:
        raise InvalidRequestError(
            f"format={fmt.value} is not offered for photo jobs; ask for jsonl, csv or geojson"
        )
    after = decode_photo_cursor(cursor) if cursor is not None else -1
    page = indexed_photo_records(store, job_id, after=after, limit=limit + 1)
    more = len(page) > limit
    page = page[:limit]
    records = [r for r in (_filtered(r, where) for _, r in page) if r is not None]
    response = _response(records, fmt, job_id)
    if more:
        response.headers[NEXT_CURSOR_HEADER] = encode_photo_cursor(page[-1][0])
    return response


def _filtered(record: dict[str, Any], where: ResultFilter) -> dict[str, Any] | None:
    """The record with the detections passing ``min_score`` and ``label``; None when the
    photo lies outside ``bbox`` (or has no location while a bbox is asked)."""
    if where.bbox is not None:
        if record["location"] is None:
            return None
        lon, lat = record["location"]
        box = where.bbox
        if not (box.minx <= lon <= box.maxx and box.miny <= lat <= box.maxy):
            return None
    if where.min_score is None and where.labels is None:
        return record
    kept = [
        d
        for d in record["detections"]
        if (where.min_score is None or d["score"] >= where.min_score)
        and (where.labels is None or d["label"] in where.labels)
    ]
    return {**record, "detections": kept}


def _response(records: list[dict[str, Any]], fmt: ResultFormat, stem: str) -> Response:
    media, ext = _MEDIA[fmt]
    headers = {"Content-Disposition": f'attachment; filename="{stem}{ext}"'}
    if fmt is ResultFormat.JSONL:
        return StreamingResponse(_lines(records), media_type=media, headers=headers)
    return file_response(
        lambda path: write_photo_records(records, path, fmt.value), ext, media, headers
    )


def _lines(records: list[dict[str, Any]]) -> Iterator[bytes]:
    for record in records:
        yield (json.dumps(record, separators=(",", ":")) + "\n").encode("utf-8")
