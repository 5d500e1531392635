"""``GET /v1/workers``: the workers that registered, with their heartbeats and throughput."""

from __future__ import annotations

from fastapi import APIRouter

from tilerunner.api.deps import ReadCaller, StoreDep
from tilerunner.api.schemas import WorkerInfo

__all__ = ["router"]

router = APIRouter(tags=["workers"])


@router.get("/v1/workers")
def list_workers(_caller: ReadCaller, store: StoreDep) -> list[WorkerInfo]:
    """Every worker that ever heartbeated, by id (workers serve every project)."""
    return [WorkerInfo.model_validate(row) for row in store.workers()]
