"""The feature table: every output record of a job, column by column.

Jobs can produce millions of detections, so results travel as columns (numpy arrays for numbers,
plain sequences for strings) rather than as a list of dicts: concatenating region results,
filtering by score and handing columns to pyarrow stay vectorised. Each writer turns the same
table into its format; a feature is the row ``i`` across all columns.

``geometry[i]`` is a closed ring ``[K, 2]`` (lon/lat unless the writer is told another CRS), or
``None`` for images without georeferencing. Boxes keep their rings as one ``[N, 5, 2]`` array
(80 bytes a feature), not as a list of arrays (an object of its own per feature). ``extra``
holds optional per-feature columns such as ``z``/``x``/``y`` for XYZ tiles or ``scores`` lists
for classification.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely
from numpy.typing import NDArray

from tilerunner.errors import InvalidRequestError

__all__ = ["FeatureTable", "Geometry"]

Geometry = Sequence[NDArray[np.float64] | None] | NDArray[np.float64]
"""A geometry column: one ring ``[K, 2]`` or None per feature, or one ``[N, K, 2]`` array."""


@dataclass(frozen=True)
class FeatureTable:
    """Columnar features; every column has the same length ``N``."""

    image: Sequence[str]
    label: Sequence[str]
    class_id: NDArray[np.int64]
    score: NDArray[np.float64]
    pixel_bbox: NDArray[np.float64]
    geometry: Geometry
    extra: Mapping[str, Sequence[Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "class_id", np.asarray(self.class_id, dtype=np.int64).ravel())
        object.__setattr__(self, "score", np.asarray(self.score, dtype=np.float64).ravel())
        bbox = np.asarray(self.pixel_bbox, dtype=np.float64)
        object.__setattr__(self, "pixel_bbox", bbox.reshape(-1, 4) if bbox.size == 0 else bbox)
        object.__setattr__(self, "extra", dict(self.extra))
        if isinstance(self.geometry, np.ndarray) and self.geometry.ndim != 3:
            raise InvalidRequestError(
                f"geometry array has shape {self.geometry.shape}; it must be [N, K, 2] rings"
            )
        n = len(self.image)
        lengths = {
            "label": len(self.label),
            "class_id": len(self.class_id),
            "score": len(self.score),
            "pixel_bbox": len(self.pixel_bbox),
            "geometry": len(self.geometry),
            **{f"extra[{k!r}]": len(v) for k, v in self.extra.items()},
        }
        wrong = {name: length for name, length in lengths.items() if length != n}
        if wrong:
            raise InvalidRequestError(
                f"feature table columns differ in length: image has {n}, but {wrong}; "
                "build every column with one entry per feature"
            )
        if self.pixel_bbox.ndim != 2 or self.pixel_bbox.shape[1] != 4:
            raise InvalidRequestError(
                f"pixel_bbox has shape {self.pixel_bbox.shape}; it must be [N, 4] (x0, y0, x1, y1)"
            )

    def __len__(self) -> int:
        return len(self.image)

    @classmethod
    def empty(cls, extra_columns: Iterable[str] = ()) -> FeatureTable:
        """A table with no features (and, optionally, empty extra columns)."""
        return cls(
            image=[],
            label=[],
            class_id=np.empty(0, dtype=np.int64),
            score=np.empty(0, dtype=np.float64),
            pixel_bbox=np.empty((0, 4), dtype=np.float64),
            geometry=[],
            extra={name: [] for name in extra_columns},
        )

    @classmethod
    def concat(cls, tables: Iterable[FeatureTable]) -> FeatureTable:
        """All features of ``tables`` in order; extra columns must match across tables."""
        parts = list(tables)
        if not parts:
            return cls.empty()
        if len(parts) == 1:
            return parts[0]
        keys = list(parts[0].extra)
        for part in parts[1:]:
            if set(part.extra) != set(keys):
                raise InvalidRequestError(
                    f"cannot concatenate feature tables with different extra columns "
                    f"({sorted(keys)} vs {sorted(part.extra)}); give every table the same columns"
                )
        return cls(
            image=[v for p in parts for v in p.image],
            label=[v for p in parts for v in p.label],
            class_id=np.concatenate([p.class_id for p in parts]),
            score=np.concatenate([p.score for p in parts]),
            pixel_bbox=np.concatenate([p.pixel_bbox for p in parts]),
            geometry=_concat_geometry([p.geometry for p in parts]),
            extra={k: [v for p in parts for v in p.extra[k]] for k in keys},
        )

    def rows(self, start: int, stop: int) -> FeatureTable:
        """Features ``start:stop`` (columns sliced, arrays as views): writers go chunk by chunk."""
        return FeatureTable(
            image=self.image[start:stop],
            label=self.label[start:stop],
            class_id=self.class_id[start:stop],
            score=self.score[start:stop],
            pixel_bbox=self.pixel_bbox[start:stop],
            geometry=self.geometry[start:stop],
            extra={k: v[start:stop] for k, v in self.extra.items()},
        )

    def has_geometry(self) -> NDArray[np.bool_]:
        """Boolean mask of features that have a map geometry."""
        if isinstance(self.geometry, np.ndarray):
            return np.ones(len(self), dtype=bool)
        return np.fromiter((g is not None for g in self.geometry), dtype=bool, count=len(self))

    def shapely_geometries(self) -> NDArray[np.object_]:
        """Shapely polygons, ``None`` where a feature has no geometry.

        Rings of equal vertex count (the usual 5-point boxes) are built in one vectorised call.
        """
        if isinstance(self.geometry, np.ndarray):
            polygons: NDArray[np.object_] = shapely.polygons(self.geometry)
            return polygons
        present = self.has_geometry()
        geoms: NDArray[np.object_] = np.full(len(self), None, dtype=object)
        rings = [np.asarray(g, dtype=np.float64) for g in self.geometry if g is not None]
        if rings and len({r.shape for r in rings}) == 1:
            geoms[present] = shapely.polygons(np.stack(rings))
        elif rings:
            geoms[present] = [shapely.Polygon(r) for r in rings]
        return geoms


def _concat_geometry(parts: list[Geometry]) -> Geometry:
    """One geometry column: still one array when every part is an array of same-sized rings."""
    arrays = [p for p in parts if isinstance(p, np.ndarray)]
    if len(arrays) == len(parts) and len({a.shape[1:] for a in arrays}) == 1:
        joined: NDArray[np.float64] = np.concatenate(arrays)
        return joined
    return [None if g is None else np.asarray(g, dtype=np.float64) for p in parts for g in p]
