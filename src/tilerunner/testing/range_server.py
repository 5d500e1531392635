"""A loopback HTTP file server with byte ranges, added latency and counters.

Object storage answers range requests after 20-100 ms; a reader that asks for one small range at a
time spends most of its life waiting. Tests and benchmarks of remote reads therefore need a real
HTTP server whose latency can be set, and that counts what it was asked for. This one serves the
files of one folder from the standard library's :class:`~http.server.ThreadingHTTPServer` (one
thread per connection, so concurrent requests really overlap)::

    with RangeServer(folder, latency_ms=50) as server:
        url = server.url("scene.tif")            # http://127.0.0.1:PORT/scene.tif
        ... read url with GDAL ...
        server.latency_ms = 0                    # settable while it runs
        stats = server.stats()                   # requests, bytes sent, max concurrent
        server.fail_next(2)                      # the next 2 requests get 503
        server.reset()                           # counters back to zero

What it speaks:

- ``GET`` and ``HEAD``, HTTP/1.1 with keep-alive (as object storage does);
- ``Range: bytes=a-b``, ``bytes=a-`` and ``bytes=-n`` answered ``206`` with ``Content-Range``;
  several ranges (``bytes=a-b,c-d``) answered ``206`` as one ``multipart/byteranges`` body
  (RFC 9110 section 14.6); a range that starts past the end gets ``416``; a malformed
  ``Range`` header is ignored and the whole file is sent (``200``), as the RFC allows;
- the latency is slept once per request before the first byte, inside the request's own thread;
- :meth:`RangeServer.stats` counts requests, body bytes sent, ranges asked for, and the most
  requests in flight at once (from headers read to body written), so a test can tell whether a
  reader overlapped its requests without timing anything.

It is shipped in :mod:`tilerunner.testing` so benchmarks and users' own tests can use it; it
serves only what is under its folder and binds loopback by default. There is no command line.
"""

from __future__ import annotations

import os
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

__all__ = ["RangeServer", "RangeStats", "RequestRecord", "parse_ranges"]

_RANGE_SPEC = re.compile(r"(\d*)-(\d*)")
_CHUNK = 1 << 20


def parse_ranges(header: str, size: int) -> list[tuple[int, int]] | None:
    """Inclusive ``(first, last)`` byte ranges of a ``Range`` header for a file of ``size`` bytes.

    ``None`` means "send the whole file" (no header, another unit, or a malformed one); an empty
    list means no range is satisfiable (416). Ranges past the end are clipped to the file.
    """
    unit, _, specs = header.partition("=")
    if unit.strip().lower() != "bytes" or not specs.strip():
        return None
    ranges: list[tuple[int, int]] = []
    for spec in specs.split(","):
        match = _RANGE_SPEC.fullmatch(spec.strip())
        if match is None or match.group(1) == match.group(2) == "":
            return None
        first_text, last_text = match.groups()
        if first_text == "":  # suffix: the last n bytes
            length = int(last_text)
            if length > 0 and size > 0:
                ranges.append((max(0, size - length), size - 1))
            continue
        first = int(first_text)
        last = size - 1 if last_text == "" else min(int(last_text), size - 1)
        if last_text != "" and int(last_text) < first:
            return None
        if first < size:
            ranges.append((first, last))
    return ranges


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One answered request: method, path, the ``Range`` header as sent, status, body bytes."""

    method: str
    path: str
    range: str | None
    status: int
    bytes_sent: int


@dataclass(frozen=True, slots=True)
class RangeStats:
    """Counters since start or the last :meth:`RangeServer.reset`."""

    requests: int
    bytes_sent: int
    ranges: int
    """Byte ranges asked for (a multi-range request counts each of its ranges)."""
    max_in_flight: int
    """The most requests being answered at the same moment."""
    records: tuple[RequestRecord, ...] = field(repr=False)


class _Counters:
    def __init__(self) -> None:
        self.lock = threading.Condition()
        self.records: list[RequestRecord] = []
        self.ranges = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.fail_next = 0
        self.fail_status = 503


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def do_GET(self) -> None:
        self._answer(body=True)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: tests and benchmarks read the counters instead

    def _answer(self, body: bool) -> None:
        counters = self.server.counters
        with counters.lock:
            counters.in_flight += 1
            counters.max_in_flight = max(counters.max_in_flight, counters.in_flight)
        status, sent, n_ranges = 0, 0, 0
        try:
            delay = self.server.latency_ms / 1000.0
            if delay > 0:
                time.sleep(delay)
            status, sent, n_ranges = self._respond(body)
        finally:
            with counters.lock:
                counters.in_flight -= 1
                counters.ranges += n_ranges
                counters.records.append(
                    RequestRecord(self.command, self.path, self.headers.get("Range"), status, sent)
                )
                counters.lock.notify_all()

    def _respond(self, body: bool) -> tuple[int, int, int]:
        counters = self.server.counters
        with counters.lock:
            failing = counters.fail_next > 0
            if failing:
                counters.fail_next -= 1
        if failing:
            return self._empty(counters.fail_status), 0, 0
        path = self.server.resolve(self.path)
        if path is None:
            return self._empty(404), 0, 0
        size = path.stat().st_size
        header = self.headers.get("Range")
        ranges = None if header is None else parse_ranges(header, size)
        if ranges is not None and not ranges:
            return self._empty(416, {"Content-Range": f"bytes */{size}"}), 0, 0
        with path.open("rb") as file:
            if ranges is None:
                self._head(200, size, {"Content-Type": "application/octet-stream"})
                return 200, self._copy(file, 0, size - 1) if body else 0, 0
            if len(ranges) == 1:
                first, last = ranges[0]
                content_range = f"bytes {first}-{last}/{size}"
                extra = {"Content-Type": "application/octet-stream", "Content-Range": content_range}
                self._head(206, last - first + 1, extra)
                return 206, self._copy(file, first, last) if body else 0, 1
            return 206, self._multipart(file, ranges, size, body), len(ranges)

    def _multipart(self, file: Any, ranges: list[tuple[int, int]], size: int, body: bool) -> int:
        boundary = secrets.token_hex(12)
        heads = [
            (
                f"\r\n--{boundary}\r\nContent-Type: application/octet-stream\r\n"
                f"Content-Range: bytes {first}-{last}/{size}\r\n\r\n"
            ).encode("ascii")
            for first, last in ranges
        ]
        tail = f"\r\n--{boundary}--\r\n".encode("ascii")
        length = sum(map(len, heads)) + sum(b - a + 1 for a, b in ranges) + len(tail)
        content_type = f"multipart/byteranges; boundary={boundary}"
        self._head(206, length, {"Content-Type": content_type})
        if not body:
            return 0
        sent = 0
        for head, (first, last) in zip(heads, ranges, strict=True):
            self.wfile.write(head)
            sent += self._copy(file, first, last)
        self.wfile.write(tail)
        return sent

    def _head(self, status: int, length: int, extra: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(length))
        for name, value in extra.items():
            self.send_header(name, value)
        self.end_headers()

    def _empty(self, status: int, extra: dict[str, str] | None = None) -> int:
        self._head(status, 0, extra or {})
        return status

    def _copy(self, file: Any, first: int, last: int) -> int:
        file.seek(first)
        left = last - first + 1
        while left > 0:
            chunk = file.read(min(_CHUNK, left))
            if not chunk:
                break
            self.wfile.write(chunk)
            left -= len(chunk)
        return last - first + 1 - left


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver listens with a backlog of 5: a client that opens more connections at once
    # (GDAL fetching a strip's block runs in parallel) has the rest of its SYNs dropped, and
    # the kernel sends them again only after a second. Object stores and web servers accept
    # hundreds at once; so does this.
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int], root: Path, latency_ms: float) -> None:
        super().__init__(address, _Handler)
        self.root = root
        self.latency_ms = latency_ms
        self.counters = _Counters()

    def resolve(self, url_path: str) -> Path | None:
        """The file a request path names, or ``None`` if it is not a file under the root."""
        relative = unquote(urlsplit(url_path).path).lstrip("/")
        path = (self.root / relative).resolve()
        if not path.is_relative_to(self.root) or not path.is_file():
            return None
        return path


class RangeServer:
    """Serves the files under ``root`` on ``host:port`` (port 0: any free one) while started.

    Use it as a context manager, or call :meth:`start` and :meth:`stop`.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        latency_ms: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if latency_ms < 0:
            raise ValueError(f"latency_ms is {latency_ms}; give 0 or more milliseconds")
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise ValueError(f"{str(root)!r} is not a folder; give the folder to serve")
        self._address = (host, port)
        self._latency_ms = float(latency_ms)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def latency_ms(self) -> float:
        """Milliseconds slept before answering each request; may be changed while running."""
        return self._latency_ms

    @latency_ms.setter
    def latency_ms(self, value: float) -> None:
        if value < 0:
            raise ValueError(f"latency_ms is {value}; give 0 or more milliseconds")
        self._latency_ms = float(value)
        if self._server is not None:
            self._server.latency_ms = self._latency_ms

    @property
    def base_url(self) -> str:
        """``http://host:port`` of the running server."""
        host, port = self._running().server_address[:2]
        return f"http://{host!s}:{port}"

    def url(self, name: str) -> str:
        """The URL of the file ``name`` (relative to the root)."""
        return f"{self.base_url}/{name.lstrip('/')}"

    def fail_next(self, count: int, status: int = 503) -> None:
        """Answer the next ``count`` requests with ``status`` and no body (transient faults)."""
        counters = self._running().counters
        with counters.lock:
            counters.fail_next = count
            counters.fail_status = status

    def stats(self, settle: float = 5.0) -> RangeStats:
        """A snapshot of the counters, once no request is in flight (waiting ``settle`` s at most).

        A client has its whole response a moment before the server has counted it; waiting for
        the requests in flight makes a snapshot taken right after a read complete.
        """
        counters = self._running().counters
        with counters.lock:
            counters.lock.wait_for(lambda: counters.in_flight == 0, timeout=settle)
            records = tuple(counters.records)
            return RangeStats(
                requests=len(records),
                bytes_sent=sum(r.bytes_sent for r in records),
                ranges=counters.ranges,
                max_in_flight=counters.max_in_flight,
                records=records,
            )

    def reset(self, settle: float = 5.0) -> None:
        """Set every counter back to zero, once no request is in flight (``settle`` s at most)."""
        counters = self._running().counters
        with counters.lock:
            counters.lock.wait_for(lambda: counters.in_flight == 0, timeout=settle)
            counters.records.clear()
            counters.ranges = 0
            counters.max_in_flight = counters.in_flight

    def start(self) -> RangeServer:
        if self._server is not None:
            return self
        self._server = _Server(self._address, self.root, self._latency_ms)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="range-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join()

    def _running(self) -> _Server:
        if self._server is None:
            raise RuntimeError("the range server is not running; call start() or use `with`")
        return self._server

    def __enter__(self) -> RangeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
