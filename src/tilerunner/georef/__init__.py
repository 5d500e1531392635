"""Georeferencing: pixel boxes to image CRS and to WGS 84 lon/lat, vectorised.

Pure computation apart from :meth:`Georeferencer.open`, which reads an image's header through
:mod:`tilerunner.imagery`. :class:`ImageGeoref` is what planning records about an image;
:meth:`Georeferencer.from_record` maps pixels from it without reopening the source.
"""

from tilerunner.georef.record import ImageGeoref
from tilerunner.georef.transform import Georeferencer, signed_area, web_mercator_tile_bounds

__all__ = ["Georeferencer", "ImageGeoref", "signed_area", "web_mercator_tile_bounds"]
