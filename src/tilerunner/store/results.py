"""The results of a job as its aggregation wrote them: merged, georeferenced, once.

Aggregation replaces a job's rows in one transaction (a repeated aggregation leaves exactly its
own rows), so reading the results of a finished job is a plain ordered query: no merge and no
georeferencing per request. Geometry rings are stored as JSON arrays, which keep every float
exactly.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, delete, insert, select

from tilerunner.jobs.features import FeatureRows
from tilerunner.store.base import StoreBase
from tilerunner.store.tables import results

if TYPE_CHECKING:  # numpy is imported where arrays are made: ``tilerunner status`` needs none
    import numpy as np
    from numpy.typing import NDArray

__all__ = ["ImageResults", "ResultStore", "read_results", "replace_results"]

_BATCH = 5000
_INSERT = insert(results)


@dataclass(slots=True)
class ImageResults:
    """The merged features of one image: ``rows`` with one ``geometry`` ring (or None) each."""

    image_idx: int
    rows: FeatureRows
    geometry: list[NDArray[np.float64] | None] = field(default_factory=list)

    def __post_init__(self) -> None:
        if len(self.geometry) != len(self.rows):
            raise ValueError(
                f"image {self.image_idx}: {len(self.rows)} features but "
                f"{len(self.geometry)} geometries; give one geometry (or None) per feature"
            )


class ResultStore(StoreBase):
    """The results methods of :class:`tilerunner.store.Store` (a mixin over its connection)."""

    def replace_results(self, job_id: str, parts: list[ImageResults]) -> int:
        """Replace the job's stored results with ``parts`` (one transaction); features written."""
        with self._begin() as conn:
            return replace_results(conn, job_id, parts)

    def results(self, job_id: str) -> list[ImageResults]:
        """The job's results as its last aggregation wrote them (empty before one ran)."""
        with self._begin() as conn:
            return read_results(conn, job_id)


def replace_results(conn: Connection, job_id: str, parts: list[ImageResults]) -> int:
    """Delete the job's stored results and write ``parts``; returns features written.

    Rows are built and inserted ``_BATCH`` at a time: two million features as one list of row
    dicts would take gigabytes on top of the feature table they come from.
    """
    conn.execute(delete(results).where(results.c.job_id == job_id))
    written = 0
    for part in parts:
        for batch in _row_batches(job_id, part):
            conn.execute(_INSERT, batch)
            written += len(batch)
    return written


def _row_batches(job_id: str, part: ImageResults) -> Iterator[list[dict[str, Any]]]:
    """One image's features as rows of the results table, ``_BATCH`` at a time, in order."""
    import numpy as np

    rows, n = part.rows, len(part.rows)
    for start in range(0, n, _BATCH):
        stop = min(n, start + _BATCH)
        extra = rows.extra[start:stop] if rows.extra is not None else [None] * (stop - start)
        yield [
            {
                "job_id": job_id,
                "image_idx": part.image_idx,
                "idx": i,
                "class_id": int(c),
                "label": label,
                "score": float(s),
                "x0": float(b[0]),
                "y0": float(b[1]),
                "x1": float(b[2]),
                "y1": float(b[3]),
                "geometry": None if g is None else np.asarray(g, dtype=np.float64).tolist(),
                "extra": e,
            }
            for i, b, s, c, label, g, e in zip(
                range(start, stop),
                rows.boxes[start:stop].tolist(),
                rows.scores[start:stop].tolist(),
                rows.class_ids[start:stop].tolist(),
                rows.labels[start:stop],
                part.geometry[start:stop],
                extra,
                strict=True,
            )
        ]


def read_results(conn: Connection, job_id: str) -> list[ImageResults]:
    """The stored results of a job, per image in image order, features in written order."""
    found = conn.execute(
        select(
            results.c.image_idx,
            results.c.class_id,
            results.c.label,
            results.c.score,
            results.c.x0,
            results.c.y0,
            results.c.x1,
            results.c.y1,
            results.c.geometry,
            results.c.extra,
        )
        .where(results.c.job_id == job_id)
        .order_by(results.c.image_idx, results.c.idx)
    ).all()
    groups: dict[int, list[Any]] = {}
    for row in found:
        groups.setdefault(int(row.image_idx), []).append(row)
    return [_image_results(idx, group) for idx, group in groups.items()]


def _image_results(image_idx: int, group: list[Any]) -> ImageResults:
    import numpy as np

    extra = [r.extra for r in group]
    rows = FeatureRows(
        boxes=np.array([(r.x0, r.y0, r.x1, r.y1) for r in group], dtype=np.float64),
        scores=np.array([r.score for r in group], dtype=np.float64),
        class_ids=np.array([r.class_id for r in group], dtype=np.int64),
        labels=[str(r.label) for r in group],
        extra=extra if any(e is not None for e in extra) else None,
    )
    geometry = [
        None if r.geometry is None else np.asarray(r.geometry, dtype=np.float64) for r in group
    ]
    return ImageResults(image_idx, rows, geometry)
