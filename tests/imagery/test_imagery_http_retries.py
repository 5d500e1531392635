"""Transient HTTP failures of remote reads are retried by GDAL before a tile counts as failed.

Remote reads get ``GDAL_HTTP_MAX_RETRY`` / ``GDAL_HTTP_RETRY_DELAY`` unless the job's options or
the user's GDAL configuration (environment) set them; a real range server that answers 503
four times in a row (more than GDAL gets through without them) must still yield exactly the
local pixels.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import rasterio

from tilerunner.errors import RetryableError
from tilerunner.imagery import GdalEnv, RasterReader
from tilerunner.imagery.gdal_env import HTTP_RETRY_DEFAULTS
from tilerunner.testing.range_server import RangeServer
from tilerunner.tiling import Window


@pytest.fixture
def flaky(tmp_path: Path) -> Iterator[tuple[RangeServer, str, Path]]:
    tif = tmp_path / "scene.tif"
    pixels = np.random.default_rng(3).integers(0, 255, size=(3, 1024, 1024), dtype=np.uint8)
    with rasterio.open(
        tif, "w", driver="GTiff", width=1024, height=1024, count=3, dtype="uint8",
        tiled=True, blockxsize=256, blockysize=256, compress="deflate",
    ) as dst:  # fmt: skip
        dst.write(pixels)
    with RangeServer(tmp_path) as server:
        yield server, server.url("scene.tif"), tif


def test_remote_reads_get_gdal_http_retries_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GDAL_HTTP_MAX_RETRY", raising=False)
    monkeypatch.delenv("GDAL_HTTP_RETRY_DELAY", raising=False)
    remote = GdalEnv.default().options_for("https://host/a.tif")
    assert {k: remote[k] for k in HTTP_RETRY_DEFAULTS} == dict(HTTP_RETRY_DEFAULTS)
    assert not set(HTTP_RETRY_DEFAULTS) & set(GdalEnv.default().options_for("/data/a.tif"))
    explicit = GdalEnv.default(GDAL_HTTP_MAX_RETRY="9").options_for("s3://b/a.tif")
    assert explicit["GDAL_HTTP_MAX_RETRY"] == "9"
    assert explicit["GDAL_HTTP_RETRY_DELAY"] == HTTP_RETRY_DEFAULTS["GDAL_HTTP_RETRY_DELAY"]

    monkeypatch.setenv("GDAL_HTTP_MAX_RETRY", "5")  # the user's own setting is left to GDAL
    from_user = GdalEnv.default().options_for("https://host/a.tif")
    assert "GDAL_HTTP_MAX_RETRY" not in from_user and "GDAL_HTTP_RETRY_DELAY" in from_user


def test_a_range_read_answered_503_four_times_still_returns_the_pixels(
    flaky: tuple[RangeServer, str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GDAL_HTTP_MAX_RETRY", raising=False)
    monkeypatch.delenv("GDAL_HTTP_RETRY_DELAY", raising=False)
    server, url, local = flaky
    env = GdalEnv.default(GDAL_HTTP_RETRY_DELAY="0.05")
    window = Window(768, 768, 256, 256)  # the last block: not in the header's first range
    with RasterReader(url, env=env) as reader:
        server.fail_next(4)
        server.reset()
        got = reader.read(window)
    with RasterReader(str(local)) as reader:
        want = reader.read(window)
    np.testing.assert_array_equal(got, want)
    assert [r.status for r in server.stats().records] == [503, 503, 503, 503, 206]


def test_without_http_retries_the_same_read_fails(
    flaky: tuple[RangeServer, str, Path],
) -> None:
    server, url, _ = flaky
    env = GdalEnv.default(GDAL_HTTP_MAX_RETRY="0", GDAL_HTTP_RETRY_DELAY="0.05")
    with RasterReader(url, env=env) as reader:
        server.fail_next(4)
        with pytest.raises(RetryableError, match="cannot read"):
            reader.read(Window(768, 768, 256, 256))
