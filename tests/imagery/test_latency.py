"""A near HTTP source is read block by block, a far one with GDAL's thread pool; the host is
asked once per process, and what cannot be measured keeps the pool."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tilerunner.cli import run_defaults
from tilerunner.imagery import GdalEnv, RasterReader
from tilerunner.imagery import latency as latency_module
from tilerunner.imagery.latency import (
    FAR_READERS,
    NEAR_SECONDS,
    READERS,
    first_byte_seconds,
    read_options,
    reader_threads,
)
from tilerunner.testing.range_server import RangeServer
from tilerunner.tiling.window import Window

POOL = {"GDAL_NUM_THREADS": "ALL_CPUS"}


@pytest.fixture(autouse=True)
def fresh_measurements(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(latency_module, "_measured", {})


@pytest.fixture
def server(data_dir: Path) -> Iterator[RangeServer]:
    with RangeServer(data_dir) as running:
        yield running


@pytest.fixture
def near(monkeypatch: pytest.MonkeyPatch) -> float:
    """A loopback server answers within milliseconds; a loaded machine can stretch that, so
    "near" is a whole second here."""
    monkeypatch.setattr(latency_module, "NEAR_SECONDS", 1.0)
    return 1.0


def test_a_near_host_is_read_block_by_block_and_asked_once(
    server: RangeServer, near: float
) -> None:
    url = server.url("cogeo.tif")
    seconds = first_byte_seconds(url)
    assert seconds is not None and seconds < near
    assert read_options(url, POOL) == {"GDAL_NUM_THREADS": "1"}
    assert read_options(server.url("RGB.byte.tif"), POOL) == {"GDAL_NUM_THREADS": "1"}
    assert server.stats().requests == 1  # one request for the host, kept for the process


def test_a_far_host_keeps_the_pool(server: RangeServer) -> None:
    server.latency_ms = 1000 * NEAR_SECONDS * 2
    url = server.url("cogeo.tif")
    seconds = first_byte_seconds(url)
    assert seconds is not None and seconds >= NEAR_SECONDS
    assert read_options(url, POOL) == {}


def test_what_cannot_be_measured_or_was_chosen_keeps_its_options(server: RangeServer) -> None:
    assert first_byte_seconds("s3://bucket/scene.tif") is None
    assert read_options("s3://bucket/scene.tif", POOL) == {}
    refused = "http://127.0.0.1:9/scene.tif"  # the discard port: nothing listens
    assert first_byte_seconds(refused) is None and read_options(refused, POOL) == {}
    url = server.url("cogeo.tif")
    assert read_options(url, {"GDAL_NUM_THREADS": "4"}) == {}  # the user's choice wins
    assert server.stats().requests == 0


def test_a_reader_of_a_near_host_reads_the_same_pixels(
    server: RangeServer, data_dir: Path, near: float
) -> None:
    url = server.url("cogeo.tif")
    with (
        RasterReader(url, env=GdalEnv.default()) as remote,
        RasterReader(str(data_dir / "cogeo.tif")) as local,
    ):
        assert remote.env.options_for(url)["GDAL_NUM_THREADS"] == "1"
        window = Window(0, 0, local.info.width, local.info.height)
        np.testing.assert_array_equal(remote.read(window), local.read(window))


def test_a_far_source_gets_more_reader_threads(server: RangeServer, data_dir: Path) -> None:
    assert run_defaults.READERS == READERS < FAR_READERS  # the CLI's copy agrees
    assert reader_threads(str(data_dir / "cogeo.tif")) == READERS
    assert reader_threads("s3://bucket/scene.tif") == FAR_READERS
    server.latency_ms = 1000 * NEAR_SECONDS * 2
    assert reader_threads(server.url("cogeo.tif")) == FAR_READERS


def test_a_near_source_keeps_two_reader_threads(server: RangeServer, near: float) -> None:
    assert reader_threads(server.url("cogeo.tif")) == READERS
