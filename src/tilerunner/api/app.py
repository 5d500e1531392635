"""The HTTP API (FastAPI; OpenAPI at /docs): jobs, workers, metrics, health."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.responses import PlainTextResponse, StreamingResponse
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from tilerunner import __version__
from tilerunner.api.errors import install_error_handlers
from tilerunner.api.metrics import render_metrics
from tilerunner.coordinator import QueueFor, job_features, job_view, submit_job
from tilerunner.errors import StoreError
from tilerunner.jobs import JOB_TERMINAL, JobState, parse_job
from tilerunner.outputs import geojson_chunks
from tilerunner.settings import Settings
from tilerunner.store import Store

__all__ = ["create_app"]


def create_app(settings: Settings, store: Store, queue_for: QueueFor) -> FastAPI:
    """Build the API over an open store and a queue factory (composition root: ``serve``)."""
    app = FastAPI(title="tilerunner", version=__version__)
    install_error_handlers(app)
    env = settings.gdal_env()

    def _job(job_id: str) -> dict[str, Any]:
        view = job_view(store, job_id)
        if view is None:
            raise HTTPException(404, f"no job {job_id!r}")
        return view

    @app.post("/v1/jobs", status_code=201)
    def submit(document: dict[str, Any]) -> dict[str, Any]:
        """Validate, plan and enqueue a job document; returns the job object."""
        spec = parse_job(document)
        job_id, _ = submit_job(store, queue_for, spec, env=env)
        return _job(job_id)

    @app.get("/v1/jobs")
    def list_jobs(limit: int = 50) -> list[dict[str, Any]]:
        return [
            {"id": j.id, "name": j.name, "status": j.status, "created_at": j.created_at}
            for j in store.list_jobs(limit)
        ]

    @app.get("/v1/jobs/{job_id}")
    def get_job(job_id: str) -> dict[str, Any]:
        return _job(job_id)

    @app.post("/v1/jobs/{job_id}/cancel")
    def cancel(job_id: str) -> dict[str, Any]:
        view = _job(job_id)
        if JobState(view["status"]) not in JOB_TERMINAL:
            store.set_job_state(job_id, JobState.CANCELLED)
        return _job(job_id)

    @app.get("/v1/jobs/{job_id}/events")
    def events(job_id: str) -> list[dict[str, Any]]:
        _job(job_id)
        return store.events(job_id)

    @app.get("/v1/jobs/{job_id}/errors")
    def errors(job_id: str) -> list[dict[str, Any]]:
        return list(_job(job_id)["errors"])

    @app.get("/v1/jobs/{job_id}/results")
    def results(job_id: str) -> StreamingResponse:
        """The job's merged features as a GeoJSON FeatureCollection (streamed)."""
        _job(job_id)
        table = job_features(store, job_id, env)
        return StreamingResponse(geojson_chunks(table), media_type="application/geo+json")

    @app.get("/v1/workers")
    def workers() -> list[dict[str, Any]]:
        return store.workers()

    @app.get("/metrics", response_class=PlainTextResponse)
    def metrics() -> str:
        return render_metrics(store)

    @app.get("/livez")
    def livez() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> dict[str, str]:
        try:
            with store.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except DBAPIError as error:
            raise StoreError(f"state database not reachable: {error.orig}") from None
        return {"status": "ready"}

    return app
