"""Settings: one validated object, built by the entry points and passed down.

Values come from ``TILERUNNER_*`` environment variables (e.g. ``TILERUNNER_CACHE_DIR``, the
name in any case); a bad value stops the program at start with a message naming the variable,
never a silent default. A plain pydantic model reads them (:func:`_from_environment`): every
command and worker process builds the settings first, and pydantic-settings' import (asyncio,
pydantic's dataclasses, its many sources) cost each of them more than the rest of the model.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from tilerunner.environ import DEFAULT_GDAL_CACHE_MB, tilerunner_variables
from tilerunner.errors import InvalidRequestError
from tilerunner.security.urls import UrlPolicy, parse_allowed_host

if TYPE_CHECKING:  # imported when asked for: GDAL's import costs every command's start-up
    from tilerunner.imagery import GdalEnv
    from tilerunner.xyz.fetch import FetchOptions

__all__ = ["Settings", "load_settings"]


def _from_environment() -> dict[str, str]:
    """The ``TILERUNNER_*`` variables that name a setting, by field name (names in any case)."""
    fields = Settings.model_fields
    return {name: value for name, value in tilerunner_variables().items() if name in fields}


class Settings(BaseModel):
    """The settings: ``TILERUNNER_*`` environment variables, overridden by keyword arguments."""

    model_config = ConfigDict(extra="ignore", frozen=True, validate_default=True)

    def __init__(self, **values: Any) -> None:
        super().__init__(**{**_from_environment(), **values})

    store_url: str = "sqlite:///tilerunner-state.db"
    """State database for serve/worker/submit/status/... (``--store`` overrides it)."""
    broker_url: str | None = None
    """Queue URL; defaults to the store URL (the embedded SQLite file holds both)."""
    cache_dir: Path = Field(default_factory=lambda: Path.home() / ".cache" / "tilerunner")
    """Where zoo weights and demo photos are kept once fetched."""
    api_url: str | None = None
    """API of a ``tilerunner serve`` for workers that pull work over HTTP (``worker --api``)."""
    api_token: str | None = None
    """Key with the worker scope for ``worker --api`` (``--token`` overrides it)."""
    lease_seconds: float = Field(default=60.0, gt=0)
    """Visibility timeout of a leased region; heartbeats extend it every third of it."""
    max_attempts: int = Field(default=3, ge=1)
    """Deliveries of a region before it is dead-lettered."""
    read_retries: int = Field(default=3, ge=0, le=10)
    """Tries again of a tile read that failed transiently (a timeout, a 5xx from object
    storage), with a short doubling back-off, before the tile counts as failed."""
    read_strip_mb: int = Field(default=64, ge=0, le=4096)
    """Budget of one strip (MiB of decoded pixels) when a worker reads a region in
    block-aligned strips of tile rows, each fetched in one burst of parallel range requests;
    0 reads tile by tile. Each reader thread holds about twice this at most."""
    read_ahead_mb: int = Field(default=128, ge=0, le=4096)
    """Decoded MiB of its image's first strips that a one-worker ``run`` reads while it starts
    (imports, state, model, planning), handed to its worker; 0 reads nothing ahead."""
    claim_seconds: float = Field(default=30.0, gt=0)
    """Lease of a coordinator's claim on an aggregation, extended every third of it while it
    runs; a killed coordinator's work is taken over after about this long."""
    callback_timeout_seconds: float = Field(default=10.0, gt=0)
    """Timeout of one callback request."""
    callback_max_attempts: int = Field(default=8, ge=1)
    """Attempts of a callback delivery (backoff doubling from 1 s to 10 min) before giving up."""
    s3_endpoint_url: str | None = None
    """S3-compatible endpoint for s3:// sources (a local object store, for example)."""
    gdal_cache_mb: int = Field(default=DEFAULT_GDAL_CACHE_MB, ge=16)
    """GDAL's block cache per process (MB), unless GDAL_CACHEMAX is set; GDAL's own default,
    5 % of RAM, lets a worker's memory grow with the image it reads."""
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    """Largest request body the API accepts (bytes); larger ones get 413 before parsing."""
    max_work_body_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    """Largest body of the worker pull protocol (``/v1/work/...``): a region's features."""
    log_level: str = Field(default="WARNING", pattern="^(DEBUG|INFO|WARNING|ERROR)$")
    log_json: bool = False
    # What a client may name in a job document in server mode (docs/security.md); the lists
    # are comma-separated (``TILERUNNER_ALLOWED_HOSTS=*.internal.example,10.0.0.0/8``) or JSON.
    allowed_source_schemes: tuple[str, ...] = UrlPolicy.source_schemes
    """URL schemes a client may use for sources (local paths: ``allowed_local_roots``)."""
    allowed_output_schemes: tuple[str, ...] = UrlPolicy.output_schemes
    """URL schemes a client may use for outputs (local paths: ``allowed_local_roots``)."""
    allowed_callback_schemes: tuple[str, ...] = UrlPolicy.callback_schemes
    """URL schemes a client may use for its callback."""
    allowed_hosts: tuple[str, ...] = ()
    """Host name patterns (``*.internal.example``), addresses or CIDR blocks (``10.0.0.0/8``)
    a client may name although they are loopback, link-local or private."""
    allowed_local_roots: tuple[Path, ...] = ()
    """Absolute folders inside which a client may name local paths and file:// URLs."""
    max_sources_per_job: int = Field(default=UrlPolicy.max_sources_per_job, ge=1)
    """Most sources one job may list (and its folders and patterns expand to)."""
    max_tile_size: int = Field(default=UrlPolicy.max_tile_size, ge=16)
    """Largest ``tiling.tile_size`` a client may ask for (px)."""
    # How workers fetch XYZ tiles (docs/xyz-tiles.md); credentials live here, never in jobs.
    xyz_token: SecretStr | None = None
    """Fills ``{token}`` in a tile job's URL template."""
    xyz_headers: dict[str, str] = Field(default_factory=dict)
    """Extra request headers for tile requests, as JSON (``{"Authorization": "Bearer ..."}``)."""
    xyz_per_host: int = Field(default=16, ge=1, le=256)
    """Tile requests in flight at once per host."""
    xyz_timeout_seconds: float = Field(default=10.0, gt=0)
    """Timeout of one tile request."""
    xyz_retries: int = Field(default=2, ge=0, le=10)
    """Tries again of a tile request that timed out or got a 429/5xx."""
    xyz_cache_dir: Path | None = None
    """Keep fetched tiles here and never fetch them again (off by default)."""

    @field_validator(
        "allowed_source_schemes",
        "allowed_output_schemes",
        "allowed_callback_schemes",
        "allowed_hosts",
        "allowed_local_roots",
        mode="before",
    )
    @classmethod
    def _split_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            if value.strip().startswith("["):
                return json.loads(value)
            return tuple(item.strip() for item in value.split(",") if item.strip())
        return value

    @field_validator("xyz_headers", mode="before")
    @classmethod
    def _decode_json(cls, value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) else value

    @field_validator("allowed_source_schemes", "allowed_output_schemes", "allowed_callback_schemes")
    @classmethod
    def _check_schemes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        schemes = tuple(scheme.lower() for scheme in value)
        if bad := [s for s in schemes if not re.fullmatch(r"[a-z][a-z0-9+.-]*", s)]:
            raise ValueError(f"{bad} are not URL schemes; list names such as https,s3")
        return schemes

    @field_validator("allowed_hosts")
    @classmethod
    def _check_hosts(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for entry in value:
            parse_allowed_host(entry)
        return value

    @field_validator("allowed_local_roots")
    @classmethod
    def _check_roots(cls, value: tuple[Path, ...]) -> tuple[Path, ...]:
        if bad := [str(root) for root in value if not root.is_absolute()]:
            raise ValueError(f"{bad} are not absolute paths; list folders such as /data/in")
        return value

    def broker(self) -> str:
        return self.broker_url or self.store_url

    def fetch_options(self) -> FetchOptions:
        """How this process's workers fetch XYZ tiles."""
        from tilerunner.xyz.fetch import FetchOptions

        return FetchOptions(
            per_host=self.xyz_per_host,
            timeout_seconds=self.xyz_timeout_seconds,
            retries=self.xyz_retries,
            headers=dict(self.xyz_headers),
            token=None if self.xyz_token is None else self.xyz_token.get_secret_value(),
            cache_dir=self.xyz_cache_dir,
        )

    def gdal_env(self) -> GdalEnv:
        from tilerunner.imagery import GdalEnv

        return GdalEnv.for_s3(endpoint_url=self.s3_endpoint_url)

    def url_policy(self) -> UrlPolicy:
        """What a client may name in a job document (:mod:`tilerunner.security.urls`)."""
        return UrlPolicy(
            source_schemes=self.allowed_source_schemes,
            output_schemes=self.allowed_output_schemes,
            callback_schemes=self.allowed_callback_schemes,
            allowed_hosts=self.allowed_hosts,
            allowed_local_roots=tuple(str(root) for root in self.allowed_local_roots),
            max_sources_per_job=self.max_sources_per_job,
            max_tile_size=self.max_tile_size,
        )


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as error:
        problems = "; ".join(
            f"TILERUNNER_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}"
            for e in error.errors()
        )
        raise InvalidRequestError(f"invalid settings: {problems}") from None
