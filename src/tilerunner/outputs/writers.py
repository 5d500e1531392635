"""Choosing a writer from the output name, and writing files safely.

The format follows from the file extension (``.geojson``/``.json``, ``.parquet``/``.geoparquet``,
``.csv``) unless named explicitly. Two guarantees matter to users:

* :func:`check_output` (format and location) runs when a job is validated, before any work, so
  a typo in ``-o`` fails in a second instead of after an hour of inference.
* Every file is written to a temporary name in the target directory and moved into place with
  ``os.replace``, which is atomic on one filesystem: readers see the old file or the complete
  new one, never a half-written one, and a failure leaves no partial file behind. ``s3://``
  outputs are written to a local temporary file and uploaded in one call.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import os
import secrets
import tempfile
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from tilerunner.errors import InvalidRequestError, RetryableError

if TYPE_CHECKING:
    from tilerunner.outputs.table import FeatureTable

__all__ = [
    "FORMATS",
    "Writer",
    "atomic_path",
    "check_output",
    "check_writable",
    "output_format",
    "write_output",
    "writer_for",
]


class _LocalWriter(Protocol):
    def __call__(self, table: FeatureTable, path: str, crs_wkt: str | None = None) -> None: ...


def _imported_on_use(module: str, name: str) -> _LocalWriter:
    """``module.name``, imported at its first call: checking an output's name needs no writer,
    and a GeoJSON run needs neither pyarrow nor shapely."""

    def write(table: FeatureTable, path: str, crs_wkt: str | None = None) -> None:
        writer: _LocalWriter = getattr(importlib.import_module(module), name)
        writer(table, path, crs_wkt)

    return write


#: Output format name -> function writing a local file.
FORMATS: dict[str, _LocalWriter] = {
    "geojson": _imported_on_use("tilerunner.outputs.geojson", "write_geojson"),
    "geoparquet": _imported_on_use("tilerunner.outputs.geoparquet", "write_geoparquet"),
    "csv": _imported_on_use("tilerunner.outputs.csv", "write_csv"),
}
_EXTENSIONS = {
    ".geojson": "geojson",
    ".json": "geojson",
    ".parquet": "geoparquet",
    ".geoparquet": "geoparquet",
    ".csv": "csv",
}
_ALIASES = {"parquet": "geoparquet", "json": "geojson"}


class Writer(Protocol):
    """Writes a feature table to ``uri``; ``crs_wkt`` is the CRS of the table's geometry."""

    def __call__(self, table: FeatureTable, uri: str, crs_wkt: str | None = None) -> None: ...


def _is_s3(uri: str) -> bool:
    return uri.lower().startswith("s3://")


def output_format(uri: str, fmt: str | None = None, *, label: str | None = None) -> str:
    """The format name of the output ``uri``: ``fmt`` if given, else from the file extension.

    An unknown format raises :class:`InvalidRequestError` saying what to change; ``label`` is
    how the caller named the output (``-o out.shp``, ``outputs[0] 'out.shp'``), by default
    ``output 'out.shp'``.
    """
    label = label or f"output {uri!r}"
    if fmt is not None:
        name = _ALIASES.get(fmt.lower(), fmt.lower())
        if name not in FORMATS:
            raise InvalidRequestError(
                f"{label}: unknown output format {fmt!r}{_did_you_mean(fmt.lower(), FORMATS)}; "
                "use geojson, geoparquet or csv"
            )
        return name
    ext = os.path.splitext(urlsplit(uri).path if _is_s3(uri) else uri)[1].lower()
    if not ext:
        raise InvalidRequestError(
            f"{label}: no file extension to tell the output format; "
            "end the name in .geojson, .parquet or .csv"
        )
    if ext not in _EXTENSIONS:
        raise InvalidRequestError(
            f"{label}: unknown output format {ext!r}{_did_you_mean(ext, _EXTENSIONS)}; "
            "use .geojson, .parquet or .csv"
        )
    return _EXTENSIONS[ext]


def _did_you_mean(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_output(uri: str, fmt: str | None = None, *, label: str | None = None) -> str:
    """Fail fast, before any work, when the output ``uri`` cannot be written: its location is
    not writable (:func:`check_writable`; ``s3://bucket/key`` passes without a request) or its
    format is unknown (:func:`output_format`). Returns the format name."""
    check_writable(uri, label=label)
    return output_format(uri, fmt, label=label)


def writer_for(uri: str, fmt: str | None = None, *, s3_endpoint_url: str | None = None) -> Writer:
    """The writer for ``uri``, by ``fmt`` if given, else by the file extension."""
    write_local = FORMATS[output_format(uri, fmt)]

    def write(table: FeatureTable, uri: str, crs_wkt: str | None = None) -> None:
        write_output(uri, lambda path: write_local(table, path, crs_wkt), s3_endpoint_url)

    return write


def check_writable(uri: str, *, label: str | None = None) -> None:
    """Fail fast, before any work, when ``uri`` cannot be written; ``label`` is how the caller
    named the output (``-o out.csv``, ``outputs[0] 'out.csv'``)."""
    prefix = label or f"cannot write output {uri!r}"
    other = "another path" if label else "another -o path"
    if _is_s3(uri):
        parts = urlsplit(uri)
        if not parts.netloc or not parts.path.strip("/"):
            raise InvalidRequestError(
                f"{prefix}: an S3 output needs a bucket and a key; "
                "use s3://bucket/path/file.geojson"
            )
        return
    path = os.path.abspath(uri)
    directory = os.path.dirname(path)
    if os.path.isdir(path) or uri.endswith(("/", os.sep)):
        raise InvalidRequestError(
            f"{prefix}: it is a directory; give a file name such as "
            f"{os.path.join(uri, 'results.geojson')!r}"
        )
    if not os.path.isdir(directory):
        raise InvalidRequestError(
            f"{prefix}: directory {directory!r} does not exist; create it or choose {other}"
        )
    if not os.access(directory, os.W_OK | os.X_OK):
        raise InvalidRequestError(
            f"{prefix}: directory {directory!r} is not writable; "
            f"fix its permissions or choose {other}"
        )


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """Yield a temporary path beside ``path``; move it onto ``path`` only on success."""
    directory, name = os.path.split(os.path.abspath(path))
    tmp = os.path.join(directory, f".{name}.{secrets.token_hex(6)}.tmp")
    try:
        # 0o666 minus the umask: the final file gets ordinary permissions, unlike mkstemp's 0o600.
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    except OSError as exc:
        raise _os_error(path, exc) from exc
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _os_error(uri: str, exc: OSError) -> Exception:
    if isinstance(exc, PermissionError | FileNotFoundError | IsADirectoryError):
        return InvalidRequestError(
            f"cannot write output {uri!r}: {exc.strerror}; choose a writable -o path"
        )
    return RetryableError(f"cannot write output {uri!r}: {exc}; free disk space and retry")


def write_output(
    uri: str, produce: Callable[[str], None], s3_endpoint_url: str | None = None
) -> None:
    """Run ``produce(local_path)`` and put the result at ``uri`` atomically (local or S3)."""
    if not _is_s3(uri):
        with atomic_path(uri) as tmp:
            try:
                produce(tmp)
            except OSError as exc:
                raise _os_error(uri, exc) from exc
        return
    suffix = os.path.splitext(urlsplit(uri).path)[1]
    fd, tmp = tempfile.mkstemp(suffix=suffix)
    os.close(fd)
    try:
        produce(tmp)
        _upload(tmp, uri, s3_endpoint_url)
    finally:
        os.unlink(tmp)


def _upload(path: str, uri: str, endpoint_url: str | None) -> None:
    try:
        import boto3
        from boto3.exceptions import S3UploadFailedError
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError as exc:
        raise InvalidRequestError(
            f"cannot write output {uri!r}: s3:// outputs need boto3; install tilerunner[s3]"
        ) from exc
    parts = urlsplit(uri)
    client: Any = boto3.client("s3", endpoint_url=endpoint_url)
    try:
        client.upload_file(path, parts.netloc, parts.path.lstrip("/"))
    except (ClientError, S3UploadFailedError) as exc:
        permanent = any(code in str(exc) for code in ("NoSuchBucket", "AccessDenied"))
        error = InvalidRequestError if permanent else RetryableError
        raise error(
            f"cannot upload output {uri!r}: {exc}; check that the bucket exists and is writable"
        ) from exc
    except BotoCoreError as exc:
        raise RetryableError(f"cannot upload output {uri!r}: {exc}; check the S3 endpoint") from exc
