"""Georeferencing: pixel boxes to image CRS and to WGS 84 lon/lat, vectorised.

Pure computation apart from :meth:`Georeferencer.open`, which reads an image's header through
:mod:`tilerunner.imagery`.
"""

from tilerunner.georef.transform import Georeferencer, signed_area, web_mercator_tile_bounds

__all__ = ["Georeferencer", "signed_area", "web_mercator_tile_bounds"]
