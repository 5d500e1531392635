"""Pure post-processing of detections: tile ownership and duplicate removal.

:mod:`~tilerunner.merging.ownership` keeps what each tile owns (centre in its core), which
removes every duplicate that tiling creates without looking across tiles;
:mod:`~tilerunner.merging.suppression` removes the model's own duplicates (NMS, soft-NMS, NMM).
Nothing here does I/O.
"""

from tilerunner.merging.ownership import as_boxes, clip_boxes, owned_mask, tile_to_image
from tilerunner.merging.suppression import (
    METHODS,
    METRICS,
    Merged,
    MergeParams,
    Method,
    Metric,
    merge,
)

__all__ = [
    "METHODS",
    "METRICS",
    "MergeParams",
    "Merged",
    "Method",
    "Metric",
    "as_boxes",
    "clip_boxes",
    "merge",
    "owned_mask",
    "tile_to_image",
]
