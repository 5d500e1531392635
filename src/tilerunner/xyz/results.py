"""Tile results: the ``z``/``x``/``y`` of each feature, and score thresholds by class.

A feature of a tile job is a box in its zoom level's virtual raster (a tile's footprint for a
classification, a detection's box otherwise); its tile is the one holding the box's centre, which
is the tile that owned it. Tile ids are always XYZ (rows from the north), whatever the URL
template's scheme: ``{-y}`` only changes the URL a tile is fetched from.

A threshold ``CLASS:SCORE`` keeps the features whose score for ``CLASS`` (an id, or a class
name) is at least ``SCORE``: for a classification, the tile's score of that class among all its
scores (not only its best one); for a detection, a detection of that class scoring that much.
Several thresholds keep a feature that passes any of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from tilerunner.errors import InvalidRequestError
from tilerunner.outputs import FeatureTable
from tilerunner.xyz.grid import tile_of_pixel
from tilerunner.xyz.thresholds import Threshold, parse_threshold

if TYPE_CHECKING:
    from tilerunner.jobs.spec import OutputSpec

__all__ = ["apply_thresholds", "hits_of", "map_output", "tile_columns"]


def tile_columns(boxes: NDArray[np.float64], zoom: int) -> dict[str, list[Any]]:
    """``tile`` (``x-y-z``), ``z``, ``x`` and ``y`` of each box's tile."""
    tiles = [tile_of_pixel((x0 + x1) / 2, (y0 + y1) / 2, zoom) for x0, y0, x1, y1 in boxes.tolist()]
    return {
        "tile": [str(t) for t in tiles],
        "z": [t.z for t in tiles],
        "x": [t.x for t in tiles],
        "y": [t.y for t in tiles],
    }


def _class_id(table: FeatureTable, target: int | str, strict: bool) -> int | None:
    if isinstance(target, int):
        return target
    ids = {int(c) for label, c in zip(table.label, table.class_id.tolist(), strict=True)
           if label == target}  # fmt: skip
    if len(ids) == 1:
        return ids.pop()
    if strict and len(table):
        known = sorted(set(table.label))
        raise InvalidRequestError(
            f"--threshold: class {target!r} is not among the labels found ({known}); "
            "give the class by its id instead, e.g. 1:0.95"
        )
    return None


def _passes(table: FeatureTable, threshold: Threshold, strict: bool) -> NDArray[np.bool_]:
    class_id = _class_id(table, threshold.target, strict)
    if class_id is None:
        return np.zeros(len(table), dtype=bool)
    all_scores: Sequence[Any] | None = table.extra.get("scores")
    if all_scores is None:  # detections: their own class and score
        keep: NDArray[np.bool_] = (table.class_id == class_id) & (table.score >= threshold.score)
        return keep
    values = [s[class_id] if s is not None and class_id < len(s) else -1.0 for s in all_scores]
    return np.asarray(values, dtype=np.float64) >= threshold.score


def apply_thresholds(
    table: FeatureTable, thresholds: Sequence[Threshold], *, strict: bool = True
) -> FeatureTable:
    """The features that pass any of ``thresholds`` (all of them when there are none).

    A class name that no feature carries is an error (``strict``), or matches nothing.
    """
    if not thresholds or not len(table):
        return table
    keep = np.zeros(len(table), dtype=bool)
    for threshold in thresholds:
        keep |= _passes(table, threshold, strict)
    return _take(table, np.flatnonzero(keep).tolist())


def _take(table: FeatureTable, rows: list[int]) -> FeatureTable:
    return FeatureTable(
        image=[table.image[i] for i in rows],
        label=[table.label[i] for i in rows],
        class_id=table.class_id[rows],
        score=table.score[rows],
        pixel_bbox=table.pixel_bbox[rows].reshape(-1, 4),
        geometry=[table.geometry[i] for i in rows],
        extra={name: [column[i] for i in rows] for name, column in table.extra.items()},
    )


def hits_of(table: FeatureTable, output: OutputSpec) -> FeatureTable:
    """What a job output holds: the features passing its ``thresholds`` (all without)."""
    if not output.thresholds:
        return table
    found = [parse_threshold(t) for t in output.thresholds]
    return apply_thresholds(table, found, strict=False)


def map_output(uri: str, fmt: str | None = None) -> bool:
    """Whether the command-line ``--threshold`` applies to this output: map layers (GeoJSON,
    GeoParquet) hold the hits; a CSV table lists every feature with all its scores."""
    from tilerunner.outputs import output_format

    return output_format(uri, fmt) != "csv"
