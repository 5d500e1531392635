"""Which detections a tile owns: the ones whose centre lies in the tile's core.

Cores partition the image (see :mod:`tilerunner.tiling.grid`), so every object is owned by
exactly one tile. When objects are no larger than the overlap (precisely: ``2 * (overlap // 2)``
px), the owning tile sees the object whole, and a tile that sees only part of it (clipped at
its edge) finds the centre of that partial box outside its core. Keeping owned boxes per tile
thus yields every object once, at full extent, with no search across tiles: tiles can be
processed in any order, in any region, on any worker.

All functions work on ``[N, 4]`` float arrays of ``x0, y0, x1, y1`` and are vectorised.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from tilerunner.errors import InvalidRequestError
from tilerunner.tiling.window import Window

__all__ = ["as_boxes", "clip_boxes", "owned_mask", "tile_to_image"]


def as_boxes(boxes: ArrayLike) -> NDArray[np.float64]:
    """``boxes`` as a float64 ``[N, 4]`` array; an empty input becomes ``[0, 4]``."""
    array = np.asarray(boxes, dtype=np.float64)
    if array.size == 0:
        return np.zeros((0, 4), dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != 4:
        raise InvalidRequestError(
            f"boxes must be an [N, 4] array of x0, y0, x1, y1, got shape {array.shape}; "
            "reshape the detector output"
        )
    return array


def owned_mask(
    boxes: ArrayLike, core: Window, image_width: int, image_height: int
) -> NDArray[np.bool_]:
    """Mask of the ``boxes`` (full-image pixels) whose centre lies inside ``core``.

    The core is half-open, ``[off, end)``, so a centre on the line between two cores belongs to
    exactly one of them. A core that reaches the right or bottom edge of the image is closed on
    that side, so a centre exactly on the image edge is still owned by someone. Centres outside
    the image (boxes found in the padding of a small image) are owned by nobody.
    """
    array = as_boxes(boxes)
    cx = (array[:, 0] + array[:, 2]) * 0.5
    cy = (array[:, 1] + array[:, 3]) * 0.5
    return _inside(cx, core.col_off, core.col_end, image_width) & _inside(
        cy, core.row_off, core.row_end, image_height
    )


def _inside(centre: NDArray[np.float64], start: int, end: int, edge: int) -> NDArray[np.bool_]:
    upper = centre <= end if end >= edge else centre < end
    result: NDArray[np.bool_] = (centre >= start) & upper
    return result


def clip_boxes(boxes: ArrayLike, width: int, height: int) -> NDArray[np.float64]:
    """``boxes`` clipped to a ``width`` x ``height`` image (a new array).

    Detections on padded tiles can reach past the image; outputs must not.
    """
    array = as_boxes(boxes)
    clipped = np.empty_like(array)
    np.clip(array[:, 0::2], 0.0, float(width), out=clipped[:, 0::2])
    np.clip(array[:, 1::2], 0.0, float(height), out=clipped[:, 1::2])
    return clipped


def tile_to_image(boxes: ArrayLike, window: Window) -> NDArray[np.float64]:
    """Translate ``boxes`` from tile pixels (a model's output) to full-image pixels."""
    array = as_boxes(boxes)
    offset = np.array(
        [window.col_off, window.row_off, window.col_off, window.row_off], dtype=np.float64
    )
    result: NDArray[np.float64] = array + offset
    return result
