"""Outputs: the columnar feature table and its GeoJSON, GeoParquet, CSV and preview writers.

:func:`writer_for` picks the format from the file extension (:func:`output_format`);
:func:`check_output` is called when a job is validated, so a bad output name or path fails
before any work is done. The names below are imported on first use (PEP 562): checking an
output imports no writer, and writing one imports only its own (pyarrow for GeoParquet,
shapely for CSV, Pillow and GDAL for the preview).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tilerunner.lazy import exports_on_use

if TYPE_CHECKING:
    from tilerunner.outputs.csv import CSV_COLUMNS, write_csv
    from tilerunner.outputs.geojson import geojson_chunks, geojson_features, write_geojson
    from tilerunner.outputs.geoparquet import write_geoparquet
    from tilerunner.outputs.preview import write_preview
    from tilerunner.outputs.table import FeatureTable
    from tilerunner.outputs.writers import (
        FORMATS,
        Writer,
        atomic_path,
        check_output,
        check_writable,
        output_format,
        write_output,
        writer_for,
    )

__all__ = [
    "CSV_COLUMNS",
    "FORMATS",
    "FeatureTable",
    "Writer",
    "atomic_path",
    "check_output",
    "check_writable",
    "geojson_chunks",
    "geojson_features",
    "output_format",
    "write_csv",
    "write_geojson",
    "write_geoparquet",
    "write_output",
    "write_preview",
    "writer_for",
]

#: Where each name lives.
_HOMES = {
    "CSV_COLUMNS": "csv",
    "write_csv": "csv",
    "geojson_chunks": "geojson",
    "geojson_features": "geojson",
    "write_geojson": "geojson",
    "write_geoparquet": "geoparquet",
    "write_preview": "preview",
    "FeatureTable": "table",
    **dict.fromkeys(
        ("FORMATS", "Writer", "atomic_path", "check_output", "check_writable", "output_format",
         "write_output", "writer_for"),
        "writers",
    ),
}  # fmt: skip


__getattr__ = exports_on_use(__name__, _HOMES)
