"""What planning records about an image rebuilds the same georeferencer, with no file opened.

Real rasters (tests/data: affine UTM and Web Mercator), an RPC-only and a GCP-only file: the
record survives a JSON round trip exactly, and :meth:`Georeferencer.from_record` maps pixels to
the same coordinates, bit for bit, as :meth:`Georeferencer.open` on the file.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from tr_georef import make_gcp_raster, make_rpc_raster

from tilerunner.georef import Georeferencer, ImageGeoref
from tilerunner.imagery import probe, read_geo_metadata

BOXES = np.array([[0, 0, 10, 10], [100.5, 20.25, 180, 60], [5, 300, 6, 301]], dtype=float)


def _rpc_file(tmp_path: Path) -> Path:
    return make_rpc_raster(tmp_path / "rpc.tif")


def _gcp_file(tmp_path: Path) -> Path:
    return make_gcp_raster(tmp_path / "gcp.tif")


def _record(path: Path) -> ImageGeoref:
    """What the planner records (probe, plus RPCs/GCPs when there is no affine transform)."""
    info = probe(str(path))
    affine = info.transform is not None and info.crs_wkt is not None
    meta = None if affine else read_geo_metadata(str(path))
    record = ImageGeoref.from_header(info, meta)
    return ImageGeoref.from_json(json.loads(json.dumps(record.to_json())))


@pytest.fixture(params=["OSBS_029.tif", "cogeo.tif", "rpc", "gcp"])
def raster(request: pytest.FixtureRequest, shared_data: Path, tmp_path: Path) -> Path:
    name = str(request.param)
    if name == "rpc":
        return _rpc_file(tmp_path)
    if name == "gcp":
        return _gcp_file(tmp_path)
    return shared_data / name


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_record_round_trips_and_maps_pixels_like_the_file(raster: Path, tmp_path: Path) -> None:
    record = _record(raster)
    assert ImageGeoref.from_json(json.loads(json.dumps(record.to_json()))) == record
    with rasterio.open(raster) as ds:
        assert (record.width, record.height, record.count) == (ds.width, ds.height, ds.count)
        assert record.dtype == ds.dtypes[0]
    want = Georeferencer.open(str(raster))
    assert want is not None

    moved = tmp_path / "gone" / raster.name
    moved.parent.mkdir()
    moved.write_bytes(raster.read_bytes())
    record = _record(moved)
    moved.unlink()  # from here on nothing can be read from the file
    got = Georeferencer.from_record(record)

    assert got is not None
    np.testing.assert_array_equal(got.box_rings(BOXES), want.box_rings(BOXES))
    np.testing.assert_array_equal(
        got.box_rings(BOXES, crs="image"), want.box_rings(BOXES, crs="image")
    )
    assert got.crs_wkt == want.crs_wkt


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_each_kind_of_georeferencing_is_recorded(shared_data: Path, tmp_path: Path) -> None:
    affine = _record(shared_data / "OSBS_029.tif")
    assert affine.has_affine and affine.rpcs is None and affine.gcps == ()
    rpc = _record(_rpc_file(tmp_path))
    assert not rpc.has_affine and rpc.rpcs is not None and rpc.rpcs["lat_off"] == 10.0
    assert rpc.dtype == "uint16"
    gcp = _record(_gcp_file(tmp_path))
    assert len(gcp.gcps) == 5 and gcp.gcps[2] == (100.0, 200.0, 4.2, 51.9, 100.0)
    assert gcp.gcp_crs_wkt is not None and "4326" in gcp.gcp_crs_wkt


def test_a_photo_records_its_size_and_no_georeferencing(tmp_path: Path) -> None:
    from PIL import Image

    Image.fromarray(np.zeros((40, 60, 3), dtype=np.uint8)).save(tmp_path / "photo.jpg")
    record = _record(tmp_path / "photo.jpg")
    assert (record.width, record.height, record.count, record.dtype) == (60, 40, 3, "uint8")
    assert Georeferencer.from_record(record) is None


def test_a_malformed_record_says_to_plan_again() -> None:
    from tilerunner.errors import StoreError

    with pytest.raises(StoreError, match="plan the job again"):
        ImageGeoref.from_json({"width": 3})
