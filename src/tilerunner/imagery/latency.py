"""How long an HTTP source takes to answer, measured once per host, and how reads use it.

A strip spans many internal blocks of a COG. With GDAL's thread pool on
(``GDAL_NUM_THREADS``), GDAL first requests every block run of a strip at once, as parallel
range requests, then decodes them on the pool's threads: one wait for the whole strip however
many runs it has, which is what a source tens of milliseconds away needs. A source that answers
at once gains nothing from that and pays for it: the strip is fetched whole before its first
block is decoded, and the pool's threads compete with the reader threads and the model for the
cores. Measured on the seam scene with the run's other settings alike (``docs/benchmarks.md``,
"Reading ahead, regions queued for the readers, and reads by the source's latency"), on two
cores: at 0 ms added latency, 2.5 s with GDAL's single-threaded decoding against 3.8 s with the
pool; at 50 ms, 4.8 s against 3.8 s.

So a reader of an ``http(s)://`` image asks the host once how long a request takes
(:func:`first_byte_seconds`: a one-byte ranged ``GET``, its connection included, the answer
kept for the process) and reads with GDAL's single-threaded decoding when the answer came
within :data:`NEAR_SECONDS` (:func:`read_options`). Object stores (``s3://``, ``gs://``,
``az://``) are reached through signed requests that this cannot reproduce, and are tens of
milliseconds away in any case: they keep the pool, as does any host that cannot be measured.
A user's own ``GDAL_NUM_THREADS`` in the reader's options always wins.

The same measure sets how many reader threads a one-worker ``run`` starts when the user did
not choose (:func:`reader_threads`): each reader waits once per strip, so a far source gets
:data:`FAR_READERS` (at 50 ms, 3.5-3.7 s with 4 against 3.95 s with 2 for the seam scene).
"""

from __future__ import annotations

import http.client
import logging
import threading
import time
from urllib.parse import urlsplit

from tilerunner.imagery.gdal_env import is_remote

__all__ = [
    "FAR_READERS",
    "NEAR_SECONDS",
    "READERS",
    "first_byte_seconds",
    "read_options",
    "reader_threads",
]

log = logging.getLogger(__name__)

#: A host that answers a request within this is read block by block as GDAL decodes.
NEAR_SECONDS = 0.02
#: Reader threads of a worker by default, and for a source farther than :data:`NEAR_SECONDS`
#: (each thread waits once per strip; more of them keep more strips in flight).
READERS = 2
FAR_READERS = 4

_TIMEOUT = 5.0
_measured: dict[tuple[str, str, int | None], float | None] = {}
_lock = threading.Lock()


def first_byte_seconds(url: str) -> float | None:
    """Seconds from connecting to the first answer of a one-byte ranged ``GET`` of ``url``
    (``http``/``https`` only), measured once per scheme, host and port; None when it cannot
    be told (another scheme, a refused connection, a timeout)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        return None
    key = (scheme, parts.hostname, parts.port)
    with _lock:
        if key in _measured:
            return _measured[key]
    connection_type = (
        http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
    )
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    seconds: float | None
    started = time.perf_counter()
    try:
        connection = connection_type(parts.hostname, parts.port, timeout=_TIMEOUT)
        try:
            connection.request("GET", path, headers={"Range": "bytes=0-0"})
            connection.getresponse().read()
        finally:
            connection.close()
        seconds = time.perf_counter() - started
    except (OSError, http.client.HTTPException) as error:
        log.debug("cannot time a request to %s: %s", parts.hostname, error)
        seconds = None
    with _lock:
        _measured[key] = seconds
    return seconds


def read_options(url: str, options: dict[str, str]) -> dict[str, str]:
    """Options to read ``url`` with: ``GDAL_NUM_THREADS`` 1 for a near HTTP host (see the
    module) unless the options chose another value than the pool's default."""
    if options.get("GDAL_NUM_THREADS") != "ALL_CPUS":
        return {}
    seconds = first_byte_seconds(url)
    if seconds is None or seconds >= NEAR_SECONDS:
        return {}
    log.debug("%s answers in %.1f ms: read block by block", url, seconds * 1000)
    return {"GDAL_NUM_THREADS": "1"}


def reader_threads(url: str) -> int:
    """Reader threads for a run whose image is ``url``: :data:`FAR_READERS` when it is far (an
    HTTP host that answers in :data:`NEAR_SECONDS` or more, an object store), else
    :data:`READERS` (a local file, a near host, a host that cannot be timed)."""
    if not is_remote(url):
        return READERS
    scheme = urlsplit(url).scheme.lower()
    if scheme in ("http", "https"):
        seconds = first_byte_seconds(url)
        return FAR_READERS if seconds is not None and seconds >= NEAR_SECONDS else READERS
    return FAR_READERS  # object stores and GDAL's network paths: tens of milliseconds away
