"""Settings: one validated object, built by the entry points and passed down.

Values come from ``TILERUNNER_*`` environment variables (e.g. ``TILERUNNER_CACHE_DIR``); a bad
value stops the program at start with a message naming the variable, never a silent default.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from tilerunner.errors import InvalidRequestError
from tilerunner.imagery import GdalEnv

__all__ = ["Settings", "load_settings"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TILERUNNER_", extra="ignore", frozen=True)

    store_url: str = "sqlite:///tilerunner-state.db"
    """State database for serve/worker/submit/status/... (``--store`` overrides it)."""
    broker_url: str | None = None
    """Queue URL; defaults to the store URL (the embedded SQLite file holds both)."""
    cache_dir: Path = Field(default_factory=lambda: Path.home() / ".cache" / "tilerunner")
    """Where zoo weights and demo photos are kept once fetched."""
    lease_seconds: float = Field(default=60.0, gt=0)
    """Visibility timeout of a leased region; heartbeats extend it every third of it."""
    max_attempts: int = Field(default=3, ge=1)
    """Deliveries of a region before it is dead-lettered."""
    s3_endpoint_url: str | None = None
    """S3-compatible endpoint for s3:// sources (a local object store, for example)."""
    gdal_cache_mb: int = Field(default=256, ge=16)
    """GDAL's block cache per process (MB), unless GDAL_CACHEMAX is set; GDAL's own default,
    5 % of RAM, lets a worker's memory grow with the image it reads."""
    log_level: str = Field(default="WARNING", pattern="^(DEBUG|INFO|WARNING|ERROR)$")
    log_json: bool = False

    def broker(self) -> str:
        return self.broker_url or self.store_url

    def gdal_env(self) -> GdalEnv:
        return GdalEnv.for_s3(endpoint_url=self.s3_endpoint_url)


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as error:
        problems = "; ".join(
            f"TILERUNNER_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}"
            for e in error.errors()
        )
        raise InvalidRequestError(f"invalid settings: {problems}") from None
