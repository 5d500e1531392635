"""The workers table: each worker's registration and heartbeat (host, version, GPU, models,
leases held, throughput), for ``GET /v1/workers`` and ``GET /v1/models``."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, select, update

from tilerunner.store.base import StoreBase
from tilerunner.store.tables import workers

__all__ = ["WorkerStore"]


class WorkerStore(StoreBase):
    """The worker methods of :class:`tilerunner.store.Store` (a mixin)."""

    def worker_heartbeat(
        self,
        worker_id: str,
        host: str,
        pid: int,
        models: list[str],
        leases_held: int,
        tiles_done: int,
        regions_done: int,
        tiles_per_second: float,
        *,
        version: str | None = None,
        gpu: str | None = None,
        model_info: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        now = self._clock()
        values = {
            "version": version,
            "gpu": gpu,
            "model_info": model_info,
            "host": host,
            "pid": pid,
            "models": models,
            "last_seen": now,
            "leases_held": leases_held,
            "tiles_done": tiles_done,
            "regions_done": regions_done,
            "tiles_per_second": tiles_per_second,
        }
        with self._begin() as conn:
            if not conn.execute(
                update(workers).where(workers.c.id == worker_id).values(**values)
            ).rowcount:
                conn.execute(insert(workers).values(id=worker_id, started_at=now, **values))

    def workers(self) -> list[dict[str, Any]]:
        with self._begin() as conn:
            return [
                dict(r) for r in conn.execute(select(workers).order_by(workers.c.id)).mappings()
            ]
