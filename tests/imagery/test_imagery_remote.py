"""http(s):// and s3:// sources must return exactly the pixels of the local file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tilerunner.imagery import GdalEnv, RasterReader, probe
from tilerunner.testing.range_server import RangeServer
from tilerunner.tiling.window import Window

WINDOWS = [Window(0, 0, 512, 512), Window(400, 300, 300, 200), Window(900, 900, 256, 256)]


@pytest.fixture(scope="module")
def http_root(data_dir: Path) -> Iterator[RangeServer]:
    with RangeServer(data_dir) as server:
        yield server


def _local(data_dir: Path, name: str) -> list[np.ndarray]:
    with RasterReader(str(data_dir / name)) as reader:
        return [reader.read(w) for w in WINDOWS]


@pytest.mark.parametrize(("name", "width"), [("cogeo.tif", 1024), ("test_tiled.tif", 1000)])
def test_http_range_reads_match_local(
    data_dir: Path, http_root: RangeServer, name: str, width: int
) -> None:
    url = http_root.url(name)
    assert probe(url).width == width
    with RasterReader(url) as reader:
        remote = [reader.read(w) for w in WINDOWS]
    for got, want in zip(remote, _local(data_dir, name), strict=True):
        np.testing.assert_array_equal(got, want)
    records = http_root.stats().records
    assert records and all(r.status == 206 for r in records if r.method == "GET")
    assert all(r.range is not None for r in records if r.method == "GET")  # no whole-file GET


def test_s3_reads_match_local(data_dir: Path, moto_server: str) -> None:
    import boto3

    s3 = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    s3.create_bucket(Bucket="imagery-test")
    s3.upload_file(str(data_dir / "cogeo.tif"), "imagery-test", "scenes/cogeo.tif")
    env = GdalEnv.for_s3(endpoint_url=moto_server, region="us-east-1")
    assert env.options["AWS_VIRTUAL_HOSTING"] == "FALSE" and env.options["AWS_HTTPS"] == "NO"
    url = "s3://imagery-test/scenes/cogeo.tif"
    info = probe(url, env)
    assert (info.width, info.height, info.count) == (1024, 1024, 3)
    with RasterReader(url, env=env) as reader:
        remote = [reader.read(w) for w in WINDOWS]
    for got, want in zip(remote, _local(data_dir, "cogeo.tif"), strict=True):
        np.testing.assert_array_equal(got, want)
