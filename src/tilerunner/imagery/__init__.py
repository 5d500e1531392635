"""Imagery: the only place that opens rasters.

:func:`expand_sources` turns files, folders, patterns and URLs into images; :func:`probe` reads an
image's header for planning; :class:`RasterReader` reads tile windows as ``uint8 [H, W, C]`` from
many threads; :class:`GdalEnv` carries the GDAL options (S3 endpoint, range reads) explicitly.
"""

from tilerunner.imagery.gdal_env import GdalEnv
from tilerunner.imagery.reader import (
    BandSpec,
    GeoMetadata,
    ImageInfo,
    RasterReader,
    open_dataset,
    probe,
    read_geo_metadata,
)
from tilerunner.imagery.sources import RASTER_EXTENSIONS, SourceRef, expand_sources

__all__ = [
    "RASTER_EXTENSIONS",
    "BandSpec",
    "GdalEnv",
    "GeoMetadata",
    "ImageInfo",
    "RasterReader",
    "SourceRef",
    "expand_sources",
    "open_dataset",
    "probe",
    "read_geo_metadata",
]
