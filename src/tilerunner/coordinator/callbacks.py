"""Signed job callbacks, delivered through the outbox with retries.

When a job reaches a final state the store inserts a ``callback:<state>`` outbox row in the
same transaction (and the coordinator inserts ``callback:progress:<fraction>`` rows as the job
passes its milestones). :class:`CallbackDispatcher` claims due rows and POSTs the job object
(:func:`tilerunner.coordinator.views.job_view`) on a small thread pool, so a slow receiver never
holds up aggregation or the sweep. A row is done after one 2xx answer; any other answer or a
network error is retried with jittered exponential backoff until ``max_attempts``. Redirects
are not followed, and the URL is checked again right before each attempt.

The signature (style ``tilerunner``), verified by :func:`verify_signature`::

    X-Tilerunner-Timestamp: <unix seconds>
    X-Tilerunner-Signature: sha256=<hex HMAC-SHA256(secret, f"{timestamp}.".encode() + body)>

Delivery is at least once: a coordinator that dies after the receiver answered but before the
row was marked done delivers again after a restart, so receivers should be idempotent by
``X-Tilerunner-Event`` and the job id.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import random
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pydantic import ValidationError

from tilerunner import __version__
from tilerunner.coordinator.results import job_results
from tilerunner.coordinator.views import job_view
from tilerunner.errors import RefusedUrlError, StoreError
from tilerunner.jobs import CallbackSpec, JobSpec
from tilerunner.jobs.compat import antenna
from tilerunner.outputs import geojson_features
from tilerunner.security.urls import UrlPolicy, check_callback_url
from tilerunner.store import Store
from tilerunner.store.outbox import CALLBACK, CallbackDelivery, progress_kind

if TYPE_CHECKING:  # httpx is imported at the first delivery: its import is not cheap
    import httpx

__all__ = [
    "BODY_SHAPES",
    "WITH_FEATURES",
    "Backoff",
    "BodyShape",
    "CallbackDispatcher",
    "Milestones",
    "event_name",
    "sign",
    "tilerunner_body",
    "verify_signature",
]

log = logging.getLogger(__name__)

EVENT = "X-Tilerunner-Event"
MILESTONE = "X-Tilerunner-Milestone"
SIGNATURE = "X-Tilerunner-Signature"
TIMESTAMP = "X-Tilerunner-Timestamp"

#: Builds the body and headers of one delivery from the job object and the callback settings.
BodyShape = Callable[[dict[str, Any], CallbackSpec], tuple[bytes, dict[str, str]]]


def sign(secret: str, timestamp: int | str, body: bytes) -> str:
    """The ``X-Tilerunner-Signature`` value of ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"sha256={digest.hexdigest()}"


def verify_signature(
    secret: str,
    timestamp: int | str,
    body: bytes,
    header: str,
    tolerance: float = 300,
    *,
    now: float | None = None,
) -> bool:
    """True if ``header`` signs ``body`` with ``secret`` and ``timestamp`` is within
    ``tolerance`` seconds of ``now`` (a replayed old request fails). Constant-time compare."""
    try:
        sent = int(timestamp)
    except (TypeError, ValueError):
        return False
    if abs((time.time() if now is None else now) - sent) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, sent, body).encode(), header.strip().encode())


def tilerunner_body(job: dict[str, Any], callback: CallbackSpec) -> tuple[bytes, dict[str, str]]:
    """Style ``tilerunner``: the job object as JSON, signed over timestamp and body."""
    body = json.dumps(job, separators=(",", ":"), default=str).encode()
    timestamp = str(int(time.time()))
    return body, {
        "Content-Type": "application/json",
        TIMESTAMP: timestamp,
        SIGNATURE: sign(callback.secret, timestamp, body),
    }


#: ``callback.style`` -> how its body and headers are built.
BODY_SHAPES: dict[str, BodyShape] = {
    "tilerunner": tilerunner_body,
    "antenna": antenna.callback_body,  # Antenna's results response, token in Authorization
}
#: Styles whose body carries the job's features: the view gets them under ``"features"``.
WITH_FEATURES = frozenset({"antenna"})


def event_name(kind: str) -> str:
    """The event of an outbox kind: ``callback:partial`` -> ``job.partial``."""
    return "job." + kind.removeprefix(CALLBACK).split(":", 1)[0]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay before attempt n + 1: a random share (half to all) of ``base * 2**(n-1)``, capped."""

    base: float = 1.0
    cap: float = 600.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        ceiling = min(self.cap, self.base * 2 ** (attempt - 1))
        return rng.uniform(ceiling / 2, ceiling)


class CallbackDispatcher:
    """Claims due callback rows and delivers each on a small thread pool (one attempt each)."""

    def __init__(
        self,
        store: Store,
        owner: str | None = None,
        *,
        policy: UrlPolicy | None = None,
        timeout: float = 10.0,
        max_attempts: int = 8,
        backoff: Backoff | None = None,
        threads: int = 4,
        transport: httpx.BaseTransport | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.store = store
        self.owner = owner or f"callbacks-{socket.gethostname()}-{os.getpid()}"
        self.policy = policy or UrlPolicy()
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.backoff = backoff or Backoff()
        self.threads = threads
        # a delivery holds its row for a few request timeouts; a dead holder's row is retaken
        self.lease_seconds = 3 * timeout + 10
        self._transport = transport
        self._rng = rng or random.Random()
        self._pool: ThreadPoolExecutor | None = None
        self._client: httpx.Client | None = None
        self._in_flight = 0
        self._idle = threading.Condition()

    def dispatch(self) -> int:
        """Start deliveries of due rows, as many as there are free threads; returns started."""
        with self._idle:
            free = self.threads - self._in_flight
        items = self.store.claim_callbacks(self.owner, self.lease_seconds, free)
        if not items:
            return 0
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="callback")
        self._open_client()
        for item in items:
            with self._idle:
                self._in_flight += 1
            self._pool.submit(self._run, item).add_done_callback(_log_crash)
        return len(items)

    def drain(self, timeout: float) -> bool:
        """Wait until no delivery is in flight; False if some still are after ``timeout``."""
        with self._idle:
            return self._idle.wait_for(lambda: self._in_flight == 0, timeout)

    def close(self) -> None:
        """Let deliveries in flight finish; start no new ones."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self._client is not None:
            self._client.close()
            self._client = None

    def _run(self, item: CallbackDelivery) -> None:
        try:
            self.deliver(item)
        except StoreError as error:  # the claim runs out and the row is tried again
            log.warning("callback %s of job %s: %s", item.kind, item.job_id, error)
        finally:
            with self._idle:
                self._in_flight -= 1
                self._idle.notify_all()

    def deliver(self, item: CallbackDelivery) -> bool:
        """One attempt at a claimed row; records its event and outcome; True if delivered."""
        event, attempt = event_name(item.kind), item.attempts + 1
        callback = self._callback(item.job_id)
        if callback is None:
            reason = f"{event} not delivered: the job has no valid callback"
            self.store.callback_failed(item, self.owner, None, reason)
            return False
        host = urlsplit(callback.url).hostname or callback.url
        try:
            check_callback_url(callback.url, self.policy)
        except RefusedUrlError as error:
            self.store.callback_failed(
                item, self.owner, None, f"{event} to {host} refused: {error}"
            )
            return False
        shape = BODY_SHAPES.get(callback.style)
        view = job_view(self.store, item.job_id)
        if shape is None or view is None:
            missing = "the job" if view is None else f"callback style {callback.style!r}"
            reason = f"{event} to {host} not delivered: {missing} is not available"
            self.store.callback_failed(item, self.owner, None, reason)
            return False
        if callback.style in WITH_FEATURES:
            table = job_results(self.store, item.job_id).table
            view = {**view, "features": list(geojson_features(table))}
        body, shaped = shape(view, callback)
        headers = {"User-Agent": f"tilerunner/{__version__}", EVENT: event}
        if event == "job.progress":
            headers[MILESTONE] = item.kind.rsplit(":", 1)[1]
        headers.update(shaped)
        outcome, ok = self._post(callback.url, body, headers)
        message = f"{event} attempt {attempt} to {host}: {outcome}"
        if ok:
            self.store.callback_delivered(item, self.owner, message)
        elif attempt >= self.max_attempts:
            reason = f"{event} to {host} not delivered after {attempt} attempts; last: {outcome}"
            self.store.callback_failed(item, self.owner, message, reason)
        else:
            delay = self.backoff.delay(attempt, self._rng)
            self.store.callback_retry(item, self.owner, f"{message}; next in {delay:.1f} s", delay)
        return ok

    def _open_client(self) -> httpx.Client:
        if self._client is None:
            import httpx

            self._client = httpx.Client(
                timeout=self.timeout, follow_redirects=False, transport=self._transport
            )
        return self._client

    def _post(self, url: str, body: bytes, headers: dict[str, str]) -> tuple[str, bool]:
        """(what happened, whether it was a 2xx); the answer's body is never read."""
        import httpx

        client = self._open_client()  # deliver() may be called directly, not through dispatch()
        try:
            with client.stream("POST", url, content=body, headers=headers) as response:
                return f"HTTP {response.status_code}", response.is_success
        except (httpx.HTTPError, httpx.InvalidURL) as error:
            return f"{type(error).__name__}: {error}"[:300], False

    def _callback(self, job_id: str) -> CallbackSpec | None:
        job = self.store.get_job(job_id)
        if job is None:
            return None
        try:
            return JobSpec.model_validate(job.spec).callback
        except ValidationError:
            return None


def _log_crash(future: Future[None]) -> None:
    """A delivery that raised (a bug, not a failed request): say so; its claim runs out and
    the row is tried again."""
    error = None if future.cancelled() else future.exception()
    if error is not None:
        log.error("callback delivery crashed: %r", error, exc_info=error)


class Milestones:
    """Schedules ``callback:progress:<fraction>`` rows as active jobs pass their milestones.

    Cheap by construction: a job's milestones are read from its document once, jobs without
    any cost nothing after that, and the counts of the others are read at most every
    ``every`` seconds. The outbox's unique key makes each milestone fire once, also across
    coordinators and restarts.
    """

    def __init__(
        self, store: Store, every: float = 5.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.store = store
        self.every = every
        self._clock = clock
        self._last: float | None = None
        self._pending: dict[str, list[float]] = {}

    def check(self) -> int:
        """Schedule the milestones passed since the last check; returns rows scheduled."""
        now = self._clock()
        if self._last is not None and now - self._last < self.every:
            return 0
        self._last = now
        active = self.store.active_jobs()
        self._pending = {job_id: self._milestones(job_id) for job_id in active}
        scheduled = 0
        for job_id, remaining in self._pending.items():
            if not remaining:
                continue
            counts = self.store.counts(job_id)
            if counts.tiles_total <= 0:
                continue
            done = counts.tiles_done / counts.tiles_total
            for fraction in [f for f in remaining if f <= done]:
                scheduled += self.store.add_outbox(job_id, progress_kind(fraction))
            self._pending[job_id] = [f for f in remaining if f > done]
        return scheduled

    def _milestones(self, job_id: str) -> list[float]:
        if job_id in self._pending:
            return self._pending[job_id]
        job = self.store.get_job(job_id)
        try:
            callback = None if job is None else JobSpec.model_validate(job.spec).callback
        except ValidationError:
            callback = None
        return list(callback.progress or []) if callback is not None else []
