"""Real sample rasters and a small factory for generated ones."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from affine import Affine


@pytest.fixture
def make_raster(tmp_path: Path) -> Callable[..., str]:
    """Write ``array`` ([C, H, W]) as a GeoTIFF in tmp_path and return its path."""

    def make(array: np.ndarray[Any, Any], name: str = "gen.tif", **profile: Any) -> str:
        path = tmp_path / name
        count, height, width = array.shape
        meta: dict[str, Any] = {
            "driver": "GTiff",
            "width": width,
            "height": height,
            "count": count,
            "dtype": array.dtype.name,
            "crs": "EPSG:32633",
            "transform": Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 6000000.0),
        }
        meta.update(profile)
        with rasterio.open(path, "w", **meta) as dst:
            dst.write(array)
        return str(path)

    return make
