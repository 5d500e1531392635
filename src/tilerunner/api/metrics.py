"""Prometheus metrics, computed from the store when scraped."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Gauge, generate_latest

from tilerunner.store import Store

__all__ = ["render_metrics"]


def render_metrics(store: Store) -> str:
    registry = CollectorRegistry()
    jobs = Gauge("tilerunner_jobs", "Jobs by status", ["status"], registry=registry)
    regions = Gauge(
        "tilerunner_active_regions", "Regions of active jobs by state", ["state"], registry=registry
    )
    workers = Gauge("tilerunner_workers_seen", "Workers seen in the last minute", registry=registry)
    tiles_rate = Gauge(
        "tilerunner_worker_tiles_per_second", "Throughput per worker", ["worker"], registry=registry
    )
    for job in store.list_jobs(limit=1000):
        jobs.labels(job.status).inc()
    done = failed = pending = 0
    for job_id in store.active_jobs():
        c = store.counts(job_id)
        done += c.regions_done
        failed += c.regions_failed
        pending += c.regions_total - c.regions_finished
    regions.labels("done").set(done)
    regions.labels("failed").set(failed)
    regions.labels("pending").set(pending)
    now = time.time()
    for worker in store.workers():
        if now - worker["last_seen"] < 60:
            workers.inc()
            tiles_rate.labels(worker["id"]).set(worker["tiles_per_second"])
    return generate_latest(registry).decode()
