"""Accepting a job checks each output's format and place with ``check_output``, the check
``tilerunner run -o`` makes: a bad one is a bad request (HTTP 422) and nothing is stored."""

from __future__ import annotations

from pathlib import Path

import pytest

from tilerunner.api.errors import status_for
from tilerunner.coordinator import accept_job
from tilerunner.errors import InvalidRequestError
from tilerunner.jobs import parse_job
from tilerunner.store import Store, open_store


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return open_store(f"sqlite:///{tmp_path / 'state.db'}")


def _document(source: Path, *outputs: dict[str, str]) -> dict[str, object]:
    return {
        "sources": [str(source)],
        "pipeline": [{"task": "detect", "model": "det"}],
        "outputs": list(outputs),
    }


@pytest.mark.parametrize(
    ("output", "message"),
    [
        ({"uri": "x.shp"}, "outputs[1] 'x.shp': unknown output format '.shp'; "
         "use .geojson, .parquet or .csv"),
        ({"uri": "x.out", "format": "gejson"}, "outputs[1] 'x.out': unknown output format "
         "'gejson' (did you mean 'geojson'?); use geojson, geoparquet or csv"),
    ],
)  # fmt: skip
def test_an_unknown_output_format_is_refused_before_anything_is_stored(
    store: Store, tmp_path: Path, output: dict[str, str], message: str
) -> None:
    source = tmp_path / "missing.tif"  # never looked at: the outputs are checked first
    good = {"uri": str(tmp_path / "ok.geojson")}
    with pytest.raises(InvalidRequestError) as info:
        accept_job(store, parse_job(_document(source, good, output)))
    assert str(info.value) == message
    assert status_for(info.value) == 422
    assert store.list_jobs() == []


def test_an_explicit_format_needs_no_extension(store: Store, tmp_path: Path) -> None:
    source = tmp_path / "image.tif"
    source.write_bytes(b"")  # accepting only checks that a local source exists
    output = {"uri": str(tmp_path / "trees.table"), "format": "csv"}
    job_id = accept_job(store, parse_job(_document(source, output)))
    assert [job.id for job in store.list_jobs()] == [job_id]
