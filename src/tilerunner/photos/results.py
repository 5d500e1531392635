"""Results of a photo job, grouped per photo: JSON Lines, CSV and GeoJSON.

Raster outputs are one feature per detection; a photo collection is read photo by photo (an
event's camera-trap frames, a street photo's people), so each photo is one record: its id,
event and location, and its detections, each with what every later stage said about its crop
(``stages``, nested as deep as the pipeline goes), or the error of a crop that failed alone
(``errors``). Every detection and stage result names the model and version that produced it.
GeoJSON holds the photos that have a location (the manifest's lon/lat, else the photo's EXIF
GPS) as points.
"""

from __future__ import annotations

import csv
import json
import os
from collections import Counter
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from tilerunner.errors import InvalidRequestError
from tilerunner.jobs import JobSpec
from tilerunner.outputs import check_writable, write_output
from tilerunner.store import Store

__all__ = [
    "PHOTO_FORMATS",
    "check_photo_output",
    "indexed_photo_records",
    "photo_records",
    "write_photo_outputs",
    "write_photo_records",
]

_Write = Callable[[list[dict[str, Any]], str], None]
PHOTO_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".geojson": "geojson"}


def check_photo_output(uri: str, fmt: str | None = None, *, label: str | None = None) -> str:
    """The format of a photo job's output; InvalidRequestError saying what to change."""
    label = label or f"output {uri!r}"
    check_writable(uri)
    if fmt is not None:
        if fmt not in PHOTO_FORMATS.values():
            raise InvalidRequestError(
                f"{label}: photo results are written as jsonl, csv or geojson, not {fmt!r}"
            )
        return fmt
    ext = os.path.splitext(urlsplit(uri).path)[1].lower()
    if ext not in PHOTO_FORMATS:
        raise InvalidRequestError(
            f"{label}: photo results are written per photo; end the name in .jsonl, .csv "
            "or .geojson"
        )
    return PHOTO_FORMATS[ext]


def photo_records(
    store: Store, job_id: str, *, after: int = -1, limit: int | None = None
) -> list[dict[str, Any]]:
    """One record per photo, in job order, with its detections and their later stages; only
    the photos whose index is above ``after`` (at most ``limit``) when paging. A crop that
    failed alone is an ``errors`` entry (stage and message) of the detection it came from."""
    return [record for _, record in indexed_photo_records(store, job_id, after=after, limit=limit)]


def indexed_photo_records(
    store: Store, job_id: str, *, after: int = -1, limit: int | None = None
) -> list[tuple[int, dict[str, Any]]]:
    """:func:`photo_records` with each photo's index in the job (what a page cursor keeps)."""
    photos, rows = store.photo_rows(job_id, after=after, limit=limit)
    # the failed crops of these photos only: a page reads its own
    failed = store.crop_failures(job_id, photos[0]["idx"], photos[-1]["idx"]) if photos else {}
    children: dict[str | None, list[dict[str, Any]]] = {}
    for row in rows:
        extra = dict(row["extra"] or {})
        node: dict[str, Any] = {
            "stage": extra.get("stage", 0),
            "task": extra.get("task", "detect"),
            "model": extra.get("model"),
            "model_version": extra.get("model_version"),
            "label": row["label"],
            "class_id": row["class_id"],
            "score": round(float(row["score"]), 6),
        }
        if node["task"] == "detect":
            node["box"] = [round(float(row[c]), 2) for c in ("x0", "y0", "x1", "y1")]
        if "top" in extra:
            node["top"] = extra["top"]
        node["_key"], node["_image"] = extra.get("key"), row["image_idx"]
        children.setdefault(extra.get("parent"), []).append(node)

    def tree(node: dict[str, Any]) -> dict[str, Any]:
        key = node.pop("_key")
        below = [tree(n) for n in children.get(key, [])]
        node.pop("_image")
        if key in failed:
            node["errors"] = [{"stage": s, "error": m} for s, m in failed[key]]
        return {**node, "stages": below} if below else node

    per_photo: dict[int, list[dict[str, Any]]] = {}
    for node in children.get(None, []):
        per_photo.setdefault(node["_image"], []).append(tree(node))
    out = []
    for photo in photos:
        meta = photo["meta"] or {}
        lon, lat = meta.get("lon"), meta.get("lat")
        record = {
            "id": photo["source_id"],
            "url": photo["url"],
            "event": meta.get("event"),
            "width": photo["width"],
            "height": photo["height"],
            "location": None if lon is None or lat is None else [lon, lat],
            "status": photo["state"],
            "error": photo["error"],
            "detections": per_photo.get(photo["idx"], []),
        }
        out.append((int(photo["idx"]), record))
    return out


def write_photo_records(
    records: list[dict[str, Any]], uri: str, fmt: str, s3_endpoint_url: str | None = None
) -> None:
    """Write photo records to ``uri`` (a path or object URL) as ``fmt`` (jsonl, csv, geojson)."""
    write = _WRITERS[fmt]

    def produce(path: str) -> None:
        write(records, path)

    write_output(uri, produce, s3_endpoint_url)


def write_photo_outputs(
    store: Store, job_id: str, spec: JobSpec, s3_endpoint_url: str | None = None
) -> tuple[int, dict[str, int], list[str]]:
    """Write every output of a photo job; (detections, labels counted, uris written)."""
    records = photo_records(store, job_id)
    uris = []
    for output in spec.outputs:
        fmt = check_photo_output(output.uri, output.format)
        write_photo_records(records, output.uri, fmt, s3_endpoint_url)
        uris.append(output.uri)
    labels = Counter(d["label"] for r in records for d in r["detections"])
    return sum(len(r["detections"]) for r in records), dict(labels.most_common()), uris


def _jsonl(records: list[dict[str, Any]], path: str) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, separators=(",", ":")) + "\n")


def _csv(records: list[dict[str, Any]], path: str) -> None:
    """One row per detection (a photo without any: one row with empty detection columns);
    each later stage adds ``<model>_label`` and ``<model>_score`` columns, and ``errors``
    holds the detection's failed crops as ``stage:message`` (``; `` between two)."""
    later: list[str] = []
    for record in records:
        for detection in record["detections"]:
            for sub in detection.get("stages", []):
                if sub["model"] not in later:
                    later.append(sub["model"])
    head = ["photo", "event", "lon", "lat", "status", "error", "model", "label", "score",
            "x0", "y0", "x1", "y1"]  # fmt: skip
    head += [f"{m}_{c}" for m in later for c in ("label", "score")]
    head.append("errors")
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(head)
        for record in records:
            lon, lat = record["location"] or (None, None)
            base = [record["id"], record["event"], lon, lat, record["status"], record["error"]]
            if not record["detections"]:
                writer.writerow(base + [None] * (len(head) - len(base)))
            for d in record["detections"]:
                by_model = {s["model"]: s for s in d.get("stages", [])}
                stage_cols = [by_model.get(m, {}).get(c) for m in later for c in ("label", "score")]
                errors = _errors(d)
                writer.writerow(
                    [*base, d["model"], d["label"], d["score"], *d["box"], *stage_cols, errors]
                )


def _errors(detection: dict[str, Any]) -> str | None:
    """The failed crops of a detection and of every later stage's detections under it, as
    ``stage:message`` joined by ``; `` (None when none failed)."""
    found: list[str] = []

    def walk(node: dict[str, Any]) -> None:
        found.extend(f"{e['stage']}:{e['error']}" for e in node.get("errors", []))
        for sub in node.get("stages", []):
            walk(sub)

    walk(detection)
    return "; ".join(found) or None


def _geojson(records: list[dict[str, Any]], path: str) -> None:
    features = [
        {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": r["location"]},
            "properties": {k: v for k, v in r.items() if k != "location"},
        }
        for r in records
        if r["location"] is not None
    ]
    with open(path, "w", encoding="utf-8") as handle:
        json.dump({"type": "FeatureCollection", "features": features}, handle)


_WRITERS: dict[str, _Write] = {"jsonl": _jsonl, "csv": _csv, "geojson": _geojson}
