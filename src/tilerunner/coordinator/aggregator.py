"""Aggregation: merge what every region kept into one clean result per image, write outputs.

Runs exactly once per job: it is triggered by the outbox row that the last region's completion
inserted, claimed with an expiring lease (a crashed aggregator's claim is taken over), and the
final job state is a guarded transition. Cross-region duplicates are removed here by the merge
over the whole image, so outputs never depend on region size or delivery order. Boxes are
georeferenced from what planning recorded (no source is reopened), and the merged features are
stored (replacing those of an earlier run), so reading a finished job's results merges nothing.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from contextlib import nullcontext
from dataclasses import dataclass

from tilerunner.coordinator.results import (
    image_features,
    job_features,
    merged_features,
    table_results,
)
from tilerunner.coordinator.segment import ClassStatistics, aggregate_segment
from tilerunner.imagery import GdalEnv
from tilerunner.jobs import JobSpec, JobState
from tilerunner.outputs import FeatureTable, writer_for
from tilerunner.photos.results import write_photo_outputs
from tilerunner.store import Counts, Store
from tilerunner.store.outbox import CLAIM_SECONDS, ClaimKeeper
from tilerunner.xyz.results import hits_of

__all__ = [
    "AggregateResult",
    "aggregate_job",
    "image_features",
    "job_features",
    "process_outbox",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AggregateResult:
    job_id: str
    status: JobState
    features: int
    outputs: list[str]
    counts: Counts
    labels: dict[str, int]
    """Features per label; for a segment job, pixels per class."""
    statistics: tuple[ClassStatistics, ...] = ()
    """Segment jobs: pixels and area per class."""


def aggregate_job(
    store: Store,
    job_id: str,
    env: GdalEnv | None = None,
    s3_endpoint_url: str | None = None,
    keeper: ClaimKeeper | None = None,
) -> AggregateResult:
    """Merge, write every output, set the final state. Safe to repeat (outputs are replaced).

    ``keeper``: the claim on the aggregation, extended inside its long transactions."""
    job = store.get_job(job_id)
    if job is None:
        raise LookupError(job_id)
    if job.status in (JobState.CANCELLING, JobState.CANCELLED):
        # its last regions finished after the cancel: what finished is kept, nothing is written
        counts = store.counts(job_id)
        log.info("job %s was cancelled; not aggregated", job_id)
        return AggregateResult(job_id, JobState(job.status), 0, [], counts, {})
    store.set_job_state(job_id, JobState.AGGREGATING)
    spec = JobSpec.model_validate(job.spec)
    statistics: list[ClassStatistics] = []
    if spec.photos is not None:
        n_features, labels, uris = write_photo_outputs(store, job_id, spec, s3_endpoint_url)
    elif spec.pipeline[0].segment is not None:
        uris, statistics = aggregate_segment(store, job_id, spec, env, s3_endpoint_url)
        n_features, labels = 0, {s.label: s.pixels for s in statistics}
    else:
        n_features, labels, uris = _write_rasters(store, job_id, spec, env, s3_endpoint_url, keeper)
    store.set_outputs(job_id, uris)
    counts = store.counts(job_id)
    # photos: some photo gave its results; rasters: some tile gave its features
    some = (
        counts.images_done if spec.photos is not None else counts.tiles_done - counts.tiles_failed
    )
    if counts.regions_failed == 0 and counts.images_failed == 0 and counts.tiles_failed == 0:
        status = JobState.SUCCEEDED
    elif some > 0:
        status = JobState.PARTIAL
    else:
        status = JobState.FAILED
    errors = store.errors(job_id)
    error = errors[0].message if errors and status is not JobState.SUCCEEDED else None
    store.set_job_state(job_id, status, error=error)
    log.info("job %s %s: %d feature(s)", job_id, status.value, n_features)
    return AggregateResult(job_id, status, n_features, uris, counts, labels, tuple(statistics))


def _write_rasters(
    store: Store,
    job_id: str,
    spec: JobSpec,
    env: GdalEnv | None,
    s3_endpoint_url: str | None,
    keeper: ClaimKeeper | None,
) -> tuple[int, dict[str, int], list[str]]:
    """Merge per image, store the results, write the outputs; (features, labels, uris)."""
    started = time.perf_counter()
    per_image = [
        (i, t)
        for i, t in merged_features(store, job_id, spec, env, finished=True, keeper=keeper)
        if len(t)
    ]
    table = FeatureTable.concat(t for _, t in per_image) if per_image else FeatureTable.empty()
    merged = time.perf_counter()
    with keeper.within() if keeper is not None else nullcontext(None) as renew:
        store.replace_results(job_id, [table_results(i, t) for i, t in per_image], renew)
    stored = time.perf_counter()
    uris = []
    for output in spec.outputs:
        writer = writer_for(output.uri, output.format, s3_endpoint_url=s3_endpoint_url)
        writer(hits_of(table, output), output.uri, None)
        uris.append(output.uri)
    log.info(
        "job %s: merged %d feature(s) in %.3f s, stored them in %.3f s, wrote %d output(s) "
        "in %.3f s", job_id, len(table), merged - started, stored - merged, len(uris),
        time.perf_counter() - stored,
    )  # fmt: skip
    return len(table), dict(Counter(table.label).most_common()), uris


def process_outbox(
    store: Store,
    owner: str,
    env: GdalEnv | None = None,
    s3_endpoint_url: str | None = None,
    *,
    job_id: str | None = None,
    claim_seconds: float = CLAIM_SECONDS,
) -> AggregateResult | None:
    """Claim and run one pending aggregation (of ``job_id`` if given), if any.

    The claim is a lease of ``claim_seconds``, extended every third of it while the work goes
    on, so another coordinator takes over about ``claim_seconds`` after this one died.
    """
    item = store.claim_outbox(owner, claim_seconds, job_id=job_id)
    if item is None:
        return None
    with ClaimKeeper(store, item, owner, claim_seconds) as keeper:
        result = aggregate_job(store, item.job_id, env, s3_endpoint_url, keeper)
    store.finish_outbox(item)
    return result
