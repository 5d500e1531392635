"""Coordinator: planning, repair sweeps and aggregation."""

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
