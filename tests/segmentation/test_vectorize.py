"""Class polygons from a class raster, window by window, against one whole-raster ``shapes``.

The raster is seeded noise over coarse blobs (so polygons have holes, touch diagonally and
cross every seam) plus hand-placed shapes on the seams: a ring centred on a window corner and
two pixels meeting only at a window corner.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
import rasterio
import shapely
from affine import Affine
from rasterio.features import shapes
from shapely.geometry import shape

from tilerunner.errors import InvalidRequestError
from tilerunner.segmentation import vectorize

# classes.tif without a CRS is the point of several tests
pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")

BLOCK = 16
CLASSES = ["background", "water", "forest", "field"]


def _class_raster(seed: int = 7, height: int = 150, width: int = 200) -> np.ndarray:
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 4, size=(height // 10 + 1, width // 10 + 1))
    data = np.kron(coarse, np.ones((10, 10), dtype=np.int64))[:height, :width]
    noise = rng.random((height, width)) < 0.08
    data[noise] = rng.integers(0, 4, size=int(noise.sum()))
    # a ring of class 2 around a class-1 core, centred on the corner of four 32 px windows
    data[22:43, 22:43] = 0
    data[24:41, 24:41] = 2
    data[28:37, 28:37] = 1
    data[31:34, 31:34] = 3
    # two class-3 pixels that meet only at the corner of four 16 px windows
    data[78:82, 78:82] = 0
    data[79, 79] = 3
    data[80, 80] = 3
    return data.astype(np.uint8)


@pytest.fixture
def class_tif(tmp_path: Path) -> Callable[..., str]:
    def make(data: np.ndarray, **profile: Any) -> str:
        path = tmp_path / "classes.tif"
        meta: dict[str, Any] = {
            "driver": "GTiff",
            "width": data.shape[1],
            "height": data.shape[0],
            "count": 1,
            "dtype": data.dtype.name,
            "tiled": True,
            "blockxsize": BLOCK,
            "blockysize": BLOCK,
        }
        meta.update(profile)
        with rasterio.open(path, "w", **meta) as dst:
            dst.write(data, 1)
        return str(path)

    return make


def _whole(data: np.ndarray, skip: set[int]) -> dict[int, list[shapely.Polygon]]:
    mask = ~np.isin(data, list(skip))
    out: dict[int, list[shapely.Polygon]] = {}
    for geometry, value in shapes(data, mask=mask, connectivity=4):
        out.setdefault(int(value), []).append(shape(geometry))
    return out


def _read_parquet(path: Path) -> tuple[dict[int, list[shapely.Polygon]], Any]:
    table = pq.read_table(path)
    geoms = shapely.from_wkb(table.column("geometry").to_pylist())
    out: dict[int, list[shapely.Polygon]] = {}
    for cid, geom in zip(table.column("class_id").to_pylist(), geoms, strict=True):
        out.setdefault(cid, []).append(geom)
    return out, table


def _same_polygons(got: list[shapely.Polygon], want: list[shapely.Polygon]) -> None:
    assert len(got) == len(want)
    assert sum(g.area for g in got) == pytest.approx(sum(w.area for w in want))

    def key(p: shapely.Polygon) -> tuple[float, ...]:
        return (p.area, *p.bounds)

    for g, w in zip(sorted(got, key=key), sorted(want, key=key), strict=True):
        assert g.equals(w), (g.wkt, w.wkt)


@pytest.mark.parametrize("window", [16, 32, 48, 100, 4096])
def test_windows_give_the_polygons_of_one_whole_raster_call(
    class_tif: Callable[..., str], tmp_path: Path, window: int
) -> None:
    data = _class_raster()
    out = tmp_path / "polygons.parquet"
    summary = vectorize(class_tif(data), str(out), classes=CLASSES, crs="image", window=window)
    got, table = _read_parquet(out)
    want = _whole(data, {0})
    assert sorted(got) == sorted(want) == [1, 2, 3]
    for cid in want:
        _same_polygons(got[cid], want[cid])
    assert summary.area_unit == "px"
    by_class = {c.class_id: c for c in summary.classes}
    for cid in want:
        assert by_class[cid].label == CLASSES[cid]
        assert by_class[cid].polygons == len(want[cid])
        assert by_class[cid].pixel_count == int((data == cid).sum())
    assert table.column("pixel_count").to_pylist() == [round(g.area) for g in shapely.from_wkb(
        table.column("geometry").to_pylist())]  # fmt: skip


def test_holes_and_corner_touches_survive_the_seams(
    class_tif: Callable[..., str], tmp_path: Path
) -> None:
    data = _class_raster()
    out = tmp_path / "polygons.parquet"
    vectorize(class_tif(data), str(out), crs="image", window=16)
    got, _ = _read_parquet(out)
    ring = [p for p in got[2] if p.bounds == (24.0, 24.0, 41.0, 41.0)]
    assert len(ring) == 1 and len(ring[0].interiors) == 1  # one polygon, its hole kept
    assert ring[0].area == 17 * 17 - 9 * 9
    corner = [p for p in got[3] if p.bounds in ((79.0, 79.0, 80.0, 80.0), (80.0, 80.0, 81.0, 81.0))]
    assert len(corner) == 2  # 4-connected: pixels meeting at a corner stay apart


def test_lonlat_geojson_with_square_metres(class_tif: Callable[..., str], tmp_path: Path) -> None:
    data = _class_raster()
    transform = Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 6000000.0)
    path = class_tif(data, crs="EPSG:32633", transform=transform, nodata=255)
    out = tmp_path / "polygons.geojson"
    summary = vectorize(path, str(out), classes=CLASSES, skip_classes=(), window=32, image="a.tif")
    doc = json.loads(out.read_text())
    features = doc["features"]
    assert summary.polygons == len(features) and summary.area_unit == "m2"
    assert {f["properties"]["class_id"] for f in features} == {0, 1, 2, 3}  # nothing skipped
    for feature in features:
        props = feature["properties"]
        assert props["area"] == pytest.approx(props["pixel_count"] * 100.0)
        assert props["area_unit"] == "m2" and props["image"] == "a.tif"
        geom = shape(feature["geometry"])
        assert geom.exterior.is_ccw  # RFC 7946 winding
        lon, lat = geom.exterior.coords[0]
        assert 14.0 < lon < 16.0 and 53.0 < lat < 55.0  # UTM 33N, 6000 km north
    assert sum(f["properties"]["pixel_count"] for f in features) == data.size


def test_geographic_crs_gives_geodesic_square_metres(
    class_tif: Callable[..., str], tmp_path: Path
) -> None:
    data = np.zeros((40, 40), dtype=np.uint8)
    data[:20, :] = 1  # a 40 x 20 pixel strip of 0.001 degree pixels at the equator
    path = class_tif(data, crs="EPSG:4326", transform=Affine(0.001, 0, 0.0, 0, -0.001, 0.01))
    out = tmp_path / "polygons.parquet"
    summary = vectorize(path, str(out), window=16)
    (strip,) = summary.classes
    metres = 0.001 * 111_320  # about 111 m per 0.001 degree at the equator
    assert strip.polygons == 1 and strip.pixel_count == 800
    assert strip.area == pytest.approx(800 * metres * metres, rel=0.01)
    meta = json.loads(pq.read_schema(out).metadata[b"geo"])
    assert meta["columns"]["geometry"]["crs"]["id"]["code"] == "CRS84"


def test_image_crs_keeps_the_raster_crs(class_tif: Callable[..., str], tmp_path: Path) -> None:
    data = _class_raster()
    path = class_tif(data, crs="EPSG:32633", transform=Affine(10, 0, 500000, 0, -10, 6000000))
    out = tmp_path / "polygons.parquet"
    vectorize(path, str(out), crs="image", window=64)
    got, _ = _read_parquet(out)
    xmin, ymin, xmax, ymax = shapely.total_bounds(np.concatenate([got[c] for c in got]))
    assert 500000 <= xmin < xmax <= 502000 and 5998500 <= ymin < ymax <= 6000000
    meta = json.loads(pq.read_schema(out).metadata[b"geo"])
    assert meta["columns"]["geometry"]["crs"]["id"]["code"] == 32633


def test_wrong_inputs_fail_before_any_pixel_is_read(
    class_tif: Callable[..., str], tmp_path: Path
) -> None:
    data = _class_raster()
    plain = class_tif(data)  # no CRS
    with pytest.raises(InvalidRequestError, match="crs='image'"):
        vectorize(plain, str(tmp_path / "a.parquet"))
    with pytest.raises(InvalidRequestError, match=r"GeoParquet or GeoJSON, not csv"):
        vectorize(plain, str(tmp_path / "a.csv"), crs="image")
    with pytest.raises(InvalidRequestError, match="RFC 7946"):
        vectorize(plain, str(tmp_path / "a.geojson"), crs="image")
    with pytest.raises(InvalidRequestError, match="window must be"):
        vectorize(plain, str(tmp_path / "a.parquet"), crs="image", window=0)
    floats = class_tif(data.astype(np.float32))
    with pytest.raises(InvalidRequestError, match="integer class ids"):
        vectorize(floats, str(tmp_path / "a.parquet"), crs="image")
    assert not list(tmp_path.glob("a.*"))  # nothing written


def test_striped_raster_is_read_in_bounded_windows(
    class_tif: Callable[..., str], tmp_path: Path
) -> None:
    data = _class_raster()
    path = class_tif(data, tiled=False, blockxsize=None, blockysize=None)
    with rasterio.open(path) as src:
        assert src.block_shapes[0][1] == data.shape[1]  # one full-width strip per block
    out = tmp_path / "polygons.parquet"
    vectorize(path, str(out), crs="image", window=40)
    got, _ = _read_parquet(out)
    want = _whole(data, {0})
    for cid in want:
        _same_polygons(got[cid], want[cid])
