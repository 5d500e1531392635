"""Feature rows: one ``features`` row per detection, classification or polygon.

Raster regions and photo stages store their features the same way; only where the image index
comes from differs: a raster region's features all belong to its image, a photo item's to the
photo each feature names (``extra["image"]``). Aggregation reads an image's features back in a
stable order (:meth:`FeatureStore.features`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, insert, select

from tilerunner.jobs.features import FeatureRows
from tilerunner.store.base import Renewal, StoreBase
from tilerunner.store.tables import features

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

__all__ = ["FeatureStore", "insert_features"]

_BATCH = 5000
_INSERT = insert(features)
#: Features read from the database at a time when an image's features are loaded.
_READ_ROWS = 50_000


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


class FeatureStore(StoreBase):
    """Reading features back: a method of :class:`tilerunner.store.Store` (a mixin)."""

    def features(self, job_id: str, image_idx: int, renew: Renewal | None = None) -> FeatureRows:
        """All owned features of one image, in a stable order (region, then insertion), which
        the index ``ix_features_job_image_region`` yields without sorting.

        Rows stream from the database :data:`_READ_ROWS` at a time into numpy arrays, so
        millions of features never exist as SQL rows at once; equal labels share one string.
        ``renew`` is called between chunks (see :data:`~tilerunner.store.base.Renewal`).
        """
        import numpy as np  # here, not at the top: ``tilerunner status`` needs no arrays

        numbers: list[NDArray[np.float64]] = []
        labels: list[str] = []
        extra: list[dict[str, Any] | None] = []
        names: dict[str, str] = {}
        query = (
            select(
                features.c.x0,
                features.c.y0,
                features.c.x1,
                features.c.y1,
                features.c.score,
                features.c.class_id,
                features.c.label,
                features.c.extra,
            )
            .where(features.c.job_id == job_id, features.c.image_idx == image_idx)
            .order_by(features.c.region_idx, features.c.id)
        )
        with self._begin() as conn:
            result = conn.execution_options(yield_per=_READ_ROWS).execute(query)
            for chunk in result.partitions():
                numbers.append(np.array([tuple(r[:6]) for r in chunk], dtype=np.float64))
                labels.extend(names.setdefault(str(r[6]), str(r[6])) for r in chunk)
                extra.extend(r[7] for r in chunk)
                if renew is not None:
                    renew(conn)
        if not numbers:
            return FeatureRows()
        table = np.concatenate(numbers)
        del numbers
        return FeatureRows(
            boxes=np.ascontiguousarray(table[:, :4]),
            scores=table[:, 4].copy(),
            class_ids=table[:, 5].astype(np.int64),
            labels=labels,
            extra=extra if any(e is not None for e in extra) else None,
        )
