"""CSV writer: one row per feature, for spreadsheets and quick scripts.

Columns are ``image, label, class_id, score, x0, y0, x1, y1, wkt`` followed by any extra columns
(``z, x, y`` for XYZ tiles; list-valued extras such as classification ``scores`` are written as
JSON arrays so a cell stays one value). The geometry is WKT in full precision, empty when the
image has no georeferencing. WKT for all features is produced in one vectorised shapely call.
"""

from __future__ import annotations

import csv
import json
from typing import Any

import numpy as np
import shapely

from tilerunner.outputs.table import FeatureTable

__all__ = ["CSV_COLUMNS", "write_csv"]

CSV_COLUMNS = ("image", "label", "class_id", "score", "x0", "y0", "x1", "y1", "wkt")


def _cell(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, list | tuple | dict):
        return json.dumps(value)
    return value


def _wkt(table: FeatureTable) -> list[str]:
    wkt = shapely.to_wkt(table.shapely_geometries(), rounding_precision=-1)
    return ["" if v is None else str(v) for v in wkt]


def write_csv(table: FeatureTable, path: str, crs_wkt: str | None = None) -> None:
    """Write ``table`` to the local file ``path`` (``crs_wkt`` is not recorded in CSV)."""
    del crs_wkt  # CSV has no place for a CRS; the WKT is in whatever CRS the table holds
    wkts = _wkt(table)
    extras = list(table.extra)
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow([*CSV_COLUMNS, *extras])
        boxes = table.pixel_bbox.tolist()
        scores = table.score.tolist()
        class_ids = table.class_id.tolist()
        for i in range(len(table)):
            row = [table.image[i], table.label[i], class_ids[i], scores[i], *boxes[i], wkts[i]]
            row.extend(_cell(table.extra[name][i]) for name in extras)
            writer.writerow(row)
