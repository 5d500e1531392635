"""Small rasters georeferenced by RPCs only or by GCPs only (GDAL writes them; no affine)."""

from __future__ import annotations

from pathlib import Path

import rasterio
from rasterio.control import GroundControlPoint
from rasterio.rpc import RPC


def make_rpc_raster(path: Path, *, width: int = 1000, height: int = 1000) -> Path:
    """Linear RPCs around (20 E, 10 N): lon = 20 + (sample - 500) / 500 * 0.05 and
    lat = 10 - (line - 500) / 500 * 0.05, at pixel centres; uint16 pixels, all zero."""
    zero = [0.0] * 20
    line_num, samp_num, den = list(zero), list(zero), list(zero)
    line_num[2], samp_num[1], den[0] = -1.0, 1.0, 1.0
    rpcs = RPC(
        height_off=0, height_scale=100, lat_off=10.0, lat_scale=0.05, long_off=20.0,
        long_scale=0.05, line_off=500, line_scale=500, samp_off=500, samp_scale=500,
        line_num_coeff=line_num, line_den_coeff=den, samp_num_coeff=samp_num, samp_den_coeff=den,
    )  # fmt: skip
    with rasterio.open(
        path, "w", driver="GTiff", width=width, height=height, count=1, dtype="uint16"
    ) as dst:
        dst.rpcs = rpcs
    return path


def make_gcp_raster(path: Path, *, width: int = 200, height: int = 100) -> Path:
    """Five GCPs in WGS 84 taken from an exact affine (0.001 deg per pixel from 4 E, 52 N),
    with heights; two uint8 bands, all zero."""
    corners = [(0, 0), (width, 0), (width, height), (0, height), (width // 2, height // 2)]
    gcps = [
        GroundControlPoint(row=r, col=c, x=4.0 + 0.001 * c, y=52.0 - 0.001 * r, z=float(r))
        for c, r in corners
    ]
    with rasterio.open(
        path, "w", driver="GTiff", width=width, height=height, count=2, dtype="uint8"
    ) as dst:
        dst.gcps = (gcps, rasterio.CRS.from_epsg(4326))
    return path
