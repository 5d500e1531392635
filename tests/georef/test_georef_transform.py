from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from pyproj import Transformer
from rasterio.control import GroundControlPoint
from rasterio.rpc import RPC

from tilerunner.errors import InvalidRequestError
from tilerunner.georef import Georeferencer, signed_area, web_mercator_tile_bounds

SAMPLES = {
    "RGB.byte.tif": 32618,
    "OSBS_029.tif": 32617,
    "cogeo.tif": 3857,
    "test_tiled.tif": 28992,
}


def _open(path: Path | str) -> Georeferencer:
    georef = Georeferencer.open(str(path))
    assert georef is not None
    return georef


@pytest.mark.parametrize("name", SAMPLES)
def test_round_trip_pixel_lonlat_pixel(data_dir: Path, name: str) -> None:
    georef = _open(data_dir / name)
    rng = np.random.default_rng(3)
    cols = rng.uniform(-10, 1010, 500)
    rows = rng.uniform(-10, 1010, 500)
    lon, lat = georef.pixel_to_lonlat(cols, rows)
    assert np.all(np.abs(lon) <= 180) and np.all(np.abs(lat) <= 90)
    back_cols, back_rows = georef.lonlat_to_pixel(lon, lat)
    np.testing.assert_allclose(back_cols, cols, atol=1e-6, rtol=0)
    np.testing.assert_allclose(back_rows, rows, atol=1e-6, rtol=0)


@pytest.mark.parametrize(("name", "epsg"), SAMPLES.items())
def test_corners_match_rasterio_and_pyproj(data_dir: Path, name: str, epsg: int) -> None:
    georef = _open(data_dir / name)
    with rasterio.open(data_dir / name) as ds:
        assert ds.crs.to_epsg() == epsg
        rows = [0, 0, ds.height, ds.height, 10]
        cols = [0, ds.width, ds.width, 0, 17]
        xs, ys = ds.xy(rows, cols, offset="ul")
        to_lonlat = Transformer.from_crs(ds.crs.to_wkt(), "EPSG:4326", always_xy=True)
    want_lon, want_lat = to_lonlat.transform(xs, ys)
    got_x, got_y = georef.pixel_to_crs(np.array(cols, float), np.array(rows, float))
    np.testing.assert_allclose(got_x, xs, rtol=0, atol=1e-6)
    np.testing.assert_allclose(got_y, ys, rtol=0, atol=1e-6)
    lon, lat = georef.pixel_to_lonlat(np.array(cols, float), np.array(rows, float))
    np.testing.assert_allclose(lon, want_lon, rtol=0, atol=1e-9)
    np.testing.assert_allclose(lat, want_lat, rtol=0, atol=1e-9)


@pytest.mark.parametrize("name", SAMPLES)
def test_box_rings_are_closed_and_counter_clockwise(data_dir: Path, name: str) -> None:
    georef = _open(data_dir / name)
    boxes = np.array([[0, 0, 10, 10], [100.5, 20.25, 180, 60], [5, 300, 6, 301]], dtype=float)
    for crs in ("lonlat", "image"):
        rings = georef.box_rings(boxes, crs=crs)
        assert rings.shape == (3, 5, 2)
        np.testing.assert_array_equal(rings[:, 0], rings[:, -1])
        assert np.all(signed_area(rings) > 0)
    rings = georef.box_rings(boxes)
    lon, lat = georef.pixel_to_lonlat(boxes[:, 0], boxes[:, 1])  # top-left corner is a vertex
    assert all(
        np.isclose(rings[i, :, 0], lon[i]).any() and np.isclose(rings[i, :, 1], lat[i]).any()
        for i in range(3)
    )


def test_orientation_fixed_for_south_up_image() -> None:
    # A south-up transform makes the naive corner order counter-clockwise already;
    # the ring must stay counter-clockwise rather than be flipped blindly.
    north_up = Georeferencer.from_affine((10, 0, 500000, 0, -10, 6000000), "EPSG:32633")
    south_up = Georeferencer.from_affine((10, 0, 500000, 0, 10, 5990000), "EPSG:32633")
    box = np.array([[0.0, 0.0, 100.0, 50.0]])
    for georef in (north_up, south_up):
        assert signed_area(georef.box_rings(box))[0] > 0


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_rpc_image(tmp_path: Path) -> None:
    # Linear RPCs: lon = 20 + (sample - 500) / 500 * 0.05 and lat = 10 - (line - 500) / 500 * 0.05,
    # with (line, sample) at pixel centres, i.e. pixel corner coordinate + 0.5.
    zero = [0.0] * 20
    line_num, samp_num, den = list(zero), list(zero), list(zero)
    line_num[2], samp_num[1], den[0] = -1.0, 1.0, 1.0
    rpcs = RPC(
        height_off=0, height_scale=100, lat_off=10.0, lat_scale=0.05, long_off=20.0,
        long_scale=0.05, line_off=500, line_scale=500, samp_off=500, samp_scale=500,
        line_num_coeff=line_num, line_den_coeff=den, samp_num_coeff=samp_num, samp_den_coeff=den,
    )  # fmt: skip
    path = tmp_path / "rpc.tif"
    with rasterio.open(
        path, "w", driver="GTiff", width=1000, height=1000, count=1, dtype="uint8"
    ) as d:
        d.rpcs = rpcs
    georef = _open(path)
    cols = np.array([0.0, 250.0, 1000.0])
    rows = np.array([0.0, 750.0, 1000.0])
    lon, lat = georef.pixel_to_lonlat(cols, rows)
    np.testing.assert_allclose(lon, 20 + (cols - 0.5 - 500) / 500 * 0.05, atol=1e-7)
    np.testing.assert_allclose(lat, 10 - (rows - 0.5 - 500) / 500 * 0.05, atol=1e-7)
    back_cols, back_rows = georef.lonlat_to_pixel(lon, lat)
    np.testing.assert_allclose(back_cols, cols, atol=1e-6)
    np.testing.assert_allclose(back_rows, rows, atol=1e-6)
    assert signed_area(georef.box_rings(np.array([[10.0, 10.0, 50.0, 30.0]])))[0] > 0


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_gcp_image(tmp_path: Path) -> None:
    # GCPs taken from an exact affine: a first-order GCP fit must reproduce it.
    truth = Affine(0.001, 0.0, 4.0, 0.0, -0.001, 52.0)
    corners = [(0, 0), (200, 0), (200, 100), (0, 100), (100, 50)]
    gcps = [
        GroundControlPoint(row=r, col=c, x=(truth @ (c, r))[0], y=(truth @ (c, r))[1])
        for c, r in corners
    ]
    path = tmp_path / "gcp.tif"
    with rasterio.open(
        path, "w", driver="GTiff", width=200, height=100, count=1, dtype="uint8"
    ) as d:
        d.gcps = (gcps, rasterio.CRS.from_epsg(4326))
    georef = _open(path)
    lon, lat = georef.pixel_to_lonlat(np.array([0.0, 150.0]), np.array([0.0, 25.0]))
    np.testing.assert_allclose(lon, [4.0, 4.15], atol=1e-9)
    np.testing.assert_allclose(lat, [52.0, 51.975], atol=1e-9)
    rings = georef.box_rings(np.array([[0.0, 0.0, 20.0, 10.0]]))
    assert signed_area(rings)[0] > 0
    np.testing.assert_allclose(rings[0].min(axis=0), [4.0, 51.99], atol=1e-9)


def test_photo_without_georeferencing_gives_none(tmp_path: Path) -> None:
    from PIL import Image

    Image.fromarray(np.zeros((40, 60, 3), dtype=np.uint8)).save(tmp_path / "photo.jpg")
    assert Georeferencer.open(str(tmp_path / "photo.jpg")) is None


def test_web_mercator_tile_bounds_and_tile_georeferencer() -> None:
    west, south, east, north = web_mercator_tile_bounds(0, 0, 0)
    assert (west, east) == (-180.0, 180.0)
    assert north == pytest.approx(85.0511287798) and south == pytest.approx(-85.0511287798)
    bounds = web_mercator_tile_bounds(18, 74890, 100340)
    georef = Georeferencer.for_web_mercator_tile(18, 74890, 100340, size=256)
    lon, lat = georef.pixel_to_lonlat(np.array([0.0, 256.0]), np.array([256.0, 0.0]))
    np.testing.assert_allclose([lon[0], lat[0], lon[1], lat[1]], bounds, atol=1e-9)
    with pytest.raises(InvalidRequestError, match="does not exist"):
        web_mercator_tile_bounds(2, 4, 0)
