"""HTTP API: FastAPI app factory, routes, error -> status map, metrics."""

from tilerunner.api.app import create_app

__all__ = ["create_app"]
