"""``GET /v1/models``: the model names workers serve, who serves them, whether any is live.

A model is live when one of its workers heartbeated within the last two lease periods (a
worker heartbeats every third of one). Its task, classes, backend and spec are what its most
recently seen worker reported.
"""

from __future__ import annotations

import time

from fastapi import APIRouter

from tilerunner.api.deps import ReadCaller, SettingsDep, StoreDep
from tilerunner.api.schemas import ModelInfo, WorkerInfo

__all__ = ["router"]

router = APIRouter(tags=["models"])


@router.get("/v1/models")
def list_models(_caller: ReadCaller, store: StoreDep, settings: SettingsDep) -> list[ModelInfo]:
    """Models by name, from the workers table."""
    window = 2 * settings.lease_seconds
    now = time.time()
    served: dict[str, list[WorkerInfo]] = {}
    for row in store.workers():
        worker = WorkerInfo.model_validate(row)
        for name in worker.models:
            served.setdefault(name, []).append(worker)
    out = []
    for name, workers in sorted(served.items()):
        newest = max(workers, key=lambda w: w.last_seen)
        info = (newest.model_info or {}).get(name, {})
        out.append(
            ModelInfo(
                name=name,
                workers=sorted(w.id for w in workers),
                live=any(now - w.last_seen <= window for w in workers),
                last_seen=newest.last_seen,
                task=info.get("task"),
                classes=info.get("classes"),
                backend=info.get("backend"),
                spec=info.get("spec"),
            )
        )
    return out
