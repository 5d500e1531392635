"""The loopback range server answers ranges as RFC 9110 says and counts what it was asked."""

from __future__ import annotations

import email.parser
import http.client
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tilerunner.testing.range_server import RangeServer, _Server, parse_ranges

DATA = bytes(range(256)) * 40  # 10,240 bytes


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RangeServer]:
    (tmp_path / "blob.bin").write_bytes(DATA)
    (tmp_path.parent / "secret.bin").write_bytes(b"outside")
    with RangeServer(tmp_path) as running:
        yield running


def _get(
    server: RangeServer, path: str, headers: dict[str, str] | None = None, method: str = "GET"
) -> tuple[int, dict[str, str], bytes]:
    host, port = server.base_url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request(method, path, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def test_parse_ranges() -> None:
    assert parse_ranges("bytes=0-9", 100) == [(0, 9)]
    assert parse_ranges("bytes=90-", 100) == [(90, 99)]
    assert parse_ranges("bytes=-10", 100) == [(90, 99)]
    assert parse_ranges("bytes=95-200, 0-0", 100) == [(95, 99), (0, 0)]
    assert parse_ranges("bytes=100-200", 100) == []  # nothing satisfiable: 416
    assert parse_ranges("bytes=9-3", 100) is None  # malformed: whole file
    assert parse_ranges("items=0-1", 100) is None


def test_single_range_head_and_whole_file(server: RangeServer) -> None:
    status, headers, body = _get(server, "/blob.bin", {"Range": "bytes=100-199"})
    assert (status, body) == (206, DATA[100:200])
    assert headers["Content-Range"] == f"bytes 100-199/{len(DATA)}"
    status, headers, body = _get(server, "/blob.bin", {"Range": "bytes=-24"})
    assert (status, body) == (206, DATA[-24:])
    status, headers, body = _get(server, "/blob.bin", method="HEAD")
    assert (status, headers["Content-Length"], body) == (200, str(len(DATA)), b"")
    assert _get(server, "/blob.bin")[2] == DATA
    stats = server.stats()
    assert stats.requests == 4
    assert stats.bytes_sent == 100 + 24 + 0 + len(DATA)
    assert stats.ranges == 2


def test_multi_range_is_multipart_byteranges(server: RangeServer) -> None:
    status, headers, body = _get(server, "/blob.bin", {"Range": "bytes=0-9,5000-5099,-5"})
    assert status == 206
    assert headers["Content-Type"].startswith("multipart/byteranges; boundary=")
    message = email.parser.BytesParser().parsebytes(
        b"Content-Type: " + headers["Content-Type"].encode() + b"\r\n\r\n" + body
    )
    parts = [(p["Content-Range"], p.get_payload(decode=True)) for p in message.get_payload()]
    size = len(DATA)
    assert parts == [
        (f"bytes 0-9/{size}", DATA[:10]),
        (f"bytes 5000-5099/{size}", DATA[5000:5100]),
        (f"bytes {size - 5}-{size - 1}/{size}", DATA[-5:]),
    ]
    assert server.stats().ranges == 3 and server.stats().bytes_sent == 115


def test_errors_and_injected_failures(server: RangeServer) -> None:
    assert _get(server, "/missing.bin")[0] == 404
    assert _get(server, "/../secret.bin")[0] == 404  # nothing outside the folder
    status, headers, _ = _get(server, "/blob.bin", {"Range": "bytes=99999-"})
    assert (status, headers["Content-Range"]) == (416, f"bytes */{len(DATA)}")
    server.fail_next(2)
    assert [_get(server, "/blob.bin")[0] for _ in range(3)] == [503, 503, 200]
    server.reset()
    assert server.stats().requests == 0


def test_latency_makes_concurrent_requests_overlap(server: RangeServer) -> None:
    server.latency_ms = 300
    barrier = threading.Barrier(4)

    def fetch() -> None:
        barrier.wait()
        assert _get(server, "/blob.bin", {"Range": "bytes=0-0"})[0] == 206

    threads = [threading.Thread(target=fetch) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert server.stats().max_in_flight >= 2  # each waits 300 ms: they cannot run one by one
    server.latency_ms = 0
    server.reset()
    _get(server, "/blob.bin", {"Range": "bytes=0-0"})
    assert server.stats().max_in_flight == 1


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a folder"):
        RangeServer(tmp_path / "nope")
    with pytest.raises(ValueError, match="milliseconds"):
        RangeServer(tmp_path, latency_ms=-1)
    with pytest.raises(RuntimeError, match="not running"):
        RangeServer(tmp_path).stats()


def test_many_connections_at_once_are_all_accepted(tmp_path: Path) -> None:
    # A listening socket queues at most its backlog of connections not yet accepted; past it
    # the kernel drops a client's SYN and the client sends it again only after a second. GDAL
    # opens a connection per block run of a strip, all at once, as it would to an object store.
    # Nothing accepts here, so every connection below waits in the queue.
    listening = _Server(("127.0.0.1", 0), tmp_path, 0.0)
    sockets: list[socket.socket] = []
    try:
        for _ in range(64):
            sockets.append(socket.create_connection(listening.server_address[:2], timeout=0.5))
    finally:
        for sock in sockets:
            sock.close()
        listening.server_close()
    assert len(sockets) == 64
