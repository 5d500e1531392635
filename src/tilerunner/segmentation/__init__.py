"""Segmentation results after the tiles: class polygons from a finished class-id raster.

:func:`vectorize` turns a class raster (the COG a segment job writes, or any one-band integer
raster) into one polygon per connected region of each class, window by window, as GeoParquet or
GeoJSON. It is defined in :mod:`tilerunner.segmentation.class_polygons`, so the name
``tilerunner.segmentation.vectorize`` is the function alone, never a submodule.
"""

from tilerunner.segmentation.class_polygons import ClassVectors, VectorSummary, vectorize

__all__ = ["ClassVectors", "VectorSummary", "vectorize"]
