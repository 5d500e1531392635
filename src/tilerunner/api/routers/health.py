"""Health and metrics: ``/livez`` and ``/readyz`` answer without a key, ``/metrics`` needs
``read``."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from tilerunner.api.deps import ReadCaller, StoreDep
from tilerunner.api.metrics import render_metrics
from tilerunner.api.schemas import Health
from tilerunner.errors import StoreError

__all__ = ["router"]

router = APIRouter(tags=["health"])


@router.get("/livez")
def livez() -> Health:
    """The process answers."""
    return Health(status="ok")


@router.get("/readyz")
def readyz(store: StoreDep) -> Health:
    """The state database answers; 503 if not."""
    try:
        with store.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except DBAPIError as error:
        raise StoreError(f"state database not reachable: {error.orig}") from None
    return Health(status="ready")


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(_caller: ReadCaller, store: StoreDep) -> str:
    """Prometheus metrics, computed from the store when scraped."""
    return render_metrics(store)
