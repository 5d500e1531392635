"""Segmentation results after the tiles: class polygons from a finished class-id raster.

:func:`vectorize` turns a class raster (the COG a segment job writes, or any one-band integer
raster) into one polygon per connected region of each class, window by window, as GeoParquet or
GeoJSON.
"""

from tilerunner.segmentation.vectorize import ClassVectors, VectorSummary, vectorize

__all__ = ["ClassVectors", "VectorSummary", "vectorize"]
