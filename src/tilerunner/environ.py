"""``TILERUNNER_*`` environment variables, read without the settings model.

:class:`~tilerunner.settings.Settings` validates every setting, but its import (pydantic) is
about a tenth of a second of a command's start. The few values a command uses before that are
read here, by the same rule as the settings (the name in any case): GDAL's block cache, set
before any thread may read a block, and the S3 endpoint that ``run`` opens its image with while
its settings load. Settings read their variables through :func:`tilerunner_variables` too, so
both always see the same values; what the settings then reject stops the command as before.
"""

from __future__ import annotations

import os

__all__ = ["DEFAULT_GDAL_CACHE_MB", "PREFIX", "tilerunner_variables"]

PREFIX = "TILERUNNER_"

#: GDAL's block cache per process (MB) unless ``TILERUNNER_GDAL_CACHE_MB`` or GDAL_CACHEMAX
#: says otherwise (:attr:`~tilerunner.settings.Settings.gdal_cache_mb`).
DEFAULT_GDAL_CACHE_MB = 256


def tilerunner_variables() -> dict[str, str]:
    """The ``TILERUNNER_*`` variables by setting name: the rest of the name, in lower case."""
    return {
        name[len(PREFIX) :].lower(): value
        for name, value in os.environ.items()
        if name[: len(PREFIX)].upper() == PREFIX
    }
