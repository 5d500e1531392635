"""Joining the polygons that window seams cut, without unioning their holes.

A polygon found in one window that touches a seam shared with another window is held until
its neighbours across the seam are known, then joined to them. The join only ever changes a
polygon near the seams: every hole a window's polygon has is enclosed by that polygon's own
pixels inside that window, so it is already final. GEOS overlays (``union_all``) cost grows
with every vertex of every ring, and a class polygon of a real scene carries thousands of holes;
so the holes are set aside, only the shells are unioned, and each hole goes back into the joined
polygon whose shell took its piece's shell. Holes that the join itself closes (a ring of pixels
around a seam) come out of the union as interiors of the joined shells, and are final too: they
lie in rows already read.

The pieces of one class are unioned with ``shapely.disjoint_subset_union_all`` where shapely
has it (2.1 and later: it unions each group of touching shells on its own), else ``union_all``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import shapely
from numpy.typing import NDArray

__all__ = ["SeamStitcher"]

_union_all = getattr(shapely, "disjoint_subset_union_all", shapely.union_all)


@dataclass(slots=True)
class _Piece:
    """A held polygon: its shell alone, and its holes (final) set aside."""

    shell: shapely.Polygon
    holes: list[shapely.LinearRing]


class SeamStitcher:
    """Holds, per class, the polygons that touch an open seam, and joins them row by row."""

    def __init__(self) -> None:
        self._held: dict[int, list[_Piece]] = {}

    def hold(self, class_id: int, polygons: Sequence[shapely.Polygon]) -> None:
        """Keep ``polygons`` (in pixel coordinates) until :meth:`stitch` can finish them."""
        pieces = self._held.setdefault(class_id, [])
        for polygon in polygons:
            pieces.append(_Piece(shapely.Polygon(polygon.exterior), list(polygon.interiors)))

    def stitch(self, open_seam: int | None) -> Iterator[tuple[int, list[shapely.Polygon]]]:
        """Join the held pieces of each class; yield the polygons that can grow no more.

        ``open_seam`` is the pixel row below which nothing has been read yet (``None`` at the
        end): a joined polygon reaching it may still grow and stays held.
        """
        for class_id in list(self._held):
            finished, waiting = _join(self._held[class_id], open_seam)
            if waiting:
                self._held[class_id] = waiting
            else:
                del self._held[class_id]
            if finished:
                yield class_id, finished


def _join(
    pieces: list[_Piece], open_seam: int | None
) -> tuple[list[shapely.Polygon], list[_Piece]]:
    shells: NDArray[np.object_] = np.array([p.shell for p in pieces], dtype=object)
    parts: NDArray[np.object_] = shapely.get_parts(_union_all(shells))
    # each piece's shell lies in exactly one joined part: the one holding a point inside it
    inside = shapely.point_on_surface(shells)
    piece_of, part_of = shapely.STRtree(parts).query(inside, predicate="intersects")
    holes: list[list[shapely.LinearRing]] = [list(part.interiors) for part in parts]
    for piece, part in zip(piece_of.tolist(), part_of.tolist(), strict=True):
        holes[part].extend(pieces[piece].holes)
    reaches = (
        np.zeros(len(parts), dtype=bool)
        if open_seam is None
        else shapely.bounds(parts)[:, 3] >= open_seam
    )
    finished: list[shapely.Polygon] = []
    waiting: list[_Piece] = []
    for index, part in enumerate(parts.tolist()):
        if reaches[index]:
            waiting.append(_Piece(shapely.Polygon(part.exterior), holes[index]))
        else:
            finished.append(shapely.Polygon(part.exterior, holes[index]))
    return finished, waiting
