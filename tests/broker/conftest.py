"""Engine fixtures for the broker tests.

The conformance suite runs once per entry of ``ENGINE_CASES``. To put a new engine through it,
append one ``EngineCase``: how to build its URL, whether another process sees the same queue,
and any marks (e.g. ``pytest.mark.services`` for an engine that needs a running server).
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from tr_clock import FakeClock

from tilerunner.broker import Queue, open_queue
from tilerunner.broker.contract import Clock
from tilerunner.broker.memory import MemoryQueue


def _nothing() -> None:
    return None


@dataclass(frozen=True)
class EngineCase:
    """One engine under test."""

    id: str
    url: Callable[[Path], str]  # tmp_path -> queue URL
    # True when a second process (and a reopened handle) sees the same messages.
    cross_process: bool = True
    reset: Callable[[], None] = _nothing
    marks: tuple[pytest.MarkDecorator, ...] = ()
    # False for engines whose server keeps time (NATS, SQS, RabbitMQ): the suite then sleeps.
    fake_clock: bool = True
    # Seconds per tick of the suite's timeline; real-time engines use a short one.
    tick: float = 1.0
    # Slack for comparing a lease's expires_at with the expected time (real-time engines).
    tolerance: float = 1e-9
    # A fixture that serves the engine (e.g. "moto_server"): url() then receives its value (the
    # server's endpoint URL) instead of tmp_path.
    fixture: str = ""
    # False for engines that cannot refuse a re-published id until it is acked (SQS standard
    # queues): the dedupe conformance test skips for them, saying why.
    dedupes_publish: bool = True
    # False when a lease belongs to the connection that took it (AMQP): close() gives it back,
    # so the reopen conformance test skips for them, saying why.
    leases_survive_close: bool = True
    # True when the broker takes a killed consumer's leases back at once (AMQP) instead of at
    # their expiry: the killed-consumer test then accepts an early redelivery.
    returns_on_disconnect: bool = False


ENGINE_CASES: list[EngineCase] = [
    EngineCase("memory", lambda tmp: "memory://", cross_process=False, reset=MemoryQueue.reset_all),
    EngineCase("sqlite", lambda tmp: f"sqlite:///{tmp / 'state.db'}"),
]


# PostgreSQL is a shared server: its tests skip, saying why, when it cannot be reached.
POSTGRES_URL_DEFAULT = "postgresql://postgres@127.0.0.1:5432/tilerunner_test"


@functools.cache
def postgres_probe() -> tuple[str, str]:
    """(test database URL, reason to skip or ""); the database is created if missing."""
    url = os.environ.get("TILERUNNER_TEST_POSTGRES_URL", POSTGRES_URL_DEFAULT)
    try:
        import psycopg
        from psycopg.conninfo import conninfo_to_dict, make_conninfo
    except ImportError:
        return url, "psycopg is not installed; pip install 'tilerunner[postgres]'"
    dbname = str(conninfo_to_dict(url).get("dbname", "postgres"))
    admin = make_conninfo(url, dbname="postgres", connect_timeout=3)
    try:
        with psycopg.connect(admin, autocommit=True) as conn:
            exists = "SELECT 1 FROM pg_database WHERE datname = %s"
            if not conn.execute(exists, (dbname,)).fetchone():
                with contextlib.suppress(psycopg.errors.DuplicateDatabase):  # a racing creator
                    conn.execute(f'CREATE DATABASE "{dbname}"')
    except psycopg.OperationalError as exc:
        return url, (
            f"PostgreSQL at {url} is not reachable ({exc}); start it or point "
            "TILERUNNER_TEST_POSTGRES_URL at one"
        )
    return url, ""


def _postgres_url(tmp: Path) -> str:
    url, skip_reason = postgres_probe()
    if skip_reason:
        pytest.skip(skip_reason)
    return url


ENGINE_CASES.append(EngineCase("postgresql", _postgres_url, marks=(pytest.mark.services,)))


def _sqs_url(endpoint: str) -> str:
    """The sqs URL for the session's moto server (tests/conftest.py), or a skip saying why."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(endpoint)
    try:
        socket.create_connection((parts.hostname, parts.port), timeout=3).close()
    except OSError as exc:
        pytest.skip(f"moto server at {endpoint} is not reachable ({exc})")
    _fast_moto_sqs_clock()
    return f"sqs://?region=us-east-1&endpoint_url={endpoint}"


@functools.cache
def _fast_moto_sqs_clock() -> None:
    """moto's SQS reads its clock through datetime arithmetic for every message it scans and
    every queue attribute it recomputes, so a 1000-message queue takes a minute to drain. The
    same epoch seconds from time.time() make it ~15x faster; what moto computes is unchanged."""
    import moto.sqs.models as models

    slow = models.unix_time

    def unix_time(dt: object = None) -> float:
        return time.time() if dt is None else float(slow(dt))

    models.unix_time = unix_time
    models.unix_time_millis = lambda dt=None: unix_time(dt) * 1000.0


# SQS through moto's server mode: the server keeps time in whole seconds, and standard queues
# do not deduplicate (docs/engines/sqs.md says why that is safe).
ENGINE_CASES.append(
    EngineCase(
        "sqs",
        _sqs_url,
        fixture="moto_server",
        marks=(pytest.mark.services,),
        fake_clock=False,
        tick=1.0,
        tolerance=1.0,
        dedupes_publish=False,
    )
)


# RabbitMQ: leases live on the client, so a killed or closed consumer's leases come back at once;
# no dedupe without a plugin (docs/engines/amqp.md). queue_expires lets the server delete the
# per-test queues once they are idle.
AMQP_URL_DEFAULT = "amqp://guest:guest@127.0.0.1:5672/%2F?queue_expires=600"


@functools.cache
def amqp_probe() -> tuple[str, str]:
    """(test server URL, reason to skip or "")."""
    import socket
    from urllib.parse import urlsplit

    url = os.environ.get("TILERUNNER_TEST_AMQP_URL", AMQP_URL_DEFAULT)
    parts = urlsplit(url)
    try:
        socket.create_connection((parts.hostname, parts.port or 5672), timeout=3).close()
    except OSError as exc:
        return url, (
            f"RabbitMQ at {parts.hostname}:{parts.port or 5672} is not reachable ({exc}); start "
            "it (rabbitmq-server -detached) or point TILERUNNER_TEST_AMQP_URL at one"
        )
    return url, ""


def _amqp_url(tmp: Path) -> str:
    url, skip_reason = amqp_probe()
    if skip_reason:
        pytest.skip(skip_reason)
    return url


ENGINE_CASES.append(
    EngineCase(
        "amqp",
        _amqp_url,
        marks=(pytest.mark.services,),
        fake_clock=False,
        tick=0.5,
        tolerance=0.25,
        dedupes_publish=False,
        leases_survive_close=False,
        returns_on_disconnect=True,
    )
)


# NATS JetStream: the server keeps time; each lease sets its own deadline with a delayed NAK,
# so short ticks work (docs/engines/nats.md). reset() deletes test streams left by old runs.
def _nats_url(tmp: Path) -> str:
    from ._nats import NATS_URL, nats_reachable, skip_reason

    if not nats_reachable():
        pytest.skip(skip_reason())
    return NATS_URL


def _nats_reset() -> None:
    from ._nats import drop_stale_test_streams

    drop_stale_test_streams()


ENGINE_CASES.append(
    EngineCase(
        "nats",
        _nats_url,
        reset=_nats_reset,
        marks=(pytest.mark.services,),
        fake_clock=False,
        tick=0.5,
        tolerance=0.25,
    )
)


@dataclass
class Engine:
    """An engine bound to one test: a URL, a queue name unique to the test, and an opener."""

    case: EngineCase
    url: str
    name: str
    clock: FakeClock
    opened: list[Queue] = field(default_factory=list)

    @property
    def cross_process(self) -> bool:
        return self.case.cross_process

    def t(self, ticks: float) -> float:
        """A duration of ``ticks`` on this engine's timeline, in seconds."""
        return ticks * self.case.tick

    def advance(self, ticks: float) -> None:
        """Let ``ticks`` pass: move the fake clock, or sleep for a real-time engine."""
        if self.case.fake_clock:
            self.clock.advance(self.t(ticks))
        else:
            time.sleep(self.t(ticks))

    def now(self) -> float:
        return self.clock.now if self.case.fake_clock else time.time()

    def expires_about(self, at: float) -> object:
        """Comparable with a lease's ``expires_at``: exact on a fake clock, approximate else."""
        return pytest.approx(at, abs=max(self.case.tolerance, 1e-9))

    def open(self, *, max_attempts: int = 3, clock: Clock | None = None) -> Queue:
        """Open the test's queue; closed (and purged) when the test ends."""
        if not self.case.fake_clock:
            clock = time.time
        queue = open_queue(
            self.url, self.name, max_attempts=max_attempts, clock=clock or self.clock
        )
        self.opened.append(queue)
        return queue


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_700_000_000.0)


@pytest.fixture(params=[pytest.param(case, id=case.id, marks=case.marks) for case in ENGINE_CASES])
def engine(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> Iterator[Engine]:
    case: EngineCase = request.param
    case.reset()
    where = request.getfixturevalue(case.fixture) if case.fixture else tmp_path
    bound = Engine(case, case.url(where), f"t-{uuid.uuid4().hex[:12]}", clock)
    yield bound
    # a shared server keeps queues between tests: leave nothing behind
    cleaner = open_queue(bound.url, bound.name, clock=clock if case.fake_clock else time.time)
    cleaner.purge()
    cleaner.close()
    for queue in bound.opened:
        queue.close()
    case.reset()
