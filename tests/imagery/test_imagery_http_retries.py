"""Transient HTTP failures of remote reads are retried by GDAL before a tile counts as failed.

Remote reads get ``GDAL_HTTP_MAX_RETRY`` / ``GDAL_HTTP_RETRY_DELAY`` unless the job's options or
the user's GDAL configuration (environment) set them; a real range server that answers 503
four times in a row (more than GDAL gets through without them) must still yield exactly the
local pixels.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import rasterio

from tilerunner.errors import RetryableError
from tilerunner.imagery import GdalEnv, RasterReader
from tilerunner.imagery.gdal_env import HTTP_RETRY_DEFAULTS
from tilerunner.tiling import Window


class _FlakyRangeHandler(BaseHTTPRequestHandler):
    """Serves one file by byte ranges; answers 503 to the next ``fail_next[0]`` requests."""

    path_served: Path
    fail_next: list[int]
    log: list[int]

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def do_GET(self) -> None:
        self._serve(body=True)

    def _serve(self, body: bool) -> None:
        if self.fail_next[0] > 0:
            self.fail_next[0] -= 1
            self.log.append(503)
            self.send_error(503, "busy")
            return
        data = self.path_served.read_bytes()
        start, end, status = 0, len(data) - 1, 200
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if match:
            start, end, status = int(match.group(1)), min(int(match.group(2) or end), end), 206
        self.log.append(status)
        self.send_response(status)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Type", "image/tiff")
        self.send_header("Content-Length", str(end - start + 1))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.end_headers()
        if body:
            self.wfile.write(data[start : end + 1])

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def flaky(tmp_path: Path) -> Iterator[tuple[str, Path, list[int], list[int]]]:
    tif = tmp_path / "scene.tif"
    pixels = np.random.default_rng(3).integers(0, 255, size=(3, 1024, 1024), dtype=np.uint8)
    with rasterio.open(
        tif, "w", driver="GTiff", width=1024, height=1024, count=3, dtype="uint8",
        tiled=True, blockxsize=256, blockysize=256, compress="deflate",
    ) as dst:  # fmt: skip
        dst.write(pixels)
    fail_next, log = [0], []
    handler = type(
        "Handler", (_FlakyRangeHandler,), {"path_served": tif, "fail_next": fail_next, "log": log}
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/scene.tif", tif, fail_next, log
    finally:
        server.shutdown()
        server.server_close()


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
    flaky: tuple[str, Path, list[int], list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GDAL_HTTP_MAX_RETRY", raising=False)
    monkeypatch.delenv("GDAL_HTTP_RETRY_DELAY", raising=False)
    url, local, fail_next, log = flaky
    env = GdalEnv.default(GDAL_HTTP_RETRY_DELAY="0.05")
    window = Window(768, 768, 256, 256)  # the last block: not in the header's first range
    with RasterReader(url, env=env) as reader:
        fail_next[0] = 4
        before = len(log)
        got = reader.read(window)
    with RasterReader(str(local)) as reader:
        want = reader.read(window)
    np.testing.assert_array_equal(got, want)
    assert log[before:] == [503, 503, 503, 503, 206]


def test_without_http_retries_the_same_read_fails(
    flaky: tuple[str, Path, list[int], list[int]],
) -> None:
    url, _, fail_next, _ = flaky
    env = GdalEnv.default(GDAL_HTTP_MAX_RETRY="0", GDAL_HTTP_RETRY_DELAY="0.05")
    with RasterReader(url, env=env) as reader:
        fail_next[0] = 4
        with pytest.raises(RetryableError, match="cannot read"):
            reader.read(Window(768, 768, 256, 256))
