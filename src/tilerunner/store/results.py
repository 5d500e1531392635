"""The results of a job as its aggregation wrote them: merged, georeferenced, once.

Aggregation replaces a job's rows in one transaction (a repeated aggregation leaves exactly its
own rows), so reading the results of a finished job is a plain ordered query: no merge and no
georeferencing per request. Geometry rings are stored as JSON arrays, which keep every float
exactly.

Writing two million rows is the hot path of a large aggregation: rows go to the driver as plain
tuples with their JSON already encoded (SQLite: one ``executemany`` per batch; PostgreSQL: one
``COPY``), not through SQLAlchemy's per-row processing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, delete, select

from tilerunner.jobs.features import FeatureRows
from tilerunner.store.base import Renewal, StoreBase
from tilerunner.store.tables import results

if TYPE_CHECKING:  # numpy is imported where arrays are made: ``tilerunner status`` needs none
    import numpy as np
    from numpy.typing import NDArray

    Geometry = Sequence[NDArray[np.float64] | None] | NDArray[np.float64]

__all__ = ["ImageResults", "ResultStore", "read_results", "replace_results"]

#: Rows sent to the database at a time (SQLite executemany, PostgreSQL COPY buffer).
_BATCH = 5_000
_COLUMNS = (
    "job_id", "image_idx", "idx", "class_id", "label", "score",
    "x0", "y0", "x1", "y1", "geometry", "extra",
)  # fmt: skip


@dataclass(slots=True)
class ImageResults:
    """The merged features of one image: ``rows`` with one ``geometry`` ring (or None) each."""

    image_idx: int
    rows: FeatureRows
    geometry: Geometry = field(default_factory=list)

    def __post_init__(self) -> None:
        if len(self.geometry) != len(self.rows):
            raise ValueError(
                f"image {self.image_idx}: {len(self.rows)} features but "
                f"{len(self.geometry)} geometries; give one geometry (or None) per feature"
            )


class ResultStore(StoreBase):
    """The results methods of :class:`tilerunner.store.Store` (a mixin over its connection)."""

    def replace_results(
        self, job_id: str, parts: list[ImageResults], renew: Renewal | None = None
    ) -> int:
        """Replace the job's stored results with ``parts`` (one transaction); features written.

        ``renew`` is called between batches (see :data:`~tilerunner.store.base.Renewal`)."""
        with self._begin() as conn:
            return replace_results(conn, job_id, parts, renew)

    def results(self, job_id: str) -> list[ImageResults]:
        """The job's results as its last aggregation wrote them (empty before one ran)."""
        with self._begin() as conn:
            return read_results(conn, job_id)


def replace_results(
    conn: Connection, job_id: str, parts: list[ImageResults], renew: Renewal | None = None
) -> int:
    """Delete the job's stored results and write ``parts``; returns features written.

    Rows are built and written ``_BATCH`` at a time: two million features as one list of rows
    would take gigabytes on top of the feature table they come from.
    """
    conn.execute(delete(results).where(results.c.job_id == job_id))
    write = _copy if conn.dialect.name == "postgresql" else _executemany
    written = 0
    for part in parts:
        for batch in _row_batches(job_id, part):
            write(conn, batch)
            written += len(batch)
            if renew is not None:
                renew(conn)
    return written


def _executemany(conn: Connection, rows: list[tuple[Any, ...]]) -> None:
    marks = ", ".join("?" if conn.dialect.paramstyle == "qmark" else "%s" for _ in _COLUMNS)
    conn.exec_driver_sql(f"INSERT INTO results ({', '.join(_COLUMNS)}) VALUES ({marks})", rows)


def _copy(conn: Connection, rows: list[tuple[Any, ...]]) -> None:
    """PostgreSQL ``COPY ... FROM STDIN`` on the transaction's own connection."""
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        with cursor.copy(f"COPY results ({', '.join(_COLUMNS)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
    finally:
        cursor.close()


def _row_batches(job_id: str, part: ImageResults) -> Iterator[list[tuple[Any, ...]]]:
    """One image's features as rows of the results table, ``_BATCH`` at a time, in order;
    geometry and extra are JSON text (None stays NULL)."""
    import numpy as np

    rows, n = part.rows, len(part.rows)
    dumps = json.dumps
    for start in range(0, n, _BATCH):
        stop = min(n, start + _BATCH)
        extra = rows.extra[start:stop] if rows.extra is not None else [None] * (stop - start)
        geometry = part.geometry[start:stop]
        rings = (
            np.asarray(geometry, dtype=np.float64).tolist()
            if isinstance(geometry, np.ndarray)
            else [None if g is None else np.asarray(g, dtype=np.float64).tolist() for g in geometry]
        )
        yield [
            (
                job_id,
                part.image_idx,
                i,
                c,
                label,
                s,
                *b,
                None if g is None else dumps(g),
                None if e is None else dumps(e),
            )
            for i, b, s, c, label, g, e in zip(
                range(start, stop),
                rows.boxes[start:stop].tolist(),
                rows.scores[start:stop].tolist(),
                rows.class_ids[start:stop].tolist(),
                rows.labels[start:stop],
                rings,
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
