"""``check_output``: the one check of an output name and place, made before any work by
``run -o``, ``results -o`` and planning (a job document's ``outputs``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tilerunner.errors import InvalidRequestError, UnknownNameError
from tilerunner.outputs import check_output, output_format, writer_for


@pytest.mark.parametrize(
    ("uri", "fmt", "name"),
    [
        ("out.geojson", None, "geojson"),
        ("OUT.JSON", None, "geojson"),
        ("out.parquet", None, "geoparquet"),
        ("out.geoparquet", None, "geoparquet"),
        ("out.csv", None, "csv"),
        ("s3://bucket/runs/1/out.parquet", None, "geoparquet"),
        ("s3://bucket/out.csv?versionId=1", None, "csv"),
        ("out.txt", "json", "geojson"),
        ("out", "Parquet", "geoparquet"),
    ],
)
def test_format_from_extension_or_name(uri: str, fmt: str | None, name: str) -> None:
    assert output_format(uri, fmt) == name


@pytest.mark.parametrize(
    ("uri", "fmt", "message"),
    [
        ("out.shp", None, "-o out.shp: unknown output format '.shp'; "
         "use .geojson, .parquet or .csv"),
        ("out.geojsn", None, "-o out.geojsn: unknown output format '.geojsn' "
         "(did you mean '.geojson'?); use .geojson, .parquet or .csv"),
        ("results", None, "-o results: no file extension to tell the output format; "
         "end the name in .geojson, .parquet or .csv"),
        ("s3://bucket/out.tif", None, "-o s3://bucket/out.tif: unknown output format '.tif'; "
         "use .geojson, .parquet or .csv"),
        ("out.dat", "geoparqet", "-o out.dat: unknown output format 'geoparqet' "
         "(did you mean 'geoparquet'?); use geojson, geoparquet or csv"),
    ],
)  # fmt: skip
def test_unknown_format_says_what_to_change(uri: str, fmt: str | None, message: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        check_output(uri, fmt, label=f"-o {uri}")
    assert str(info.value) == message
    assert not isinstance(info.value, UnknownNameError)  # a bad request, not a missing thing


def test_default_label_names_the_output() -> None:
    with pytest.raises(InvalidRequestError, match=r"^output 'a\.shp': unknown output format"):
        output_format("a.shp")


def test_the_writer_and_the_check_agree(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequestError) as checked:
        check_output(str(tmp_path / "a.shp"))
    with pytest.raises(InvalidRequestError) as written:
        writer_for(str(tmp_path / "a.shp"))
    assert str(checked.value) == str(written.value)


def test_a_known_format_still_needs_a_writable_place(tmp_path: Path) -> None:
    assert check_output(str(tmp_path / "out.csv")) == "csv"
    assert check_output("s3://bucket/key/out.geojson") == "geojson"  # no request made
    with pytest.raises(InvalidRequestError, match="does not exist"):
        check_output(str(tmp_path / "missing" / "out.csv"))
    with pytest.raises(InvalidRequestError, match="bucket and a key"):
        check_output("s3://out.geojson")
