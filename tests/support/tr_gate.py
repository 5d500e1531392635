"""An S3 endpoint in front of moto that holds the first upload under a prefix.

A coordinator writing a job's outputs to ``s3://`` through this endpoint stays inside its
aggregation until the test lets it go (or kills it), so a kill lands mid-aggregation by
construction instead of by timing. Every other request is forwarded to moto unchanged.
"""

from __future__ import annotations

import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection"}


class UploadGate:
    """Forwards to ``upstream``; the first PUT whose path starts with ``hold`` never returns
    until :meth:`release` (``held`` is set while it waits)."""

    def __init__(self, upstream: str, hold: str) -> None:
        self.upstream = urlsplit(upstream)
        self.hold = hold
        self.held = threading.Event()
        self._release = threading.Event()
        self._taken = threading.Lock()
        gate = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length", 0) or 0)
                body = self.rfile.read(length) if length else None
                if self.command == "PUT" and self.path.startswith(gate.hold) and gate._take():
                    gate.held.set()
                    gate._release.wait(600)
                    self.close_connection = True
                    return  # no answer: the uploader is stuck until it dies or times out
                conn = http.client.HTTPConnection(
                    gate.upstream.hostname, gate.upstream.port, timeout=60
                )
                try:
                    conn.request(self.command, self.path, body, dict(self.headers.items()))
                    answer = conn.getresponse()
                    payload = answer.read()
                finally:
                    conn.close()
                self.send_response(answer.status)
                for name, value in answer.getheaders():
                    if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length":
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _forward

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _take(self) -> bool:
        """True once: for the first upload under the prefix."""
        return self._taken.acquire(blocking=False)

    def close(self) -> None:
        self._release.set()
        self.server.shutdown()
        self.server.server_close()
