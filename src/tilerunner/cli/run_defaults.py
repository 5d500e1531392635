"""Defaults of ``tilerunner run`` shared by its modules, kept free of GDAL's import."""

__all__ = ["READERS"]

#: Reader threads per worker when neither ``--readers`` nor the image's distance chooses
#: (:data:`tilerunner.imagery.latency.READERS`; repeated here so that ``--help`` imports no
#: GDAL, and a test checks that the two agree).
READERS = 2
