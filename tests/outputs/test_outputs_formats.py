from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import shapely
from pyproj import CRS

from tilerunner.errors import InvalidRequestError
from tilerunner.georef import Georeferencer, signed_area
from tilerunner.outputs import CSV_COLUMNS, FeatureTable, writer_for


def _ring(table: FeatureTable, i: int) -> np.ndarray:
    ring = table.geometry[i]
    assert ring is not None
    return ring


@pytest.fixture
def both(trees: FeatureTable, photo: FeatureTable) -> FeatureTable:
    return FeatureTable.concat([trees, photo])


def test_table_concat_and_length_checks(trees: FeatureTable, photo: FeatureTable) -> None:
    both = FeatureTable.concat([trees, photo])
    assert len(both) == 63 and both.label[-1] == "fox"
    assert both.pixel_bbox.shape == (63, 4) and both.class_id.dtype == np.int64
    assert both.has_geometry().sum() == 61
    with pytest.raises(InvalidRequestError, match="differ in length"):
        FeatureTable(["a"], [], np.array([1]), np.array([0.5]), np.array([[0.0, 0, 1, 1]]), [None])
    with pytest.raises(InvalidRequestError, match="different extra columns"):
        FeatureTable.concat([trees, FeatureTable.empty()])
    assert len(FeatureTable.concat([])) == 0


def test_geojson_is_rfc7946(tmp_path: Path, both: FeatureTable) -> None:
    out = tmp_path / "result.geojson"
    writer_for(str(out))(both, str(out))
    doc = json.loads(out.read_text())
    assert doc["type"] == "FeatureCollection"
    features = doc["features"]
    assert len(features) == 63
    first = features[0]
    assert first["type"] == "Feature"
    assert first["geometry"]["type"] == "Polygon"
    ring = np.array(first["geometry"]["coordinates"][0])
    assert ring.shape == (5, 2)
    np.testing.assert_array_equal(ring[0], ring[-1])
    assert -82 < ring[0, 0] < -81 and 29 < ring[0, 1] < 30  # Florida, lon first
    rings = np.array([f["geometry"]["coordinates"][0] for f in features[:61]])
    assert np.all(signed_area(rings) > 0)  # counter-clockwise exterior rings
    props = first["properties"]
    assert props == {
        "score": pytest.approx(0.3),
        "label": "Tree",
        "class_id": 0,
        "image": "OSBS_029.tif",
        "pixel_bbox": [203.0, 67.0, 227.0, 90.0],
        "z": 18,
        "scores": [0.1, 0.9],
    }
    fox = features[-1]
    assert fox["geometry"] is None
    assert fox["properties"]["pixel_bbox"] == [200.0, 5.0, 260.0, 60.0]
    assert fox["properties"]["label"] == "fox" and fox["properties"]["class_id"] == 5


def test_geojson_refuses_projected_crs(tmp_path: Path, trees: FeatureTable) -> None:
    out = tmp_path / "x.geojson"
    with pytest.raises(InvalidRequestError, match="RFC 7946"):
        writer_for(str(out))(trees, str(out), CRS.from_epsg(32617).to_wkt())
    assert not out.exists()


def test_geoparquet_metadata_and_geometry(tmp_path: Path, both: FeatureTable) -> None:
    out = tmp_path / "result.parquet"
    writer_for(str(out))(both, str(out))
    table = pq.read_table(out)
    geo = json.loads(table.schema.metadata[b"geo"])
    assert geo["version"] == "1.1.0" and geo["primary_column"] == "geometry"
    column = geo["columns"]["geometry"]
    assert column["encoding"] == "WKB" and column["geometry_types"] == ["Polygon"]
    assert column["crs"]["id"] == {"authority": "OGC", "code": "CRS84"}
    assert column["covering"]["bbox"]["xmin"] == ["bbox", "xmin"]
    assert table.column_names[:5] == ["image", "label", "class_id", "score", "pixel_bbox"]
    geoms = shapely.from_wkb(table.column("geometry").to_numpy(zero_copy_only=False))
    assert geoms[61] is None and geoms[62] is None
    np.testing.assert_allclose(
        shapely.get_coordinates(geoms[0]), _ring(both, 0), rtol=0, atol=1e-12
    )
    xmin = table.column("bbox").combine_chunks().field("xmin").to_numpy(zero_copy_only=False)
    assert xmin[0] == pytest.approx(np.min(_ring(both, 0)[:, 0]))
    assert column["bbox"][0] == pytest.approx(min(np.min(_ring(both, i)[:, 0]) for i in range(61)))
    assert table.column("pixel_bbox").to_pylist()[62] == [200.0, 5.0, 260.0, 60.0]
    assert table.column("z").to_pylist()[60:] == [18, None, None]


def test_geoparquet_in_image_crs(tmp_path: Path, data_dir: Path, trees: FeatureTable) -> None:
    georef = Georeferencer.open(str(data_dir / "OSBS_029.tif"))
    assert georef is not None
    rings = georef.box_rings(trees.pixel_bbox, crs="image")
    table = FeatureTable(
        trees.image, trees.label, trees.class_id, trees.score, trees.pixel_bbox, list(rings)
    )
    out = tmp_path / "utm.geoparquet"
    writer_for(str(out))(table, str(out), georef.crs_wkt)
    geo = json.loads(pq.read_schema(out).metadata[b"geo"])
    assert CRS.from_json_dict(geo["columns"]["geometry"]["crs"]).to_epsg() == 32617
    assert 404211 < geo["columns"]["geometry"]["bbox"][0] < 404252


def test_csv_columns_and_rows(tmp_path: Path, both: FeatureTable) -> None:
    out = tmp_path / "result.csv"
    writer_for(str(out))(both, str(out))
    with open(out, newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == [*CSV_COLUMNS, "z", "scores"]
    assert len(rows) == 64
    first = dict(zip(rows[0], rows[1], strict=True))
    assert first["image"] == "OSBS_029.tif" and first["label"] == "Tree"
    assert [float(first[k]) for k in ("x0", "y0", "x1", "y1")] == [203, 67, 227, 90]
    polygon = shapely.from_wkt(first["wkt"])
    np.testing.assert_allclose(shapely.get_coordinates(polygon), _ring(both, 0), atol=1e-12)
    assert json.loads(first["scores"]) == [0.1, 0.9]
    last = dict(zip(rows[0], rows[-1], strict=True))
    assert last["wkt"] == "" and last["label"] == "fox" and last["class_id"] == "5"


def test_unknown_extension_lists_formats(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequestError) as info:
        writer_for(str(tmp_path / "result.shp"))
    message = str(info.value)
    assert "'.shp'" in message
    for ext in (".geojson", ".parquet", ".csv"):
        assert ext in message
    with pytest.raises(InvalidRequestError, match="geoparquet"):
        writer_for("out.dat", fmt="geoparqet")


def test_explicit_format_overrides_extension(tmp_path: Path, photo: FeatureTable) -> None:
    out = tmp_path / "result.txt"
    writer_for(str(out), fmt="json")(photo, str(out))
    assert json.loads(out.read_text())["type"] == "FeatureCollection"


def test_rings_as_one_array_write_what_a_list_of_rings_writes(
    tmp_path: Path, trees: FeatureTable, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Box rings kept as one [N, 5, 2] array, written in row groups of 7, give the same file
    contents as the same rings in a list written at once; mixed tables concatenate."""
    from dataclasses import replace

    from tilerunner.outputs import geoparquet

    as_array = replace(trees, geometry=np.stack([np.asarray(g) for g in trees.geometry]))
    assert as_array.has_geometry().all()
    listed, grouped = tmp_path / "listed.parquet", tmp_path / "grouped.parquet"
    writer_for(str(listed))(trees, str(listed), None)
    monkeypatch.setattr(geoparquet, "ROW_GROUP", 7)
    writer_for(str(grouped))(as_array, str(grouped), None)
    assert pq.ParquetFile(grouped).metadata.num_row_groups == -(-len(trees) // 7)
    a, b = pq.read_table(listed), pq.read_table(grouped)
    assert a.equals(b)
    assert a.schema.metadata[b"geo"] == b.schema.metadata[b"geo"]
    joined = FeatureTable.concat([as_array, as_array])
    assert isinstance(joined.geometry, np.ndarray) and len(joined) == 2 * len(trees)
    mixed = FeatureTable.concat([as_array, trees])  # an array and a list: a list of rings
    assert isinstance(mixed.geometry, list) and len(mixed.geometry) == 2 * len(trees)
    pairs = zip(mixed.geometry, 2 * list(trees.geometry), strict=True)
    assert all(np.array_equal(m, t) for m, t in pairs)
