"""http(s):// and s3:// sources must return exactly the pixels of the local file."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from tilerunner.imagery import GdalEnv, RasterReader, probe
from tilerunner.tiling.window import Window

WINDOWS = [Window(0, 0, 512, 512), Window(400, 300, 300, 200), Window(900, 900, 256, 256)]


class _RangeHandler(BaseHTTPRequestHandler):
    """Serves files from ``root`` with single byte-range support (GDAL reads COGs by range)."""

    root: Path
    requests: list[str]

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def do_GET(self) -> None:
        self._serve(body=True)

    def _serve(self, body: bool) -> None:
        path = self.root / self.path.split("?", 1)[0].lstrip("/")
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        start, end, status = 0, len(data) - 1, 200
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if match:
            start = int(match.group(1))
            end = min(int(match.group(2) or end), end)
            status = 206
        self.requests.append(self.headers.get("Range", "full"))
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


@pytest.fixture(scope="module")
def http_root(data_dir: Path) -> Iterator[tuple[str, list[str]]]:
    requests: list[str] = []
    handler = type("Handler", (_RangeHandler,), {"root": data_dir, "requests": requests})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requests
    finally:
        server.shutdown()
        server.server_close()


def _local(data_dir: Path, name: str) -> list[np.ndarray]:
    with RasterReader(str(data_dir / name)) as reader:
        return [reader.read(w) for w in WINDOWS]


@pytest.mark.parametrize(("name", "width"), [("cogeo.tif", 1024), ("test_tiled.tif", 1000)])
def test_http_range_reads_match_local(
    data_dir: Path, http_root: tuple[str, list[str]], name: str, width: int
) -> None:
    base, requests = http_root
    url = f"{base}/{name}"
    assert probe(url).width == width
    with RasterReader(url) as reader:
        remote = [reader.read(w) for w in WINDOWS]
    for got, want in zip(remote, _local(data_dir, name), strict=True):
        np.testing.assert_array_equal(got, want)
    assert any(r.startswith("bytes=") for r in requests)  # ranges, not whole-file downloads


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
