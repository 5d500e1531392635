"""Coordinator: planning, repair sweeps and aggregation.

The names below are imported on first use (:mod:`tilerunner.lazy`): ``tilerunner run`` plans
and aggregates without the service's callback deliveries (httpx) or the cluster's job formats.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tilerunner.lazy import exports_on_use

if TYPE_CHECKING:
    from tilerunner.coordinator.aggregator import (
        AggregateResult,
        aggregate_job,
        image_features,
        job_features,
        process_outbox,
    )
    from tilerunner.coordinator.cancel import cancel_job, finish_cancelling
    from tilerunner.coordinator.planner import (
        QueueFor,
        accept_job,
        plan_images,
        plan_job,
        process_plans,
        publish_pending,
        submit_job,
    )
    from tilerunner.coordinator.requeue import Retried, retry_failed, retry_failed_tiles
    from tilerunner.coordinator.results import JobResults, job_results
    from tilerunner.coordinator.service import Coordinator
    from tilerunner.coordinator.sweeper import reconcile_dead_letters, repair
    from tilerunner.coordinator.views import job_view

__all__ = [
    "AggregateResult",
    "Coordinator",
    "JobResults",
    "QueueFor",
    "Retried",
    "accept_job",
    "aggregate_job",
    "cancel_job",
    "finish_cancelling",
    "image_features",
    "job_features",
    "job_results",
    "job_view",
    "plan_images",
    "plan_job",
    "process_outbox",
    "process_plans",
    "publish_pending",
    "reconcile_dead_letters",
    "repair",
    "retry_failed",
    "retry_failed_tiles",
    "submit_job",
]

#: Where each name lives.
_HOMES = {
    "AggregateResult": "aggregator",
    "aggregate_job": "aggregator",
    "image_features": "aggregator",
    "job_features": "aggregator",
    "process_outbox": "aggregator",
    "cancel_job": "cancel",
    "finish_cancelling": "cancel",
    "QueueFor": "planner",
    "accept_job": "planner",
    "plan_images": "planner",
    "plan_job": "planner",
    "process_plans": "planner",
    "publish_pending": "planner",
    "submit_job": "planner",
    "Retried": "requeue",
    "retry_failed": "requeue",
    "retry_failed_tiles": "requeue",
    "JobResults": "results",
    "job_results": "results",
    "Coordinator": "service",
    "reconcile_dead_letters": "sweeper",
    "repair": "sweeper",
    "job_view": "views",
}

__getattr__ = exports_on_use(__name__, _HOMES)
