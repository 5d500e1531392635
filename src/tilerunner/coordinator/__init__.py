"""Coordinator: planning, repair sweeps and aggregation."""

from tilerunner.coordinator.aggregator import (
    AggregateResult,
    aggregate_job,
    image_features,
    process_outbox,
)
from tilerunner.coordinator.planner import QueueFor, plan_images, publish_pending, submit_job
from tilerunner.coordinator.sweeper import reconcile_dead_letters, repair

__all__ = [
    "AggregateResult",
    "QueueFor",
    "aggregate_job",
    "image_features",
    "plan_images",
    "process_outbox",
    "publish_pending",
    "reconcile_dead_letters",
    "repair",
    "submit_job",
]
