"""GDAL configuration for opening rasters, built from explicit arguments.

GDAL is configured through process- or thread-wide "config options" (``AWS_S3_ENDPOINT``,
``GDAL_HTTP_MULTIRANGE`` ...). Scattering ``os.environ`` edits through the code makes behaviour
depend on import order and on whoever ran last, so tilerunner collects the options it wants in
one immutable :class:`GdalEnv` value, built once by the composition root (CLI, worker, API) from
its settings, and every open or read happens inside ``rasterio.Env(**options)`` for that value.
rasterio sets the options thread-locally, so two readers with different environments can run in
the same process.

Credentials are deliberately not part of it: GDAL itself reads ``AWS_ACCESS_KEY_ID`` and friends
(or ``~/.aws``) when it talks to S3, and rasterio looks them up through boto3 when it opens an
``s3://`` URL.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

import rasterio
from rasterio.env import get_gdal_config
from rasterio.session import DummySession

__all__ = ["HTTP_RETRY_DEFAULTS", "REMOTE_DEFAULTS", "GdalEnv", "is_remote"]

#: Options that make cloud-optimised reads over HTTP cheap: no directory listing probe for
#: sidecar files, only raster extensions may be fetched, neighbouring byte ranges are merged,
#: and GDAL's thread pool is on, so that a read spanning many internal blocks fetches all of
#: them at once, as parallel range requests (one per run of consecutive blocks), and decodes
#: them on several threads (see :mod:`tilerunner.imagery.reader` for the measurements).
REMOTE_DEFAULTS: Mapping[str, str] = MappingProxyType(
    {
        "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
        "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": (
            ".tif,.tiff,.jpg,.jpeg,.png,.ntf,.nitf,.jp2,.vrt,.ovr,.msk"
        ),
        "GDAL_HTTP_MULTIRANGE": "YES",
        "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
        "GDAL_NUM_THREADS": "ALL_CPUS",
    }
)

#: GDAL's own retry of a failed HTTP request (429, 5xx, timeouts) before a read fails: remote
#: reads get them unless the options, or the user's GDAL configuration (the
#: ``GDAL_HTTP_MAX_RETRY`` / ``GDAL_HTTP_RETRY_DELAY`` environment variables), set them.
HTTP_RETRY_DEFAULTS: Mapping[str, str] = MappingProxyType(
    {"GDAL_HTTP_MAX_RETRY": "3", "GDAL_HTTP_RETRY_DELAY": "0.5"}
)

# Options that only make sense for remote files: with EMPTY_DIR GDAL would also stop looking for
# local sidecars (world files, .aux.xml, external overviews), so they are dropped for local paths.
# Local reads keep GDAL's single-threaded decoding: there the model is what a worker waits for,
# and the reader threads already decode in parallel.
_REMOTE_ONLY = frozenset(
    {"GDAL_DISABLE_READDIR_ON_OPEN", "CPL_VSIL_CURL_ALLOWED_EXTENSIONS", "GDAL_NUM_THREADS"}
)

_REMOTE_SCHEMES = frozenset({"http", "https", "s3", "gs", "az"})


def is_remote(url: str) -> bool:
    """Whether ``url`` is read over the network (http(s)://, s3://, a /vsi network handler)."""
    if url.startswith("/vsi"):
        return not url.startswith(("/vsimem/", "/vsizip//", "/vsitar//", "/vsigzip//"))
    return urlsplit(url).scheme.lower() in _REMOTE_SCHEMES


@dataclass(frozen=True, slots=True)
class GdalEnv:
    """Immutable set of GDAL config options applied around every open and read.

    Build it with :meth:`default` or :meth:`for_s3`; ``options`` are plain strings exactly as GDAL
    expects them (``"YES"``, ``"FALSE"``, ``"EMPTY_DIR"``).
    """

    options: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        frozen = MappingProxyType({str(k): str(v) for k, v in self.options.items()})
        object.__setattr__(self, "options", frozen)

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.options.items())))

    @classmethod
    def default(cls, **extra: str) -> GdalEnv:
        """Range-read friendly defaults for http(s) and S3, plus any ``extra`` options."""
        return cls({**REMOTE_DEFAULTS, **extra})

    @classmethod
    def for_s3(
        cls,
        endpoint_url: str | None = None,
        region: str | None = None,
        *,
        unsigned: bool = False,
        requester_pays: bool = False,
        extra: Mapping[str, str] | None = None,
    ) -> GdalEnv:
        """Options for reading ``s3://`` URLs from AWS or an S3-compatible server.

        ``endpoint_url`` (``"http://127.0.0.1:9000"``) points GDAL at MinIO, moto or another
        S3-compatible server; such servers serve buckets as paths, so virtual hosting is turned
        off, and ``http://`` endpoints switch off TLS. ``unsigned`` reads public buckets without
        credentials.
        """
        options: dict[str, str] = dict(REMOTE_DEFAULTS)
        if endpoint_url:
            parts = urlsplit(endpoint_url if "://" in endpoint_url else f"https://{endpoint_url}")
            options["AWS_S3_ENDPOINT"] = parts.netloc + parts.path.rstrip("/")
            options["AWS_HTTPS"] = "NO" if parts.scheme == "http" else "YES"
            options["AWS_VIRTUAL_HOSTING"] = "FALSE"
        if region:
            options["AWS_REGION"] = region
            options["AWS_DEFAULT_REGION"] = region
        if unsigned:
            options["AWS_NO_SIGN_REQUEST"] = "YES"
        if requester_pays:
            options["AWS_REQUEST_PAYER"] = "requester"
        options.update(extra or {})
        return cls(options)

    def merged(self, **extra: str) -> GdalEnv:
        """A copy with ``extra`` options added or replaced."""
        return GdalEnv({**self.options, **extra})

    def options_for(self, url: str) -> dict[str, str]:
        """Options for opening ``url``; remote-only ones are dropped for local files, and
        remote ones gain GDAL's HTTP retries (:data:`HTTP_RETRY_DEFAULTS`) where unset."""
        if is_remote(url):
            options = dict(self.options)
            for key, value in HTTP_RETRY_DEFAULTS.items():
                if key not in options and get_gdal_config(key) is None:
                    options[key] = value
            return options
        return {k: v for k, v in self.options.items() if k not in _REMOTE_ONLY}

    def context(self, url: str) -> Any:
        """A ``rasterio.Env`` to open or read ``url`` in.

        The session is a dummy: rasterio would otherwise build a boto3 session on every entry
        when AWS variables are set, which costs milliseconds per tile read; opening an
        ``s3://`` URL still builds one inside ``rasterio.open``.
        """
        return rasterio.Env(session=DummySession(), **self.options_for(url))
