"""The watch loop: find objects, record them, make their jobs, plan and finish those jobs.

One look (:meth:`Watcher.poll`), in this order, so that a kill at any point loses and doubles
nothing:

1. the source says what it found; objects recorded before (by this or an earlier watcher of the
   same source) are skipped, the others are recorded as waiting, in one transaction;
2. waiting objects form jobs (:class:`RollingPolicy`); each job is inserted together with its
   members' claim on it, in one transaction, under an id derived from its members;
3. only then is the source told (an SQS queue deletes the messages);
4. jobs of this watch still in ``planning`` are planned (images opened, regions enqueued),
   as ``tilerunner submit`` does; a coordinator of ``serve`` may claim them first;
5. aggregations of this watch's finished jobs are run, as ``submit --wait`` does, so a watcher
   and workers need no ``serve``; the outbox claims keep this safe beside one.

With ``remote`` (:class:`tilerunner.watch.remote.RemoteJobs`), step 2 submits the jobs to a
``tilerunner serve`` instead, whose coordinator does steps 4 and 5.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tilerunner.coordinator import QueueFor, process_outbox, process_plans
from tilerunner.errors import QueueError, RetryableError, StoreError
from tilerunner.imagery import GdalEnv
from tilerunner.jobs import JobState
from tilerunner.store import Store
from tilerunner.store.watched import WatchedObject
from tilerunner.watch.remote import RemoteJobs
from tilerunner.watch.rolling import RollingPolicy, job_id_for
from tilerunner.watch.sources import ObjectSource
from tilerunner.watch.template import JobTemplate

__all__ = ["Look", "Watcher"]

log = logging.getLogger(__name__)

#: Failures that a later look may not meet: the watcher backs off and looks again.
_TRANSIENT = (StoreError, QueueError, RetryableError)

OnJob = Callable[[str, Sequence[WatchedObject]], None]


@dataclass(frozen=True, slots=True)
class Look:
    """What one look did: objects newly recorded, jobs made, and whether to look again now."""

    recorded: int
    jobs: list[str]
    more: bool


class Watcher:
    """Makes the jobs of a source's new objects, look by look (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        queue_for: QueueFor,
        source: ObjectSource,
        template: JobTemplate,
        policy: RollingPolicy | None = None,
        *,
        project: str = "default",
        env: GdalEnv | None = None,
        s3_endpoint_url: str | None = None,
        on_job: OnJob | None = None,
        clock: Callable[[], float] = time.time,
        remote: RemoteJobs | None = None,
    ) -> None:
        self.store = store
        self.queue_for = queue_for
        self.source = source
        self.template = template
        self.policy = policy or RollingPolicy()
        self.project = project
        self.env = env
        self.s3_endpoint_url = s3_endpoint_url
        self.on_job = on_job
        self.clock = clock
        self.remote = remote
        self.watch = source.name
        self.owner = f"watch-{socket.gethostname()}-{os.getpid()}"
        self._seen = store.seen_objects(self.watch)

    def poll(self) -> Look:
        """One look (steps 1 to 5 of the module docstring)."""
        found = self.source.discover()
        fresh = [obj for obj in found.objects if obj.identity not in self._seen]
        recorded = self.store.record_objects(self.watch, fresh, at=self.clock()) if fresh else []
        self._seen.update(obj.identity for obj in fresh)
        made = self.make_jobs()
        self.source.acknowledge(found.receipts)
        if self.remote is None:  # a remote API's coordinator plans and finishes its jobs
            self.plan_jobs()
            self.finish_jobs()
        return Look(len(recorded), made, found.more)

    def make_jobs(self) -> list[str]:
        """Make the jobs that the waiting objects complete now; returns their ids."""
        batches = self.policy.batches(self.store.waiting_objects(self.watch), self.clock())
        if self.remote is not None:
            submitted = self.remote.make(batches)
            for job_id, members in submitted:
                if self.on_job is not None:
                    self.on_job(job_id, members)
            return [job_id for job_id, _ in submitted]
        made = []
        for members in batches:
            job_id = job_id_for(self.watch, members)
            spec = self.template.spec_for(members, job_id)
            document = spec.model_dump(mode="json")
            if self.store.accept_watched_job(
                self.watch, job_id, spec.name, document, members, project=self.project
            ):
                made.append(job_id)
                log.info("job %s: %d object(s) of %s", job_id, len(members), self.watch)
                if self.on_job is not None:
                    self.on_job(job_id, members)
        return made

    def plan_jobs(self) -> None:
        """Plan this watch's jobs in ``planning`` (left there too by a watcher killed after
        making them); one that a coordinator holds the claim of is left to it."""
        for job_id in self.store.watched_jobs(self.watch, [JobState.PLANNING]):
            process_plans(self.store, self.queue_for, self.owner, self.env, job_id=job_id)

    def finish_jobs(self) -> None:
        """Run the pending aggregations of this watch's jobs."""
        for job_id in self.store.aggregations_due(self.watch):
            process_outbox(self.store, self.owner, self.env, self.s3_endpoint_url, job_id=job_id)

    def run(self, stop: threading.Event, *, once: bool = False, poll_seconds: float = 10.0) -> None:
        """Look until ``stop`` is set (or, with ``once``, until a look finds nothing more);
        store, broker and source failures that may pass are logged and retried with back-off
        (with ``once`` they are raised)."""
        failures = 0
        while not stop.is_set():
            try:
                look = self.poll()
                failures = 0
            except _TRANSIENT as error:
                if once:
                    raise  # a cron job reports it, and the next run looks again
                failures += 1
                wait = min(60.0, poll_seconds * 2 ** min(failures, 6))
                log.warning("watch %s: %s; looking again in %.1f s", self.watch, error, wait)
                stop.wait(wait)
                continue
            if once and not look.more:
                return
            stop.wait(min(poll_seconds, 0.5) if look.more else poll_seconds)
