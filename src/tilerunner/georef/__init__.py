"""Georeferencing: pixel boxes to image CRS and to WGS 84 lon/lat, vectorised.

Pure computation apart from :meth:`Georeferencer.open`, which reads an image's header through
:mod:`tilerunner.imagery`. :class:`ImageGeoref` is what planning records about an image;
:meth:`Georeferencer.from_record` maps pixels from it without reopening the source.

The names of :mod:`tilerunner.georef.transform` are imported on first use: it needs rasterio
and pyproj, which code that only keeps records (the store, ``tilerunner status``) never does.
"""

from typing import TYPE_CHECKING, Any

from tilerunner.georef.record import ImageGeoref

if TYPE_CHECKING:
    from tilerunner.georef.transform import (
        Georeferencer,
        signed_area,
        web_mercator_tile_bounds,
    )

__all__ = ["Georeferencer", "ImageGeoref", "signed_area", "web_mercator_tile_bounds"]

_TRANSFORM = frozenset({"Georeferencer", "signed_area", "web_mercator_tile_bounds"})


def __getattr__(name: str) -> Any:
    if name in _TRANSFORM:
        from tilerunner.georef import transform

        return getattr(transform, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
