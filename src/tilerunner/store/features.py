"""Writing feature rows: one ``features`` row per detection, classification or polygon.

Raster regions and photo stages store their features the same way; only where the image index
comes from differs: a raster region's features all belong to its image, a photo item's to the
photo each feature names (``extra["image"]``).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, insert

from tilerunner.jobs.features import FeatureRows
from tilerunner.store.tables import features

__all__ = ["insert_features"]

_BATCH = 5000
_INSERT = insert(features)


def insert_features(
    conn: Connection, job_id: str, region_idx: int, rows: FeatureRows, image_idx: int | None
) -> None:
    """Insert ``rows`` as features of ``region_idx``; each row's image is ``image_idx``, or the
    ``image`` its ``extra`` names when ``image_idx`` is None (a photo item's many photos)."""
    if not len(rows):
        return
    extra: list[dict[str, Any] | None] = rows.extra or [None] * len(rows)
    payload = [
        {
            "job_id": job_id,
            "image_idx": image_idx if image_idx is not None else int((e or {})["image"]),
            "region_idx": region_idx,
            "class_id": int(c),
            "label": label,
            "score": float(s),
            "x0": float(b[0]),
            "y0": float(b[1]),
            "x1": float(b[2]),
            "y1": float(b[3]),
            "extra": e,
        }
        for b, s, c, label, e in zip(
            rows.boxes.tolist(),
            rows.scores.tolist(),
            rows.class_ids.tolist(),
            rows.labels,
            extra,
            strict=True,
        )
    ]
    for start in range(0, len(payload), _BATCH):
        conn.execute(_INSERT, payload[start : start + _BATCH])
