"""Coordinator: planning, repair sweeps and aggregation."""

from tilerunner.coordinator.aggregator import (
    AggregateResult,
    aggregate_job,
    image_features,
    job_features,
    process_outbox,
)
from tilerunner.coordinator.planner import QueueFor, plan_images, publish_pending, submit_job
from tilerunner.coordinator.service import Coordinator
from tilerunner.coordinator.sweeper import reconcile_dead_letters, repair
from tilerunner.coordinator.views import job_view

__all__ = [
    "AggregateResult",
    "Coordinator",
    "QueueFor",
    "aggregate_job",
    "image_features",
    "job_features",
    "job_view",
    "plan_images",
    "process_outbox",
    "publish_pending",
    "reconcile_dead_letters",
    "repair",
    "submit_job",
]
